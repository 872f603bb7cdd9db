"""Auth rule 9 (v10 numbering; rule 10 in v1-v2 and v12): what an m.room.power_levels
event may change, per room version."""

from __future__ import annotations

from typing import Any

from homeserver.core.auth_helpers import (
    POWER_LEVELS_KEY,
    AuthState,
    is_int,
    parse_power_level,
    room_creators,
)
from homeserver.core.errors import AuthError
from homeserver.core.events import Event
from homeserver.core.ids import is_valid_user_id
from homeserver.core.room_versions import RoomVersion

_PL_LEVEL_KEYS = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)


def check_power_levels_change(
    version: RoomVersion, event: Event, state: AuthState, sender_level: int
) -> None:
    """Rules 9.1-9.10; ``sender_level`` is the sender's level in ``state``."""
    content = event.content
    if version.integer_power_levels:
        # 9.1-9.2: v10+ power levels must be real integers.
        for key in _PL_LEVEL_KEYS:
            if key in content and not is_int(content[key]):
                raise AuthError(f"Power level '{key}' must be an integer")
        for key in ("events", "notifications"):
            if key in content and not _int_map(content[key]):
                raise AuthError(f"Power level '{key}' must map to integers")
    # 9.3: users maps user ids to integers (v1-v9: or strings holding integers).
    users = content.get("users", {})
    valid = _int_map if version.integer_power_levels else _level_map
    if not valid(users) or not all(is_valid_user_id(u) for u in users):
        raise AuthError("Power level 'users' must map user ids to integers")
    # v12 rule 10.4: creators are not listed; their power is implied.
    if version.privileged_creators and room_creators(state, version) & set(users):
        raise AuthError("Room creators cannot be given a power level")
    old_event = state.get(POWER_LEVELS_KEY)
    if old_event is None:
        return  # 9.4: the first PL event
    old = old_event.content
    # 9.5: top-level levels added, changed or removed.
    for key in _PL_LEVEL_KEYS:
        _check_level_change(key, old.get(key), content.get(key), sender_level)
    # 9.6 / 9.7: events entries, and notifications from v6.
    maps = ("events", "notifications") if version.limit_notifications_power_levels else ("events",)
    for key in maps:
        old_map, new_map = _as_map(old.get(key)), _as_map(content.get(key))
        for name in old_map.keys() | new_map.keys():
            _check_level_change(f"{key}.{name}", old_map.get(name), new_map.get(name), sender_level)
    # 9.8 / 9.9: users. Peers at or above the sender's level cannot be changed.
    old_users, new_users = _as_map(old.get("users")), _as_map(users)
    for user in old_users.keys() | new_users.keys():
        before, after = _level(old_users.get(user)), _level(new_users.get(user))
        if before == after:
            continue
        if user != event.sender and before is not None and before >= sender_level:
            raise AuthError(f"Cannot change the power level of {user}, who is not below you")
        _check_level_change(f"users.{user}", before, after, sender_level)


def _level(value: Any) -> int | None:
    return parse_power_level(value)


def _check_level_change(name: str, before: Any, after: Any, sender_level: int) -> None:
    # Compared as levels: in v1-v9 "50" and 50 are the same level.
    before, after = _level(before), _level(after)
    if before == after:
        return
    if before is not None and before > sender_level:
        raise AuthError(f"Cannot change '{name}' from a level above your own")
    if after is not None and after > sender_level:
        raise AuthError(f"Cannot set '{name}' above your own level")


def _level_map(value: Any) -> bool:
    # v1-v9: integers or strings holding one (and floats, which v1-v5 allow).
    return isinstance(value, dict) and all(parse_power_level(v) is not None for v in value.values())


def _int_map(value: Any) -> bool:
    return isinstance(value, dict) and all(is_int(v) for v in value.values())


def _as_map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}

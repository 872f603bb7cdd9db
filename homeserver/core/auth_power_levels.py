"""Auth rule 9 (v10/v11): what an m.room.power_levels event may change."""

from __future__ import annotations

from typing import Any

from homeserver.core.auth_helpers import POWER_LEVELS_KEY, AuthState, is_int
from homeserver.core.errors import AuthError
from homeserver.core.events import Event
from homeserver.core.ids import is_valid_user_id

_PL_LEVEL_KEYS = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)


def check_power_levels_change(event: Event, state: AuthState, sender_level: int) -> None:
    """Rules 9.1-9.10; ``sender_level`` is the sender's level in ``state``."""
    content = event.content
    # 9.1-9.3: v10+ power levels must be real integers.
    for key in _PL_LEVEL_KEYS:
        if key in content and not is_int(content[key]):
            raise AuthError(f"Power level '{key}' must be an integer")
    for key in ("events", "notifications"):
        if key in content and not _int_map(content[key]):
            raise AuthError(f"Power level '{key}' must map to integers")
    users = content.get("users", {})
    if not _int_map(users) or not all(is_valid_user_id(u) for u in users):
        raise AuthError("Power level 'users' must map user ids to integers")
    old_event = state.get(POWER_LEVELS_KEY)
    if old_event is None:
        return  # 9.4: the first PL event
    old = old_event.content
    # 9.5: top-level levels added, changed or removed.
    for key in _PL_LEVEL_KEYS:
        _check_level_change(key, old.get(key), content.get(key), sender_level)
    # 9.6 / 9.7: events and notifications entries.
    for key in ("events", "notifications"):
        old_map, new_map = _as_map(old.get(key)), _as_map(content.get(key))
        for name in old_map.keys() | new_map.keys():
            _check_level_change(f"{key}.{name}", old_map.get(name), new_map.get(name), sender_level)
    # 9.8 / 9.9: users. Peers at or above the sender's level cannot be changed.
    old_users, new_users = _as_map(old.get("users")), _as_map(users)
    for user in old_users.keys() | new_users.keys():
        before, after = old_users.get(user), new_users.get(user)
        if before == after and is_int(before) == is_int(after):
            continue
        if user != event.sender and is_int(before) and before >= sender_level:
            raise AuthError(f"Cannot change the power level of {user}, who is not below you")
        _check_level_change(f"users.{user}", before, after, sender_level)


def _check_level_change(name: str, before: Any, after: Any, sender_level: int) -> None:
    if before == after and is_int(before) == is_int(after):
        return
    if is_int(before) and before > sender_level:
        raise AuthError(f"Cannot change '{name}' from a level above your own")
    if is_int(after) and after > sender_level:
        raise AuthError(f"Cannot set '{name}' above your own level")


def _int_map(value: Any) -> bool:
    return isinstance(value, dict) and all(is_int(v) for v in value.values())


def _as_map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}

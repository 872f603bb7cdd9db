"""Reading power levels, memberships and join rules out of a room state.

A "state" here is any ``Mapping[(type, state_key), Event]``: the auth events
of an event, the state before it, or the current room state. All functions are
re-exported by :mod:`homeserver.core.auth_rules`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.core.events import Event
from homeserver.core.room_versions import RoomVersion, get_room_version

StateKey = tuple[str, str]
AuthState = Mapping[StateKey, Event]

CREATE_KEY: StateKey = ("m.room.create", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")
JOIN_RULES_KEY: StateKey = ("m.room.join_rules", "")

# Defaults when the key is absent from the PL event, or there is no PL event.
# state_default is 50 even without a PL event: the spec's old "0 if there is no
# power_levels event" text was a documentation bug (matrix-spec#861/#1479).
NAMED_LEVEL_DEFAULTS: dict[str, int] = {
    "invite": 0,
    "kick": 50,
    "ban": 50,
    "redact": 50,
    "state_default": 50,
    "events_default": 0,
    "users_default": 0,
}
CREATOR_LEVEL_WITHOUT_PL = 100
# rooms/v12: creators' power level is infinitely high; any int compares below this.
CREATOR_POWER = 2**64

_STRINGY_INT = re.compile(r"\s*[+-]?[0-9]+\s*")


def is_int(value: Any) -> bool:
    """A real JSON integer (Python's bool is an int subclass, JSON's is not)."""
    return type(value) is int


def parse_power_level(value: Any) -> int | None:
    """A power level as rooms of versions 1-9 read it: an integer, a string holding
    one (rooms/v1 stringy power levels) or a float truncated at the point (rooms/v1
    floaty power levels). None when it is none of these."""
    if is_int(value):
        return value
    if isinstance(value, str) and _STRINGY_INT.fullmatch(value):
        return int(value.strip())
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def _as_int(value: Any, default: int) -> int:
    # From v10 values in a PL event that passed auth are ints; in older rooms
    # they may be strings or floats. Anything else falls back to the default.
    parsed = parse_power_level(value)
    return default if parsed is None else parsed


def _version_of(create: Event, room_version: RoomVersion | str | None) -> RoomVersion | None:
    try:
        return get_room_version(room_version if room_version is not None else create.room_version)
    except MatrixError:
        return None


def room_creator(state: AuthState, room_version: RoomVersion | str | None = None) -> str | None:
    """The room creator: ``content.creator`` (v10) or the create event's sender (v11).

    ``room_version`` defaults to the create event's ``Event.room_version``.
    None when there is no create event (or, in v10, no valid ``creator``).
    """
    create = state.get(CREATE_KEY)
    if create is None:
        return None
    version = _version_of(create, room_version)
    if version is None or version.creator_in_content:
        creator = create.content.get("creator")
        if version is None and not isinstance(creator, str):
            return create.sender  # unknown version: best effort
        return creator if isinstance(creator, str) else None
    return create.sender


def room_creators(state: AuthState, room_version: RoomVersion | str | None = None) -> set[str]:
    """rooms/v12 "room creators": the create sender plus ``additional_creators``;
    before v12 just :func:`room_creator`."""
    create = state.get(CREATE_KEY)
    if create is None:
        return set()
    version = _version_of(create, room_version)
    if version is None or not version.privileged_creators:
        creator = room_creator(state, room_version)
        return {creator} if creator else set()
    extra = create.content.get("additional_creators")
    extras = [u for u in extra if isinstance(u, str)] if isinstance(extra, list) else []
    return {create.sender, *extras}


def user_power_level(
    state: AuthState, user_id: str, room_version: RoomVersion | str | None = None
) -> int:
    """``users[user_id]``, else ``users_default`` (0); without a PL event the
    creator has 100 and everyone else 0. From v12 creators outrank everyone."""
    create = state.get(CREATE_KEY)
    version = _version_of(create, room_version) if create is not None else None
    if version is not None and version.privileged_creators:
        if user_id in room_creators(state, version):
            return CREATOR_POWER
    pl = state.get(POWER_LEVELS_KEY)
    if pl is None:
        return CREATOR_LEVEL_WITHOUT_PL if user_id == room_creator(state, room_version) else 0
    content = pl.content
    users = content.get("users")
    if isinstance(users, dict) and user_id in users:
        level = parse_power_level(users[user_id])
        if level is not None:
            return level
    return _as_int(content.get("users_default"), 0)


def named_power_level(state: AuthState, name: str) -> int:
    """One of invite/kick/ban/redact/state_default/events_default/users_default,
    with the spec defaults (see NAMED_LEVEL_DEFAULTS)."""
    default = NAMED_LEVEL_DEFAULTS[name]
    pl = state.get(POWER_LEVELS_KEY)
    if pl is None:
        return default
    return _as_int(pl.content.get(name), default)


def required_power_level(state: AuthState, event_type: str, is_state: bool) -> int:
    """``events[type]``, else ``state_default`` / ``events_default``."""
    pl = state.get(POWER_LEVELS_KEY)
    if pl is not None:
        events = pl.content.get("events")
        level = parse_power_level(events.get(event_type)) if isinstance(events, dict) else None
        if level is not None:
            return level
    return named_power_level(state, "state_default" if is_state else "events_default")


def notification_power_level(state: AuthState, key: str = "room") -> int:
    """``notifications[key]`` (``room`` defaults to 50, for @room pushes)."""
    pl = state.get(POWER_LEVELS_KEY)
    notifications = pl.content.get("notifications") if pl is not None else None
    level = parse_power_level(notifications.get(key)) if isinstance(notifications, dict) else None
    return 50 if level is None else level


def membership_of(state: AuthState, user_id: str) -> str | None:
    """The user's ``content.membership``, or None when there is no member event.

    None plays the spec's "none"/never-joined role; callers that need a string
    can use ``membership_of(...) or "leave"``.
    """
    member = state.get(("m.room.member", user_id))
    return member.membership if member is not None else None


def join_rule_of(state: AuthState) -> str:
    """``content.join_rule``; a missing event or key means ``invite`` (as Synapse)."""
    jr = state.get(JOIN_RULES_KEY)
    rule = jr.content.get("join_rule") if jr is not None else None
    return rule if isinstance(rule, str) else "invite"


def domain_of(entity_id: str) -> str:
    """Server part of ``@user:server`` / ``!room:server``; "" when malformed."""
    return entity_id.split(":", 1)[1] if isinstance(entity_id, str) and ":" in entity_id else ""

"""Group roles mapped onto Matrix power levels, so every Matrix client shows them and
the room's own auth rules enforce them (spec "m.room.power_levels"):

    owner  100   may appoint and dismiss admins, transfer ownership, dissolve the group
    admin   50   may kick, ban, invite, redact others' messages, set the name, topic and
                 announcement (the default state_default, kick, ban and redact levels)
    member   0   may talk
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Literal

from homeserver.core.room_versions import get_room_version

Role = Literal["owner", "admin", "member"]

LEVELS: dict[str, int] = {"owner": 100, "admin": 50, "member": 0}

ANNOUNCEMENT = "tricolor.announcement"


def user_level(power_levels: dict[str, Any], user_id: str, creators: AbstractSet[str] = frozenset()) -> int:
    """The user's level; ``creators`` are a room version 12 room's creators, who outrank
    everyone and are never listed in the power levels (rooms/v12): they show as owners."""
    if user_id in creators:
        return LEVELS["owner"]
    users = power_levels.get("users", {})
    level = users.get(user_id, power_levels.get("users_default", 0)) if isinstance(users, dict) else 0
    return int(level) if isinstance(level, int | float) and not isinstance(level, bool) else 0


def role_of(level: int) -> Role:
    """The role a power level shows as (levels between roles round down)."""
    if level >= LEVELS["owner"]:
        return "owner"
    if level >= LEVELS["admin"]:
        return "admin"
    return "member"


def with_level(
    power_levels: dict[str, Any], user_id: str, level: int, creators: AbstractSet[str] = frozenset(),
) -> dict[str, Any]:
    """A copy of the power levels with ``user_id`` at ``level`` (the users_default level
    leaves the map, as clients write it); a v12 creator's level cannot be set, so stays out."""
    out = dict(power_levels)
    users = dict(out.get("users", {}))
    if user_id in creators or level == int(out.get("users_default", 0)):
        users.pop(user_id, None)
    else:
        users[user_id] = level
    out["users"] = users
    return out


def creators_of(create_content: Mapping[str, Any], sender: str) -> frozenset[str]:
    """The creators of a room of version 12 or later (the create event's sender and
    `additional_creators`), who outrank every power level (rooms/v12); empty before v12."""
    if not get_room_version(str(create_content.get("room_version", "1"))).privileged_creators:
        return frozenset()
    extra = create_content.get("additional_creators")
    return frozenset([sender, *(u for u in extra if isinstance(u, str))] if isinstance(extra, list) else [sender])

"""Spec "Restricted rooms": who may authorise a join without an invite, shared by local
joins (RoomService) and the make_join we serve to other servers (FederationRooms)."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.services.reader import EventReader
from homeserver.services.room_heads import RoomHead


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


async def restricted_authoriser(events: EventReader, server_name: str, head: RoomHead, user_id: str) -> str | None:
    """Spec "Restricted rooms": for a join to a `restricted` (or `knock_restricted`) room
    by a user not invited, a local joined user who may invite, when the user is joined
    to a room the `allow` list names (one this server is in); None when no
    authorisation is needed or none can be given (the auth rules then refuse)."""
    if head.members.get(user_id) in ("invite", "join"):
        return None
    rules = await events.current_state_event(head.room_id, ("m.room.join_rules", ""))
    if rules is None or rules.content.get("join_rule") not in ("restricted", "knock_restricted"):
        return None
    allow = rules.content.get("allow")
    allowed = False
    for entry in allow if isinstance(allow, list) else []:
        if not isinstance(entry, dict) or entry.get("type") != "m.room_membership":
            continue
        other = entry.get("room_id")
        other_head = await events.room_head(other) if isinstance(other, str) else None
        if other_head is not None and other_head.members.get(user_id) == "join":
            allowed = True
            break
    if not allowed:
        return None
    levels = await events.current_state_event(head.room_id, ("m.room.power_levels", ""))
    content = levels.content if levels is not None else {}
    users = content.get("users") if isinstance(content.get("users"), dict) else {}
    invite_level = content.get("invite", 0)
    default = content.get("users_default", 0)
    candidates = sorted(
        (u for u, m in head.members.items() if m == "join" and ids.server_of(u) == server_name),
        key=lambda u: -_as_int(users.get(u, default)),
    )
    for user in candidates:
        if _as_int(users.get(user, default)) >= _as_int(invite_level):
            return user
    return None

"""Groups (WeChat/QQ-style) on Matrix rooms: members with their roles, promotion and
demotion, ownership transfer, leaving, and the group announcement.

Roles are power levels (homeserver/core/roles.py), so the room's own auth rules enforce
who may do what; the checks here only give the clearer error first. The announcement is
the state event ``tricolor.announcement`` (state_default 50: admins and the owner).
"""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.core.roles import ANNOUNCEMENT, LEVELS, creators_of, role_of, user_level, with_level
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.formatting import bare_client_event
from homeserver.services.reader import EventReader
from homeserver.services.rooms import RoomService


class GroupService:
    def __init__(self, *, rooms: RoomService, events: EventReader) -> None:
        self._rooms = rooms
        self._events = events

    async def _levels(self, room_id: str) -> tuple[dict[str, Any], frozenset[str]]:
        """The power levels, and the creators who outrank them (room version 12 on)."""
        event = await self._events.current_state_event(room_id, ("m.room.power_levels", ""))
        create = await self._events.current_state_event(room_id, ("m.room.create", ""))
        creators = creators_of(create.content, create.sender) if create is not None else frozenset()
        return (dict(event.content) if event is not None else {}), creators

    async def members(self, requester: Requester, room_id: str) -> dict[str, Any]:
        head = await self._rooms.require_joined(requester, room_id)
        levels, creators = await self._levels(room_id)
        joined = sorted(u for u, m in head.members.items() if m == "join")
        events = await self._events.state_events({("m.room.member", u): head.state[("m.room.member", u)] for u in joined})
        out = []
        for u in joined:
            content = events[("m.room.member", u)].content
            level = user_level(levels, u, creators)
            out.append({
                "user_id": u, "displayname": content.get("displayname"), "avatar_url": content.get("avatar_url"),
                "role": role_of(level), "power_level": level,
            })
        order = {"owner": 0, "admin": 1, "member": 2}
        out.sort(key=lambda m: (order[m["role"]], m["user_id"]))
        return {"members": out}

    async def set_role(self, requester: Requester, room_id: str, user_id: str, role: str) -> None:
        """Only the owner appoints or dismisses admins (spec: changing another user's level
        needs a level above theirs and at least the new one)."""
        head = await self._rooms.require_joined(requester, room_id)
        if head.members.get(user_id) != "join":
            raise not_found("That user is not a member of the group")
        if user_id == requester.user_id:
            raise MatrixError(400, "M_INVALID_PARAM", "Use transfer_ownership or leave to change your own role")
        if role not in ("admin", "member"):
            raise MatrixError(400, "M_INVALID_PARAM", "role must be admin or member (ownership is transferred)")
        levels, creators = await self._levels(room_id)
        if role_of(user_level(levels, requester.user_id, creators)) != "owner":
            raise forbidden("Only the group owner appoints or dismisses admins")
        if role_of(user_level(levels, user_id, creators)) == "owner":
            raise forbidden("The owner's role cannot be changed")
        await self._rooms.send(requester, room_id, "m.room.power_levels",
                               with_level(levels, user_id, LEVELS[role], creators), state_key="")

    async def transfer_ownership(self, requester: Requester, room_id: str, user_id: str) -> None:
        head = await self._rooms.require_joined(requester, room_id)
        if head.members.get(user_id) != "join":
            raise not_found("That user is not a member of the group")
        levels, creators = await self._levels(room_id)
        if role_of(user_level(levels, requester.user_id, creators)) != "owner":
            raise forbidden("Only the group owner can transfer ownership")
        if user_id == requester.user_id:
            raise MatrixError(400, "M_INVALID_PARAM", "You already own the group")
        # One event: the new owner at 100, the old one stays an admin.
        levels = with_level(
            with_level(levels, user_id, LEVELS["owner"], creators), requester.user_id, LEVELS["admin"], creators,
        )
        await self._rooms.send(requester, room_id, "m.room.power_levels", levels, state_key="")

    async def leave(self, requester: Requester, room_id: str) -> None:
        """Leave the group; the last owner must hand the group on (or dissolve it) first."""
        head = await self._rooms.require_joined(requester, room_id)
        levels, creators = await self._levels(room_id)
        if role_of(user_level(levels, requester.user_id, creators)) == "owner":
            others = [u for u, m in head.members.items() if m == "join" and u != requester.user_id]
            owners = [u for u in others if role_of(user_level(levels, u, creators)) == "owner"]
            if others and not owners:
                raise forbidden("Transfer ownership or dissolve the group before leaving it")
        await self._rooms.leave(requester, room_id)

    # -- announcements --------------------------------------------------------

    async def set_announcement(self, requester: Requester, room_id: str, text: str) -> str:
        await self._rooms.require_joined(requester, room_id)
        levels, creators = await self._levels(room_id)
        needed = levels.get("events", {}).get(ANNOUNCEMENT, levels.get("state_default", 50))
        if user_level(levels, requester.user_id, creators) < int(needed):
            raise forbidden("Only group admins and the owner can set the announcement")
        content = {"text": text, "author": requester.user_id, "ts": now_ms()}
        return await self._rooms.send(requester, room_id, ANNOUNCEMENT, content, state_key="")

    async def announcements(self, requester: Requester, room_id: str, limit: int) -> dict[str, Any]:
        """The current announcement and the ones before it, newest first."""
        head = await self._rooms.require_joined(requester, room_id)
        out: list[dict[str, Any]] = []
        event_id = head.state.get((ANNOUNCEMENT, ""))
        while event_id is not None and len(out) < max(1, min(limit, 100)):
            stored = await self._events.get_event(event_id)
            if stored is None:
                break
            out.append(bare_client_event(stored.event))
            event_id = stored.replaces_state
        return {"current": out[0] if out else None, "history": out}

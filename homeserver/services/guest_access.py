"""Guests leave a room when it stops admitting them (spec "Guest access": a room whose
`m.room.guest_access` is not `can_join` is closed to guests; Synapse makes the guests who
are in it leave, and so do we).

Run after commit by the StateReactor for every guest_access change, made by a local user
or over federation: each local guest member of the room leaves, as themselves (no power
level is needed to leave, and the leave is an ordinary event peers accept). A change
committed just before a crash is not acted on after the restart; the guests then stay
until the next guest_access change (their joins are refused meanwhile).
"""

from __future__ import annotations

import logging

from homeserver.core.errors import MatrixError
from homeserver.core.ids import server_of
from homeserver.services.auth import Requester
from homeserver.services.reader import EventReader
from homeserver.services.rooms import RoomService
from homeserver.services.state_watch import StateChange
from storage.stores.users import UserStore

log = logging.getLogger(__name__)
GUEST_ACCESS_TYPE = "m.room.guest_access"
GUEST_ACCESS = (GUEST_ACCESS_TYPE, "")
REASON = "Guest access has been disabled"


class GuestEviction:
    """The handler of `m.room.guest_access` changes (see state_watch.py)."""

    def __init__(self, *, reader: EventReader, rooms: RoomService, users: UserStore, server_name: str) -> None:
        self._reader = reader
        self._rooms = rooms
        self._users = users
        self._name = server_name

    async def on_change(self, change: StateChange) -> None:
        await self.evict(change.room_id)

    async def evict(self, room_id: str) -> list[str]:
        """Make the local guests joined to the room leave if it no longer admits guests;
        the user ids that left."""
        access = await self._reader.current_state_event(room_id, GUEST_ACCESS)
        if access is not None and access.content.get("guest_access") == "can_join":
            return []
        head = await self._reader.room_head(room_id)
        if head is None:
            return []
        gone: list[str] = []
        for user_id, membership in list(head.members.items()):
            if membership != "join" or server_of(user_id) != self._name:
                continue
            user = await self._users.get_user(user_id)
            if user is None or not user.is_guest:
                continue
            guest = Requester(user_id, "", "", is_guest=True)
            try:
                await self._rooms.leave(guest, room_id, REASON)
            except MatrixError as e:  # e.g. they left on their own meanwhile
                log.info("guest %s not removed from %s: %s", user_id, room_id, e)
                continue
            gone.append(user_id)
        return gone

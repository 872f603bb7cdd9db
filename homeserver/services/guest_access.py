"""Guests leave a room when it stops admitting them (spec "Guest access": a room whose
`m.room.guest_access` is not `can_join` is closed to guests; Synapse makes the guests who
are in it leave, and so do we).

`GuestAccessWatch` is a room-writer subscriber (cheap: it only notes the rooms whose
guest_access changed, by a local user or over federation); `GuestEviction` has its own
task that makes each local guest member of such a room leave, as themselves (no power
level is needed to leave, and the leave is an ordinary event peers accept). A change
committed just before a crash is not acted on after the restart; the guests then stay
until the next guest_access change (their joins are refused meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from homeserver.core.errors import MatrixError
from homeserver.core.ids import server_of
from homeserver.services.auth import Requester
from homeserver.services.fanout import Committed
from homeserver.services.reader import EventReader
from homeserver.services.rooms import RoomService
from storage.stores.users import UserStore

log = logging.getLogger(__name__)
GUEST_ACCESS = ("m.room.guest_access", "")
REASON = "Guest access has been disabled"


class GuestAccessWatch:
    def __init__(self) -> None:
        self._rooms: asyncio.Queue[str] = asyncio.Queue()

    def on_committed(self, commit: Committed) -> None:
        if commit.head is not None and GUEST_ACCESS in commit.state_delta:
            self._rooms.put_nowait(commit.head.room_id)

    async def next_room(self) -> str:
        return await self._rooms.get()


class GuestEviction:
    def __init__(
        self, *, watch: GuestAccessWatch, reader: EventReader, rooms: RoomService, users: UserStore,
        server_name: str,
    ) -> None:
        self._watch = watch
        self._reader = reader
        self._rooms = rooms
        self._users = users
        self._name = server_name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            room_id = await self._watch.next_room()
            try:
                await self.evict(room_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not remove the guests of %s", room_id)

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

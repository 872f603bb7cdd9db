"""Server notices (Synapse's mechanism) and admin broadcasts built on them.

Each local user has one server-notices room, created on first use by the system user
(``server_notices_localpart``), who invites the user and owns the room; the room is
tagged ``m.server_notice`` for the user (spec "Server Notices"). The user cannot talk
in it: users_default is -10, below events_default 0; the system user is at 100.

A broadcast sends one notice to every active local user (or only the admins) in the
background, in batches in user-id order. Each finished batch records how far it got,
and every notice is sent with a transaction id made of the broadcast and the user, so
a restart resumes after the last recorded batch and a notice sent again in the batch
that was cut short is recognised as a retry, not sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.services.accounts import AccountService
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.profile import AccountDataService
from homeserver.services.rooms import RoomService
from storage.stores.admin import AdminStore
from storage.stores.im import ImStore
from storage.stores.users import UserStore

log = logging.getLogger(__name__)

NOTICE_TAG = "m.server_notice"
_DEVICE = "server_notices"


class NoticeService:
    def __init__(
        self, *, rooms: RoomService, users: UserStore, accounts: AccountService,
        account_data: AccountDataService, store: ImStore, admin_store: AdminStore,
        server_name: str, system_localpart: str, batch_size: int = 100, concurrency: int = 8,
    ) -> None:
        self._rooms = rooms
        self._users = users
        self._accounts = accounts
        self._account_data = account_data
        self._store = store
        self._admin_store = admin_store
        self.server_name = server_name
        self.system_user = ids.user_id(system_localpart, server_name)
        self._batch = batch_size
        self._concurrency = concurrency
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._system_ready = False

    def _system(self) -> Requester:
        return Requester(self.system_user, _DEVICE, "", rate_limited=False)

    async def _ensure_system_user(self) -> None:
        if self._system_ready:
            return
        if await self._users.get_user(self.system_user) is None:
            try:
                await self._accounts.create_user(self.system_user[1:].split(":", 1)[0], None)
            except MatrixError:
                pass  # created meanwhile
        self._system_ready = True

    async def _notice_room(self, user_id: str) -> str:
        """The user's server-notices room, created (or the user invited again) as needed."""
        lock = self._room_locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            await self._ensure_system_user()
            room_id = await self._store.notice_room(user_id)
            if room_id is not None:
                head = await self._rooms.head_or_404(room_id)
                if head.members.get(self.system_user) == "join":
                    if head.members.get(user_id) not in ("join", "invite"):
                        await self._rooms.set_membership(self._system(), room_id, user_id, "invite", None)
                    return room_id
            room_id = await self._rooms.create_room(self._system(), {
                "preset": "private_chat", "name": "Server Notices", "invite": [user_id],
                "power_level_content_override": {"users_default": -10},
            })
            await self._account_data.set_tag(user_id, room_id, NOTICE_TAG, {})
            await self._store.set_notice_room(user_id, room_id)
            return room_id

    async def send(
        self, user_id: str, content: dict[str, Any], event_type: str, txn: str | None,
        state_key: str | None = None,
    ) -> str:
        """Send one notice; ``txn`` makes a retry return the first event."""
        if ids.server_of(user_id) != self.server_name:
            raise MatrixError(400, "M_INVALID_PARAM", "Server notices can only go to local users")
        user = await self._users.get_user(user_id)
        if user is None or user.deactivated:
            raise not_found("Unknown or deactivated user")
        if user_id == self.system_user:
            raise MatrixError(400, "M_INVALID_PARAM", "The system user gets no notices")
        room_id = await self._notice_room(user_id)
        return await self._rooms.send(self._system(), room_id, event_type, content, state_key=state_key, txn_id=txn)

    async def send_as_admin(
        self, requester: Requester, user_id: str, content: dict[str, Any], event_type: str, txn_id: str | None,
        state_key: str | None = None,
    ) -> dict[str, Any]:
        if not requester.is_admin:
            raise forbidden("You are not a server admin")
        txn = f"admin|{requester.user_id}|{requester.device_id}|{txn_id}|{user_id}" if txn_id else None
        return {"event_id": await self.send(user_id, content, event_type, txn, state_key)}

    # -- broadcasts ---------------------------------------------------------------

    async def start(self) -> None:
        for broadcast_id in await self._store.running_broadcasts():
            self._spawn(broadcast_id)

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def broadcast(self, requester: Requester, content: dict[str, Any], admins_only: bool) -> dict[str, Any]:
        if not requester.is_admin:
            raise forbidden("You are not a server admin")
        await self._ensure_system_user()
        total = await self._admin_store.count_active_users(admins_only)
        if not admins_only or (await self._users.get_user(self.system_user)).is_admin:  # type: ignore[union-attr]
            total -= 1  # the system user itself
        broadcast_id = await self._store.add_broadcast(requester.user_id, content, admins_only, total, now_ms())
        self._spawn(broadcast_id)
        return {"broadcast_id": broadcast_id, "total": total}

    async def progress(self, requester: Requester, broadcast_id: int) -> dict[str, Any]:
        if not requester.is_admin:
            raise forbidden("You are not a server admin")
        row = await self._store.get_broadcast(broadcast_id)
        if row is None:
            raise not_found("No such broadcast")
        return {
            "broadcast_id": row["id"], "status": row["status"], "total": row["total"], "sent": row["sent"],
            "failed": row["failed"], "created_ts": row["created_ts"], "finished_ts": row["finished_ts"],
        }

    async def wait(self, broadcast_id: int) -> None:
        task = self._tasks.get(broadcast_id)
        if task is not None:
            await asyncio.wait([task])

    def _spawn(self, broadcast_id: int) -> None:
        task = asyncio.create_task(self._run(broadcast_id), name=f"broadcast-{broadcast_id}")
        self._tasks[broadcast_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(broadcast_id, None))

    async def _run(self, broadcast_id: int) -> None:
        row = await self._store.get_broadcast(broadcast_id)
        if row is None:
            return
        cursor: str | None = row["cursor"]
        content: dict[str, Any] = row["content"]
        limit = asyncio.Semaphore(self._concurrency)

        async def one(user_id: str) -> bool:
            async with limit:
                try:
                    await self.send(user_id, content, "m.room.message", f"broadcast|{broadcast_id}|{user_id}")
                    return True
                except MatrixError as e:
                    log.warning("broadcast %s to %s failed: %s", broadcast_id, user_id, e)
                    return False
                except Exception:  # one user's failure (a database hiccup) must not stop the rest
                    log.exception("broadcast %s to %s failed", broadcast_id, user_id)
                    return False

        while True:
            batch = [u for u in await self._admin_store.user_ids_after(cursor, self._batch, row["admins_only"])]
            if not batch:
                await self._store.finish_broadcast(broadcast_id, now_ms())
                return
            targets = [u for u in batch if u != self.system_user]
            done = await asyncio.gather(*(one(u) for u in targets))
            cursor = batch[-1]
            sent = sum(done)
            await self._store.broadcast_progress(
                broadcast_id, cursor, sent, len(done) - sent, len(batch) < self._batch, now_ms(),
            )
            if len(batch) < self._batch:
                return

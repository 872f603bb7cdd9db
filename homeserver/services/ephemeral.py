"""Typing, read receipts and presence: the ephemeral streams of /sync.

Typing and presence live in memory (they mean nothing after a restart);
receipts are stored. In-memory stream positions start from the wall clock
so a token issued before a restart never hides what comes after it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import attrs

from homeserver.core.errors import MatrixError, forbidden
from homeserver.core.records import Receipt
from homeserver.services.clock import now_ms
from homeserver.services.persister import IdGenerator
from homeserver.services.replication import Announcer, Positions
from storage.stores.receipts import ReceiptStore

MAX_TYPING_TIMEOUT_MS = 120_000
TYPING, PRESENCE = "typing", "presence"  # their notices' streams (workers)
RECEIPT_TYPES = ("m.read", "m.read.private", "m.fully_read")
PRESENCE_STATES = ("online", "offline", "unavailable")

Wake = Callable[[int, Iterable[str]], None]  # (new position, room ids or user ids)


class EphemeralListener(Protocol):
    """Told of every change (local or remote users); federation relays local ones."""

    def typing_changed(self, room_id: str, user_id: str, typing: bool) -> None: ...

    def receipt_changed(self, receipt: Receipt) -> None: ...

    def presence_changed(self, user_id: str, content: dict[str, Any], audience: set[str]) -> None: ...


class TypingService:
    """With workers (`announcer` given), a change is published and applied by every
    worker, this one included, when its notice arrives (`apply_notice`): positions are
    then the same everywhere, and each worker's own timer ends a typing that the
    worker which started it can no longer end (docs/workers.md)."""

    def __init__(
        self, wake_rooms: Wake, listeners: Sequence[EphemeralListener] = (),
        announcer: Announcer | None = None, start: int | None = None,
    ) -> None:
        self._typing: dict[str, dict[str, asyncio.TimerHandle]] = {}
        self._changed_at: dict[str, int] = {}
        self._ids = IdGenerator(now_ms() if start is None else start)
        self._wake_rooms = wake_rooms
        self._listeners = tuple(listeners)
        self._announcer = announcer

    @property
    def position(self) -> int:
        return self._ids.last

    def set_typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int = 30_000) -> None:
        if self._announcer is not None:
            self._announcer.post(TYPING, {"room": room_id, "user": user_id, "typing": typing, "timeout": timeout_ms})
        elif self._set(room_id, user_id, typing, timeout_ms, None):
            self._tell(room_id, user_id, typing)

    def apply_notice(self, position: int, payload: str, mine: bool) -> None:
        """A typing notice from the bus (workers), in channel order."""
        d = json.loads(payload)
        if self._set(d["room"], d["user"], d["typing"], d["timeout"], position) and mine:
            self._tell(d["room"], d["user"], d["typing"])  # federation hears it once

    def _set(self, room_id: str, user_id: str, typing: bool, timeout_ms: int, position: int | None) -> bool:
        users = self._typing.setdefault(room_id, {})
        old = users.pop(user_id, None)
        if old is not None:
            old.cancel()
        if typing:
            delay = min(max(timeout_ms, 0), MAX_TYPING_TIMEOUT_MS) / 1000
            users[user_id] = asyncio.get_running_loop().call_later(
                delay, self.set_typing, room_id, user_id, False,
            )
        elif old is None:
            return False  # nothing changed
        pos = self._ids.next() if position is None else position
        self._changed_at[room_id] = pos
        self._wake_rooms(pos, (room_id,))
        return True

    def _tell(self, room_id: str, user_id: str, typing: bool) -> None:
        for listener in self._listeners:
            listener.typing_changed(room_id, user_id, typing)

    def typing_users(self, room_id: str) -> list[str]:
        return sorted(self._typing.get(room_id, {}))

    def changed_rooms(self, room_ids: Iterable[str], since: int) -> dict[str, dict[str, Any]]:
        """m.typing events for rooms whose typing set changed after `since`."""
        return {
            r: {"type": "m.typing", "content": {"user_ids": self.typing_users(r)}}
            for r in room_ids if self._changed_at.get(r, 0) > since
        }


class ReceiptService:
    def __init__(
        self, store: ReceiptStore, ids: Positions, local_members: Callable[[Iterable[str]], Iterable[str]],
        listeners: Sequence[EphemeralListener] = (),
    ) -> None:
        self._store = store
        self._ids = ids
        self._local_members = local_members
        self._listeners = tuple(listeners)
        self._floor = ids.last
        self._room_last: dict[str, int] = {}

    @property
    def position(self) -> int:
        return self._ids.last

    async def put(
        self, room_id: str, user_id: str, receipt_type: str, event_id: str, thread_id: str | None,
        ts: int | None = None,
    ) -> None:
        if receipt_type not in ("m.read", "m.read.private"):
            raise MatrixError(400, "M_INVALID_PARAM", f"Unknown receipt type {receipt_type}")
        async with self._ids.take() as taken:
            pos = taken.first
            receipt = Receipt(room_id, receipt_type, user_id, thread_id or "", event_id, ts or now_ms(), pos)
            await self._store.put(receipt)
            self._room_last[room_id] = pos
            taken.wake(self._local_members((room_id,)), rooms=(room_id,))
        for listener in self._listeners:
            listener.receipt_changed(receipt)  # private ones too: unread counts change

    def remote_changed(self, room_ids: Iterable[str], position: int) -> None:
        """Another worker stored receipts in these rooms (before positions move past it)."""
        for room_id in room_ids:
            self._room_last[room_id] = max(position, self._room_last.get(room_id, 0))

    async def events_for(self, room_ids: list[str], since: int, upto: int, viewer: str) -> dict[str, dict[str, Any]]:
        """One m.receipt event per room with the receipts added after `since`."""
        out: dict[str, dict[str, Any]] = {}
        if since >= self._floor and all(self._room_last.get(r, 0) <= since for r in room_ids):
            return out  # nothing new: no need to ask the database
        for r in await self._store.since(room_ids, since, upto):
            if r.receipt_type == "m.read.private" and r.user_id != viewer:
                continue
            content = out.setdefault(r.room_id, {"type": "m.receipt", "content": {}})["content"]
            entry: dict[str, Any] = {"ts": r.ts}
            if r.thread_id:
                entry["thread_id"] = r.thread_id
            content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = entry
        return out


@attrs.frozen
class PresenceState:
    presence: str
    status_msg: str | None
    last_active_ts: int
    stream_id: int


class PresenceService:
    """With workers (`announcer` given), updates are published and every worker applies
    them from the notice (`apply_notice`), like typing."""

    def __init__(
        self, wake_users: Wake, audience: Callable[[str], Awaitable[set[str]]],
        listeners: Sequence[EphemeralListener] = (), announcer: Announcer | None = None,
        start: int | None = None,
    ) -> None:
        self._states: dict[str, PresenceState] = {}
        self._ids = IdGenerator(now_ms() if start is None else start)
        self._wake_users = wake_users
        self._audience = audience  # user -> users who share a room with them
        self._listeners = tuple(listeners)
        self._announcer = announcer
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def position(self) -> int:
        return self._ids.last

    async def set(self, requester_id: str, user_id: str, presence: Any, status_msg: Any = None) -> None:
        if requester_id != user_id:
            raise forbidden("You can only set your own presence")
        if presence not in PRESENCE_STATES:
            raise MatrixError(400, "M_INVALID_PARAM", "presence must be online, offline or unavailable")
        if status_msg is not None and not isinstance(status_msg, str):
            raise MatrixError(400, "M_BAD_JSON", "status_msg must be a string")
        await self._update(user_id, presence, status_msg)

    async def touch(self, user_id: str, presence: str = "online") -> None:
        """A syncing client marks its user active (set_presence on /sync)."""
        old = self._states.get(user_id)
        if presence not in PRESENCE_STATES:
            return
        if old is not None and old.presence == presence and now_ms() - old.last_active_ts < 60_000:
            return
        await self._update(user_id, presence, old.status_msg if old else None)

    async def set_remote(self, user_id: str, presence: str, status_msg: str | None, last_active_ago: int) -> None:
        """A peer told us about one of its users."""
        if presence in PRESENCE_STATES:
            await self._update(user_id, presence, status_msg, now_ms() - max(0, last_active_ago))

    async def _update(
        self, user_id: str, presence: str, status_msg: str | None, active_ts: int | None = None,
    ) -> None:
        if self._announcer is not None:
            self._announcer.post(PRESENCE, {
                "user": user_id, "presence": presence, "status_msg": status_msg,
                "active_ts": active_ts or now_ms(),
            })
            return
        pos = self._ids.next()
        st = PresenceState(presence, status_msg, active_ts or now_ms(), pos)
        self._states[user_id] = st
        await self._announce(user_id, st, True)

    def apply_notice(self, position: int, payload: str, mine: bool) -> None:
        """A presence notice from the bus (workers), in channel order."""
        d = json.loads(payload)
        st = PresenceState(d["presence"], d["status_msg"], d["active_ts"], position)
        self._states[d["user"]] = st
        task = asyncio.create_task(self._announce(d["user"], st, mine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce(self, user_id: str, st: PresenceState, tell: bool) -> None:
        audience = await self._audience(user_id)
        self._wake_users(st.stream_id, {user_id, *audience})
        if tell:
            for listener in self._listeners:
                listener.presence_changed(user_id, self._content(st), audience)

    def get(self, user_id: str) -> dict[str, Any]:
        st = self._states.get(user_id)
        if st is None:
            return {"presence": "offline"}
        return self._content(st)

    @staticmethod
    def _content(st: PresenceState) -> dict[str, Any]:
        out: dict[str, Any] = {
            "presence": st.presence, "last_active_ago": max(0, now_ms() - st.last_active_ts),
            "currently_active": st.presence == "online",
        }
        if st.status_msg is not None:
            out["status_msg"] = st.status_msg
        return out

    async def events_for(self, viewer: str, since: int) -> list[dict[str, Any]]:
        if not any(st.stream_id > since for st in self._states.values()):
            return []
        visible = {viewer, *await self._audience(viewer)}
        return [
            {"type": "m.presence", "sender": u, "content": self._content(st)}
            for u in sorted(visible)
            if (st := self._states.get(u)) is not None and st.stream_id > since
        ]

"""The per-service transaction queue (spec: "Pushing events",
PUT /_matrix/app/v1/transactions/{txnId}), fed by the room writer's post-commit fan-out.

Nothing here is on the send path: `on_committed` only queues the record. One task picks
each commit's events a service is interested in; one worker per service builds
transactions of at most 100 events, stores each (with the stream position it covers) before
the first attempt, and resends it under the same txn id, with exponential backoff, until the
service answers 200. After a restart the stored transactions go first, then the events after
the stored position are read back from the database (catch-up). A service that falls far
behind is caught up the same way rather than held in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from homeserver.core.appservice import AppService
from homeserver.core.events import StoredEvent
from homeserver.core.records import Receipt
from homeserver.services.appservice import AppServiceApiPort
from homeserver.services.fanout import Committed
from homeserver.services.formatting import client_event
from homeserver.services.reader import EventReader
from storage.stores.appservice import AppServiceStore
from storage.stores.rooms import RoomStore

log = logging.getLogger(__name__)

MAX_EVENTS = 100  # spec-recommended / Synapse's transaction size
MAX_EPHEMERAL = 100
# Past this many events waiting in memory, a worker forgets them and reads them back from
# the database when the service answers again.
MAX_IN_MEMORY = 5_000


class _Worker:
    def __init__(
        self, service: AppService, queue: AppServiceQueue, position: int, last_txn: int,
    ) -> None:
        self.service = service
        self.q = queue
        self.position = position  # everything up to here is in a stored transaction
        self.last_txn = last_txn
        self.pending: list[tuple[int, dict[str, Any]]] = []  # (stream position, client event)
        self.ephemeral: list[dict[str, Any]] = []
        self.behind = False  # True: read events from the database, not `pending`
        self.wake = asyncio.Event()
        self.failures = 0

    def add(self, position: int, event: dict[str, Any]) -> None:
        if self.behind or position <= self.position:
            return
        self.pending.append((position, event))
        if len(self.pending) > MAX_IN_MEMORY:
            self.pending.clear()
            self.behind = True
        self.wake.set()

    def add_ephemeral(self, edu: dict[str, Any]) -> None:
        if len(self.ephemeral) < MAX_IN_MEMORY:  # best effort, as ephemeral data is
            self.ephemeral.append(edu)
            self.wake.set()

    async def run(self) -> None:
        for txn_id, body in await self.q.store.pending_txns(self.service.id):
            await self._deliver(txn_id, body)
        while True:
            batch, position = await self._next_batch()
            if batch is None:
                self.wake.clear()
                if not self.pending and not self.ephemeral and not self.behind:
                    await self.wake.wait()
                continue
            events = [e for _, e in batch]
            ephemeral, self.ephemeral = self.ephemeral[:MAX_EPHEMERAL], self.ephemeral[MAX_EPHEMERAL:]
            body: dict[str, Any] = {"events": events}
            if self.service.receive_ephemeral:
                body["ephemeral"] = ephemeral
                body["de.sorunome.msc2409.ephemeral"] = ephemeral  # mautrix and older bridges read this
            txn_id = self.last_txn + 1
            raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"))  # serialised once
            await self._store(self.q.store.add_txn, self.service.id, txn_id, raw, position)
            self.last_txn, self.position = txn_id, max(self.position, position)
            await self._deliver(txn_id, raw)
            if not self.pending and not self.behind and self.q.filtered_upto > self.position:
                # Nothing more for this service up to what was filtered: remember it so a
                # restart does not read those events again.
                upto = self.q.filtered_upto
                await self._store(self.q.store.set_position, self.service.id, upto)
                self.position = upto

    async def _next_batch(self) -> tuple[list[tuple[int, dict[str, Any]]] | None, int]:
        if self.behind:
            upto = self.q.filtered_upto
            found: list[tuple[int, dict[str, Any]]] = []
            cursor = self.position
            while len(found) < MAX_EVENTS:
                rows = await self.q.store.events_after(cursor, upto, 200)
                if not rows:
                    break
                for se in rows:
                    cursor = se.stream_ordering
                    if await self.q.interested(self.service, se, None):
                        found.append((se.stream_ordering, client_event(se)))
                        if len(found) == MAX_EVENTS:
                            break
            if len(found) < MAX_EVENTS:
                cursor = upto
                if self.q.filtered_upto == upto:  # no await since: nothing filtered was dropped
                    self.behind = False
            if found or self.ephemeral:
                return found, cursor
            if cursor > self.position:
                await self._store(self.q.store.set_position, self.service.id, cursor)
                self.position = cursor
            return None, self.position
        if not self.pending and not self.ephemeral:
            return None, self.position
        batch, self.pending = self.pending[:MAX_EVENTS], self.pending[MAX_EVENTS:]
        return batch, batch[-1][0] if batch else self.position

    async def _deliver(self, txn_id: int, body: str) -> None:
        """Until the service answers 2xx, with the same txn id; then forget the transaction."""
        delay = self.q.retry_min_ms
        while not await self.q.api.send_transaction(self.service, str(txn_id), body.encode()):
            self.failures += 1
            log.info("application service %s: txn %d failed; retrying in %d ms", self.service.id, txn_id, delay)
            await asyncio.sleep(delay / 1000)
            delay = min(delay * 2, self.q.retry_max_ms)
        self.failures = 0
        await self._store(self.q.store.delete_txn, self.service.id, txn_id)

    async def _store(self, write: Any, *args: Any) -> None:
        while True:  # the database is away: wait rather than lose the queue's place
            try:
                await write(*args)
                return
            except Exception:
                log.exception("application service %s: could not store queue state; retrying", self.service.id)
                await asyncio.sleep(1)


class AppServiceQueue:
    """A subscriber of the room writer and an ephemeral listener: every service with a URL
    gets the events and (when `receive_ephemeral`) the typing/receipt/presence updates it
    is interested in."""

    def __init__(
        self, *, services: Sequence[AppService], store: AppServiceStore, rooms: RoomStore,
        reader: EventReader, api: AppServiceApiPort, retry_min_ms: int, retry_max_ms: int,
    ) -> None:
        self.services = [s for s in services if s.url]
        self.store = store
        self._rooms = rooms
        self._reader = reader
        self.api = api
        self.retry_min_ms = retry_min_ms
        self.retry_max_ms = retry_max_ms
        self.filtered_upto = 0
        self._inbox: asyncio.Queue[Committed] = asyncio.Queue()
        self._workers: dict[str, _Worker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._needs_aliases = any(s.aliases for s in self.services)

    async def start(self, upto: int) -> None:
        """Resume each service where it stopped (a new service starts at `upto`: history
        is not pushed to it)."""
        self.filtered_upto = upto
        for service in self.services:
            state = await self.store.state(service.id)
            if state is None:
                await self.store.init_state(service.id, upto)
                state = (upto, 0)
            worker = _Worker(service, self, *state)
            worker.behind = worker.position < upto
            self._workers[service.id] = worker
            self._tasks.append(asyncio.create_task(worker.run(), name=f"appservice-{service.id}"))
        if self.services:
            self._tasks.append(asyncio.create_task(self._filter(), name="appservice-filter"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def on_committed(self, commit: Committed) -> None:
        if self.services:
            self._inbox.put_nowait(commit)

    async def _filter(self) -> None:
        while True:
            commit = await self._inbox.get()
            try:
                members = None if commit.head is None else [
                    u for u, m in commit.head.members.items() if m in ("join", "invite")
                ]
                for se in commit.events:
                    if se.outlier or se.soft_failed or se.event.rejected or se.stream_ordering <= 0:
                        continue
                    formatted: dict[str, Any] | None = None
                    for worker in self._workers.values():
                        if await self.interested(worker.service, se, members):
                            formatted = formatted or client_event(se)
                            worker.add(se.stream_ordering, formatted)
            except Exception:
                log.exception("application services: could not filter a commit")
            self.filtered_upto = max(self.filtered_upto, commit.position)

    async def interested(self, service: AppService, se: StoredEvent, members: list[str] | None) -> bool:
        if members is None:
            head = await self._reader.room_head(se.event.room_id)
            members = [] if head is None else [u for u, m in head.members.items() if m in ("join", "invite")]
        aliases: list[str] = []
        if self._needs_aliases and service.aliases:
            aliases = await self._rooms.aliases_of_room(se.event.room_id)
        return service.is_interested(se.event.pdu, members, aliases)

    # -- ephemeral (spec: `ephemeral` in the transaction, when receive_ephemeral is set) -------

    def _room_ephemeral(self, room_id: str, edu: dict[str, Any]) -> None:
        head = self._reader_head(room_id)
        members = [] if head is None else [u for u, m in head.members.items() if m == "join"]
        for worker in self._workers.values():
            s = worker.service
            if s.receive_ephemeral and (s.is_room_in_namespace(room_id) or any(s.is_user_in_namespace(u) for u in members)):
                worker.add_ephemeral(edu)

    def _reader_head(self, room_id: str) -> Any:
        return self._reader.cached_head(room_id)

    def typing_changed(self, room_id: str, user_id: str, typing: bool) -> None:
        # m.typing carries the whole list; the service gets who changed (as Synapse does).
        self._room_ephemeral(room_id, {
            "type": "m.typing", "room_id": room_id, "content": {"user_ids": [user_id] if typing else []},
        })

    def receipt_changed(self, r: Receipt) -> None:
        if r.receipt_type == "m.read.private":
            return  # private receipts are for their owner only
        data: dict[str, Any] = {"ts": r.ts}
        if r.thread_id:
            data["thread_id"] = r.thread_id
        self._room_ephemeral(r.room_id, {
            "type": "m.receipt", "room_id": r.room_id,
            "content": {r.event_id: {r.receipt_type: {r.user_id: data}}},
        })

    def presence_changed(self, user_id: str, content: dict[str, Any], audience: set[str]) -> None:
        for worker in self._workers.values():
            s = worker.service
            if s.receive_ephemeral and (s.is_user_in_namespace(user_id) or any(s.is_user_in_namespace(u) for u in audience)):
                worker.add_ephemeral({"type": "m.presence", "sender": user_id, "content": content})

"""Several worker processes of one homeserver: shared positions and wake-ups.

In one process the room writer's ids come from memory and the notifier is told of
each commit directly. With workers (redis.url set, docs/workers.md) ids come from
Redis (BusPort: homeserver/outbound/redis_bus.py) and every change is published
on one channel as a *notice* carrying the stream's persisted-up-to position. Each
process subscribes once; `Replication` applies what others committed to this
process's caches (recent events, room heads, membership changes, shared sync
material) and only then moves the notifier to the notice's position, waking the
users each commit concerns once that position covers it. A process hears its own
notices too: its caches already have its commits, but its waiters are woken the
same way, so no waiter anywhere sees a position that skips a later commit.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, Protocol

from homeserver.core.events import Event, StoredEvent
from homeserver.services.aggregations import Aggregations
from homeserver.services.fanout import Committed
from homeserver.services.notifier import NotifierPort
from homeserver.services.persister import IdGenerator
from homeserver.services.reader import EventReader
from homeserver.services.recent import RecentEvents
from homeserver.services.room_heads import RoomHeads
from homeserver.services.room_material import RoomMaterialCache

log = logging.getLogger(__name__)

EVENTS = "events"
LOST = "lost"  # a dead worker's ids were dropped (redis_bus.py)


class BusPort(Protocol):
    """What the services need of the shared bus (RedisBus)."""

    worker: str

    async def take(self, stream: str, n: int) -> list[int]: ...

    async def finish(self, stream: str, ids: Sequence[int], payload: str) -> int: ...

    async def post(self, stream: str, payload: str) -> int: ...

    async def broadcast(self, stream: str, payload: str) -> None: ...

    async def block(self, name: str, n: int, step: int = 1) -> int: ...

    async def counter(self, stream: str) -> int:
        """The last id handed out on the stream."""


class Visibility:
    """Lets a worker answer a write only once its own positions include it, so a client
    reading from the same worker right after sees what it wrote (read-your-writes).
    Replication reports each position it moves to; writers wait (bounded) for theirs."""

    WAIT_S = 10.0

    def __init__(self) -> None:
        self._positions: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}

    def advanced(self, stream: str, position: int) -> None:
        self._positions[stream] = max(position, self._positions.get(stream, 0))
        waiting = self._waiters.get(stream)
        if not waiting:
            return
        keep = []
        for pos, fut in waiting:
            if pos <= position:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((pos, fut))
        self._waiters[stream] = keep

    async def reached(self, stream: str, position: int) -> None:
        if self._positions.get(stream, 0) >= position:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(stream, []).append((position, fut))
        try:
            await asyncio.wait_for(fut, self.WAIT_S)
        except TimeoutError:  # Redis away: the write stands; readers will see it later
            log.warning("%s position %d not visible after %.0f s", stream, position, self.WAIT_S)


# -- the room writer's ids ------------------------------------------------------


class StreamIdsPort(Protocol):
    """Where the room writer gets stream positions, and what it says once a commit ends."""

    def ordered(self) -> AbstractAsyncContextManager[Any]:
        """Held from `take` until the batch is queued: this process commits in id order."""

    async def take(self, n: int) -> list[int]: ...

    def settle(self, ids: Sequence[int], commit: Committed | None) -> None:
        """After the commit (None: it failed and the ids are released)."""

    async def visible(self, ids: Sequence[int]) -> None:
        """Until this process's readers see the committed ids."""


class LocalStreamIds:
    """One process: ids from memory. `take` never suspends, so nothing can run between
    allocation and queueing the batch (the persister then commits in id order)."""

    def __init__(self, ids: IdGenerator) -> None:
        self._ids = ids

    def ordered(self) -> AbstractAsyncContextManager[Any]:
        return nullcontext()

    async def take(self, n: int) -> list[int]:
        return [self._ids.next() for _ in range(n)]

    def settle(self, ids: Sequence[int], commit: Committed | None) -> None:
        pass

    async def visible(self, ids: Sequence[int]) -> None:
        pass


class SharedStreamIds:
    """Workers: ids from the bus; each commit's notice published in commit order by one
    task (a notice published twice or late would only delay positions, never skip)."""

    def __init__(self, bus: BusPort, notice: Callable[[Committed], str], visibility: Visibility) -> None:
        self._bus = bus
        self._notice = notice
        self._visibility = visibility
        self._lock = asyncio.Lock()
        self._queue: asyncio.Queue[tuple[Sequence[int], str] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stream-notices")

    async def stop(self) -> None:
        """Publish what is queued, then end."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None

    def ordered(self) -> AbstractAsyncContextManager[Any]:
        return self._lock

    async def take(self, n: int) -> list[int]:
        return await self._bus.take(EVENTS, n) if n else []

    def settle(self, ids: Sequence[int], commit: Committed | None) -> None:
        payload = self._notice(commit) if commit is not None else ""
        if ids or payload:
            self._queue.put_nowait((ids, payload))

    async def visible(self, ids: Sequence[int]) -> None:
        if ids:
            await self._visibility.reached(EVENTS, max(ids))

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            ids, payload = item
            delay = 0.05
            while True:
                try:
                    await self._bus.finish(EVENTS, ids, payload)
                    break
                except Exception as exc:  # Redis away: positions wait (nothing is skipped)
                    log.warning("publishing a commit notice failed (%s); retrying", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)


class BlockIdsPort(Protocol):
    async def take(self, n: int) -> Iterator[int]:
        """At most n ids, handed out as the caller asks for them."""


class BlockIds:
    """Ids that only need to be unique across workers (state groups; outliers count
    down): reserved from the bus in blocks of at least BLOCK."""

    BLOCK = 100

    def __init__(self, bus: BusPort, name: str, step: int = 1) -> None:
        self._bus = bus
        self._name = name
        self._step = step
        self._next = 0
        self._left = 0

    async def take(self, n: int) -> Iterator[int]:
        if self._left < n:
            size = max(n, self.BLOCK)
            last = await self._bus.block(self._name, size, self._step)
            self._next, self._left = last - (size - 1) * self._step, size
        first = self._next
        self._next += n * self._step
        self._left -= n
        return iter(range(first, first + n * self._step, self._step))


class LocalBlockIds:
    """One process: straight from the in-memory generator, as they are used."""

    def __init__(self, ids: IdGenerator) -> None:
        self._ids = ids

    async def take(self, n: int) -> Iterator[int]:
        return (self._ids.next() for _ in range(n))


class Announcer:
    """Ephemeral notices (typing, presence) and broadcasts (revoked tokens) from code
    that cannot wait: queued and published in order by one task."""

    def __init__(self, bus: BusPort) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[tuple[bool, str, str] | asyncio.Future[None] | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="announcer")

    def post(self, stream: str, payload: dict[str, Any]) -> None:
        """A change with a position on `stream` (every worker applies it, this one too)."""
        self._queue.put_nowait((True, stream, json.dumps(payload, separators=(",", ":"))))

    def broadcast(self, stream: str, payload: dict[str, Any]) -> None:
        """Something only the other workers need to hear."""
        self._queue.put_nowait((False, stream, json.dumps(payload, separators=(",", ":"))))

    async def flush(self) -> None:
        """Until everything queued before now is published."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(done)
        await done

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            if isinstance(item, asyncio.Future):
                if not item.done():
                    item.set_result(None)
                continue
            positioned, stream, payload = item
            try:
                if positioned:
                    await self._bus.post(stream, payload)
                else:
                    await self._bus.broadcast(stream, payload)
            except Exception as exc:  # best effort, like the in-memory streams themselves
                log.warning("could not publish a %s notice: %s", stream, exc)

    async def stop(self) -> None:
        self._queue.put_nowait(None)
        await self._task


# -- the other durable streams (account data, receipts, to-device, device lists) ----


class Taken:
    """Positions taken for one write; `wake` names whom the write concerns."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.woken: set[str] = set()
        self.rooms: list[str] = []

    @property
    def first(self) -> int:
        return self.ids[0]

    def wake(self, users: Iterable[str], rooms: Iterable[str] = ()) -> None:
        self.woken.update(users)
        self.rooms.extend(rooms)


class Positions:
    """Positions of one durable stream: `async with positions.take(n) as t:` write
    rows at t.ids, then t.wake(users). Leaving the block without an error tells the
    notifier (one process) or publishes the notice (workers); an error releases the
    ids, so positions never wait for a write that will not come."""

    def __init__(
        self, stream: str, ids: IdGenerator, notifier: NotifierPort, bus: BusPort | None = None,
        visibility: Visibility | None = None,
    ) -> None:
        self.stream = stream
        self._visibility = visibility or Visibility()
        self._ids = ids
        self._notifier = notifier
        self._bus = bus
        self._queue: asyncio.Queue[tuple[Sequence[int], str] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        if bus is not None:
            self._task = asyncio.create_task(self._publish(), name=f"{stream}-notices")

    @property
    def last(self) -> int:
        """One process: the last position handed out (with workers, the start position)."""
        return self._ids.last

    @asynccontextmanager
    async def take(self, n: int = 1) -> AsyncIterator[Taken]:
        if self._bus is None:
            taken = Taken([self._ids.next() for _ in range(n)])
        else:
            taken = Taken(await self._bus.take(self.stream, n))
        try:
            yield taken
        except BaseException:
            if self._bus is not None:
                self._queue.put_nowait((taken.ids, ""))
            raise
        if self._bus is None:
            self._notifier.advance(self.stream, taken.ids[-1], taken.woken)
        else:
            self._queue.put_nowait((taken.ids, json.dumps(
                {"pos": taken.ids[-1], "wake": sorted(taken.woken), "rooms": taken.rooms},
                separators=(",", ":"),
            )))
            await self._visibility.reached(self.stream, taken.ids[-1])

    async def _publish(self) -> None:
        while (item := await self._queue.get()) is not None:
            ids, payload = item
            delay = 0.05
            while True:
                try:
                    await self._bus.finish(self.stream, ids, payload)  # type: ignore[union-attr]
                    break
                except Exception as exc:
                    log.warning("publishing a %s notice failed (%s); retrying", self.stream, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None


# -- notices --------------------------------------------------------------------


def event_json(se: StoredEvent) -> dict[str, Any]:
    e = se.event
    return {
        "i": e.event_id, "p": e.pdu, "v": e.room_version, "rj": e.rejected, "s": se.stream_ordering,
        "b": se.state_before, "a": se.state_after, "d": se.txn_device, "t": se.txn_id,
        "o": se.outlier, "f": se.soft_failed, "r": se.replaces_state,
    }


def event_from_json(d: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        Event(d["i"], d["p"], d["v"], d["rj"]), d["s"], d["b"], d["a"], d["d"], d["t"],
        d["o"], d["f"], d["r"],
    )


def commit_notice(commit: Committed, server_name: str) -> str:
    """What other workers need of a commit: the events (for their recent-event ring and
    caches), whether the room moved, membership changes, redactions, and whom to wake
    (the room's joined local users and anyone whose membership changed)."""
    wake = {user for user, _ in commit.membership_changes}
    room = None
    if commit.head is not None:
        wake.update(commit.head.joined_local(server_name))
        room = commit.head.room_id
    return json.dumps({
        "room": room, "moved": commit.head is not None, "wake": sorted(wake),
        "pos": commit.position, "members": list(commit.membership_changes),
        "redactions": list(commit.redactions), "events": [event_json(se) for se in commit.events],
    }, separators=(",", ":"))


class RemoteCommitTarget(Protocol):
    """The caches that must know of commits made by other workers."""

    def forget_room(self, room_id: str) -> None: ...

    def apply(self, commit: Committed, moved: bool) -> None: ...

    def reset(self, floor: int) -> None:
        """Notices up to `floor` may have been missed: drop what cannot be trusted."""


class NoticeBuffer:
    """Notices heard while the services are still being built (the subscription comes
    first, so nothing after the positions read at start is missed), handed on in
    order to the Replication once it exists."""

    def __init__(self) -> None:
        self._held: list[tuple[str, int, str, str]] = []
        self._target: Replication | None = None
        self._gap = False

    def handle(self, stream: str, position: int, worker: str, payload: str) -> None:
        if self._target is None:
            self._held.append((stream, position, worker, payload))
        else:
            self._target.handle(stream, position, worker, payload)

    async def gap(self) -> None:
        if self._target is None:
            self._gap = True  # caches are being built from the database right now
        else:
            await self._target.gap()

    def deliver_to(self, target: Replication) -> None:
        self._target = target
        held, self._held = self._held, []
        for notice in held:
            target.handle(*notice)


class Replication:
    """Applies notices from the bus to this process (see the module docstring)."""

    def __init__(
        self, *, bus: BusPort, notifier: NotifierPort, caches: RemoteCommitTarget, visibility: Visibility,
        ephemeral: dict[str, Callable[[int, str, bool], None]],
        on_broadcast: dict[str, Callable[[str], None]],
        durable: dict[str, Callable[[list[str], int], None]] | None = None,
    ) -> None:
        self._bus = bus
        self._visibility = visibility
        self._worker = bus.worker
        self._notifier = notifier
        self._caches = caches
        self._ephemeral = ephemeral  # stream -> apply(position, payload, from_this_worker)
        self._broadcast = on_broadcast
        self._pending: dict[str, list[tuple[int, int, tuple[str, ...]]]] = {}  # (position, seq, users)
        self._seq = 0
        # stream -> told of rooms another worker changed (receipts), before positions move
        self._durable = durable or {}
        self._wake_everyone = False

    def handle(self, stream: str, position: int, worker: str, payload: str) -> None:
        """One notice, in channel order."""
        if stream == EVENTS:
            self._events(position, worker, payload)
        elif stream in self._durable:
            self._other(stream, position, worker, payload)
        elif stream == LOST and payload == EVENTS:
            # A dead worker's commits up to `position` may be durable without a notice:
            # caches start over above it, and every waiter looks once positions move.
            self._caches.reset(position)
            self._wake_everyone = True
        elif stream in self._ephemeral:
            self._ephemeral[stream](position, payload, worker == self._worker)
        elif stream in self._broadcast:
            if worker != self._worker:
                self._broadcast[stream](payload)
        else:
            log.debug("notice on unknown stream %s ignored", stream)

    async def gap(self) -> None:
        """The subscription was lost and is back: caches start over from the database
        above every id handed out so far (later ones will all be heard of)."""
        self._caches.reset(await self._bus.counter(EVENTS))

    def _events(self, persisted: int, worker: str, payload: str) -> None:
        if payload:
            notice = json.loads(payload)
            if worker != self._worker:
                if notice["room"] is not None:
                    self._caches.forget_room(notice["room"])
                self._caches.apply(Committed(
                    [event_from_json(d) for d in notice["events"]],
                    membership_changes=[(u, s) for u, s in notice["members"]],
                    redactions=[(r, t) for r, t in notice["redactions"]],
                ), notice["moved"])
            self._hold(EVENTS, notice["pos"], notice["wake"])
        due = self._due(EVENTS, persisted)
        if self._wake_everyone and persisted > self._notifier.events_position:
            self._wake_everyone = False
            due.update(self._notifier.waiting_users())
        self._notifier.advance(EVENTS, persisted, due)
        self._visibility.advanced(EVENTS, persisted)

    def _other(self, stream: str, persisted: int, worker: str, payload: str) -> None:
        if payload:
            notice = json.loads(payload)
            if worker != self._worker and notice["rooms"]:
                self._durable[stream](notice["rooms"], notice["pos"])
            self._hold(stream, notice["pos"], notice["wake"])
        self._notifier.advance(stream, persisted, self._due(stream, persisted))
        self._visibility.advanced(stream, persisted)

    def _hold(self, stream: str, position: int, users: Sequence[str]) -> None:
        """Users to wake once the stream's position reaches `position`."""
        if users:
            self._seq += 1
            heapq.heappush(self._pending.setdefault(stream, []), (position, self._seq, tuple(users)))

    def _due(self, stream: str, persisted: int) -> set[str]:
        due: set[str] = set()
        pending = self._pending.get(stream, [])
        while pending and pending[0][0] <= persisted:
            due.update(heapq.heappop(pending)[2])
        return due


class ReplicatedCaches:
    """RemoteCommitTarget over the reader's caches, the recent-event ring, room heads,
    aggregations and the shared initial-sync material."""

    def __init__(
        self, *, heads: RoomHeads, reader: EventReader, recent: RecentEvents,
        room_material: RoomMaterialCache, aggregations: Aggregations,
    ) -> None:
        self._heads = heads
        self._reader = reader
        self._recent = recent
        self._material = room_material
        self._aggregations = aggregations

    def forget_room(self, room_id: str) -> None:
        self._heads.forget(room_id)

    def apply(self, commit: Committed, moved: bool) -> None:
        targets = [t for _, t in commit.redactions]
        if targets:
            self._reader.forget(targets)  # their stored copies were pruned by the writer
        self._reader.on_committed(commit)
        self._recent.redactions_applied(commit.redactions)
        for user_id, stream in commit.membership_changes:
            self._recent.membership_changed(user_id, stream)
        if moved:
            self._recent.add(commit.events)
        self._material.on_committed(commit)
        self._aggregations.on_committed(commit)

    def reset(self, floor: int) -> None:
        self._heads.clear()
        self._reader.clear()
        self._recent.reset(floor)
        self._material.reset(floor)

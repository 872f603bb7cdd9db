"""The room writer: the one place a room's timeline and state move forward.

It owns room heads, per-room ordering (a lock per room), stream-id allocation,
state-group planning (homeserver.core.state_groups) and the commit, then tells
the subscribers given at start-up what was committed (fanout.py). Local sends
(send_events) and what other servers send (append_received, append_outliers,
append_backfill) all end in the same commit step.

In one process a writer owns every room. RoomWriterPort is the role: a later
deployment runs one writer per room shard and sends each room's writes to the
process whose writer owns() it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Protocol

import attrs

from homeserver.core.canonical_json import encode_json
from homeserver.core.errors import MatrixError
from homeserver.core.events import Event, StoredEvent
from homeserver.core.ids import server_of
from homeserver.core.records import Membership, NewRoom, PersistBatch, RoomUpdate, StoreConflict
from homeserver.core.room_versions import get_room_version
from homeserver.core.state_groups import NewStateGroup, StateKey, StateMap, plan_state_group
from homeserver.services.clock import now_ms
from homeserver.services.fanout import CommitSubscriber, Committed, publish
from homeserver.services.local_events import Built, Countersign, EventSpec, LocalEventBuilder
from homeserver.services.lru import LruCache
from homeserver.services.persister import Persister
from homeserver.services.reader import EventReader
from homeserver.services.replication import BlockIdsPort, StreamIdsPort
from homeserver.services.room_heads import RoomHead, RoomHeads
from storage.stores.events import EventStore
from storage.stores.room_purge import RoomPurgeStore
from storage.stores.state import StateStore


class RoomWriterPort(Protocol):
    def owns(self, room_id: str) -> bool:
        """Whether this writer orders the room's writes (one writer per room)."""

    def lock(self, room_id: str) -> asyncio.Lock:
        """Held while a received event is checked against the room and appended."""

    async def create_room(
        self, room_id: str, room_version: str, creator: str, specs: Sequence[EventSpec],
    ) -> list[StoredEvent]: ...

    async def send_events(
        self, room_id: str, specs: Sequence[EventSpec], countersign: Countersign | None = None,
    ) -> list[StoredEvent]: ...

    async def send_event(
        self, room_id: str, spec: EventSpec, countersign: Countersign | None = None,
    ) -> StoredEvent: ...

    async def append_received(
        self, room_id: str, event: Event, state_before: StateMap, *, before_group: int | None,
        soft_failed: bool = False, new_room: NewRoom | None = None, apply_redaction: bool = True,
        forward_from: str | None = None,
    ) -> StoredEvent: ...

    async def append_outliers(
        self, events: Sequence[Event], new_room: NewRoom | None = None, invite_for: str | None = None,
    ) -> list[StoredEvent]: ...

    async def append_backfill(self, events: Sequence[Event]) -> list[StoredEvent]: ...

    async def purge_room(self, room_id: str) -> int:
        """Erase the room from storage and memory; how many events went."""
        ...


class RoomWriter:
    def __init__(
        self, *, server_name: str, builder: LocalEventBuilder, reader: EventReader,
        heads: RoomHeads, events: EventStore, state: StateStore, persister: Persister,
        stream_ids: StreamIdsPort, group_ids: BlockIdsPort, outlier_ids: BlockIdsPort,
        purge: RoomPurgeStore, subscribers: Sequence[CommitSubscriber] = (), queue_outbox: bool = False,
    ) -> None:
        self.server_name = server_name
        self._builder = builder
        self._reader = reader
        self._heads = heads
        self._events = events
        self._state = state
        self._persister = persister
        self._stream_ids = stream_ids
        self._group_ids = group_ids
        # Outliers and backfilled history count down from 0 (see EventStore.max_ids).
        self._outlier_ids = outlier_ids
        self._subscribers = tuple(subscribers)
        self._purge = purge
        self._queue_outbox = queue_outbox  # federation on: local events go to the outbox
        self._locks: dict[str, asyncio.Lock] = {}
        # (sender, device, txn id) of events sent by this process: retries need no query.
        self._recent_txns: LruCache[tuple[str, str, str], StoredEvent] = LruCache(100_000)

    def owns(self, room_id: str) -> bool:
        return True

    def lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = asyncio.Lock()
        return lock

    async def purge_room(self, room_id: str) -> int:
        """Under the room's lock, so no commit of the room interleaves: the rows go in one
        transaction, then the head and cached events, so nothing serves the room again."""
        async with self.lock(room_id):
            event_ids = await self._purge.purge_room(room_id)
            self._heads.forget(room_id)
            self._reader.forget(event_ids)
        return len(event_ids)

    # -- the one commit step ----------------------------------------------------

    async def _commit(
        self, durable: asyncio.Future[None], ids: Sequence[int], commit: Committed,
    ) -> None:
        """Durable first; then the room head moves and subscribers hear of it (and, with
        workers, the others: the ids' notice). `durable` is the queued batch's future."""
        try:
            await asyncio.shield(durable)
        except asyncio.CancelledError:
            # The caller went away, the batch did not: finish the commit when it lands.
            durable.add_done_callback(lambda f: self._committed(f, ids, commit))
            raise
        except BaseException:
            self._stream_ids.settle(ids, None)  # released: positions need not wait for them
            raise
        self._committed(durable, ids, commit)
        await self._stream_ids.visible(ids)

    def _committed(self, durable: asyncio.Future[None], ids: Sequence[int], commit: Committed) -> None:
        if durable.cancelled() or durable.exception() is not None:
            self._stream_ids.settle(ids, None)
            return
        if commit.head is not None:
            self._heads.put(commit.head)
        publish(self._subscribers, commit)
        self._stream_ids.settle(ids, commit)

    def _new_group(
        self, gids: Iterator[int], room_id: str, prev_group: int | None, prev_chain: int, prev_state: StateMap,
        state: StateMap,
    ) -> NewStateGroup:
        group = plan_state_group(
            next(gids), room_id, prev_group, prev_chain, prev_state, state,
        )
        self._state.remember(group, state)
        return group

    # -- local events -----------------------------------------------------------

    async def create_room(
        self, room_id: str, room_version: str, creator: str, specs: Sequence[EventSpec],
    ) -> list[StoredEvent]:
        """Persist a new room's initial events in one commit. In v12 rooms `room_id` is
        only a placeholder: the create event's hash names the room (read it from the
        first stored event)."""
        get_room_version(room_version)
        head = RoomHead(room_id, room_version, {}, 0, 0, [], 0, {})
        new_room = NewRoom(room_id, room_version, creator, now_ms())
        async with self.lock(room_id):
            return await self._send_locked(head, specs, new_room)

    async def send_events(
        self, room_id: str, specs: Sequence[EventSpec], countersign: Countersign | None = None,
    ) -> list[StoredEvent]:
        async with self.lock(room_id):
            head = await self._heads.get(room_id)
            if head is None:
                raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
            spec = specs[0] if len(specs) == 1 else None
            if spec is not None and spec.txn is not None:
                # A retry (also one racing the original request): the original event.
                known = self._recent_txns.get((spec.sender, *spec.txn))
                if known is not None:
                    return [known]
            try:
                stored = await self._send_locked(head, specs, None, countersign)
            except StoreConflict:
                # Sent before this process started: the database knows the txn id.
                if spec is None or spec.txn is None:
                    raise
                existing = await self._reader.find_by_txn(spec.sender, *spec.txn)
                se = await self._reader.get_event(existing) if existing else None
                if se is None:
                    raise
                return [se]
            for se in stored:
                if se.txn_id is not None and se.txn_device is not None:
                    self._recent_txns.put((se.event.sender, se.txn_device, se.txn_id), se)
            return stored

    async def send_event(
        self, room_id: str, spec: EventSpec, countersign: Countersign | None = None,
    ) -> StoredEvent:
        """Build, authorise, sign and persist one local event. `countersign` may add
        another server's signature (a remote invitee's) before it is stored."""
        return (await self.send_events(room_id, [spec], countersign))[0]

    async def _send_locked(
        self, head: RoomHead, specs: Sequence[EventSpec], new_room: NewRoom | None,
        countersign: Countersign | None = None,
    ) -> list[StoredEvent]:
        work = head.copy()
        now = now_ms()
        built = await self._builder.build_all(work, specs, now, countersign)
        if new_room is not None and work.room_id != new_room.room_id:
            new_room = attrs.evolve(new_room, room_id=work.room_id)  # v12: hash-named

        gids = await self._group_ids.take(len(built))
        async with self._stream_ids.ordered():
            ids = await self._stream_ids.take(len(built))
            # No awaits from here to enqueue: stream ids must commit in order.
            batch, commit = self._plan_local(head, work, built, new_room, ids, gids, now)
            durable = self._persister.enqueue(batch)
        await self._commit(durable, ids, commit)
        return list(commit.events)

    def _plan_local(
        self, head: RoomHead, work: RoomHead, built: Sequence[Built], new_room: NewRoom | None,
        ids: Sequence[int], gids: Iterator[int], now: int,
    ) -> tuple[PersistBatch, Committed]:
        batch = PersistBatch(received_ts=now)
        if new_room is not None:
            batch.new_rooms.append(new_room)
        state = dict(head.state)
        group, chain = head.state_group, head.chain_length
        stored: list[StoredEvent] = []
        for b, stream in zip(built, ids, strict=True):
            event, spec = b.event, b.spec
            before = group if (group or new_room is None) else None
            if event.is_state:
                prev_state = dict(state)
                state[event.state_tuple] = event.event_id
                new_group = self._new_group(gids, event.room_id, before, chain, prev_state, state)
                batch.state_groups.append(new_group)
                group, chain = new_group.id, new_group.chain_length
                if event.type == "m.room.member":
                    batch.memberships.append(Membership(
                        event.room_id, event.state_key or "", event.membership or "leave",
                        event.event_id, event.sender, stream,
                    ))
            if event.type == "m.room.redaction" and event.redacts:
                batch.redactions.append((event.event_id, event.redacts))
            stored.append(StoredEvent(
                event, stream, before, group, spec.txn[0] if spec.txn else None,
                spec.txn[1] if spec.txn else None, replaces_state=b.replaces,
            ))
        batch.events = stored
        delta: dict[StateKey, str | None] = {
            k: v for k, v in state.items() if head.state.get(k) != v
        }
        work.state_group, work.chain_length = group, chain
        batch.room_updates.append(RoomUpdate(
            work.room_id, group, work.max_depth, delta, tuple(work.extremities),
        ))
        destinations = self._queue_for_federation(batch, stored, work)
        return batch, Committed(
            stored, work, delta, [(m.user_id, m.stream_ordering) for m in batch.memberships],
            batch.redactions, frozenset(destinations),
        )

    def _queue_for_federation(
        self, batch: PersistBatch, stored: list[StoredEvent], head: RoomHead, exclude: str | None = None,
    ) -> set[str]:
        """Outbox rows for every other server in the room, in the same commit as the events."""
        if not self._queue_outbox:
            return set()
        servers = {server_of(u) for u, m in head.members.items() if m == "join"}
        all_dests: set[str] = set()
        for se in stored:
            dests = set(servers)
            if (se.event.type == "m.room.member" and se.event.state_key
                    and se.event.membership != "invite"):
                # A kicked/banned remote user's server hears of it; an invitee's server
                # gets the invite through /invite only (it is not in the room).
                dests.add(server_of(se.event.state_key))
            dests.discard(self.server_name)
            if exclude is not None:
                dests.discard(exclude)
            if dests:
                body = encode_json(se.event.pdu)
                batch.outbox += [(d, body) for d in sorted(dests)]
                all_dests |= dests
        return all_dests

    # -- what other servers send ------------------------------------------------

    async def append_received(
        self, room_id: str, event: Event, state_before: StateMap, *, before_group: int | None,
        soft_failed: bool = False, new_room: NewRoom | None = None, apply_redaction: bool = True,
        forward_from: str | None = None,
    ) -> StoredEvent:
        """Persist a checked event with the state before it (the caller holds the room
        lock). Moves the room forward (extremities, current state, members) unless it was
        soft-failed; forks are merged with state resolution. ``forward_from``: an event a
        server handed us to pass on (send_join/send_leave), queued for every other server in
        the room in the same commit."""
        head = await self._heads.get(room_id)
        if head is None:
            if new_room is None:
                raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
            head = RoomHead(room_id, new_room.room_version, {}, 0, 0, [], 0, {})
        gids = await self._group_ids.take(3)  # before, after, resolved: at most three new groups
        batch = PersistBatch(received_ts=now_ms())
        if new_room is not None:
            batch.new_rooms.append(new_room)

        if before_group is None:
            g = self._new_group(gids, room_id, head.state_group or None, head.chain_length, head.state, state_before)
            batch.state_groups.append(g)
            before_group, before_chain = g.id, g.chain_length
        else:
            before_chain = (await self._reader.state_and_chain(before_group))[1]
        state_after, after_group, after_chain = state_before, before_group, before_chain
        if event.is_state:
            state_after = {**state_before, event.state_tuple: event.event_id}
            g = self._new_group(gids, room_id, before_group, before_chain, state_before, state_after)
            batch.state_groups.append(g)
            after_group, after_chain = g.id, g.chain_length

        new_head: RoomHead | None = None
        member_events: dict[str, Event] = {}
        delta: dict[StateKey, str | None] = {}
        batch.edges = [(event.event_id, p) for p in event.prev_event_ids]
        # An event some later event already builds on arrived late: it is history,
        # already reflected in its descendants' state, not a new head of the room.
        late = await self._reader.has_children(event.event_id)
        if not soft_failed and not late:
            new_head, delta, member_events = await self._advance(
                head, event, state_after, after_group, after_chain, batch, gids,
            )
        elif late and not soft_failed:
            # Its parents are no longer heads either (a known event now builds on them);
            # state stays as it is: the descendants already carry this event's effects.
            prevs = set(event.prev_event_ids)
            extremities = [e for e in head.extremities if e not in prevs]
            if extremities != head.extremities and extremities:
                new_head = attrs.evolve(head, extremities=extremities)
                batch.room_updates.append(RoomUpdate(
                    room_id, head.state_group, head.max_depth, {}, tuple(extremities),
                ))
            else:
                new_head = head

        async with self._stream_ids.ordered():
            ids = await self._stream_ids.take(1)
            # No awaits from here to enqueue: stream ids must commit in order.
            se, commit = self._plan_received(
                batch, event, ids[0], delta, member_events, new_head, state_before, before_group,
                after_group, soft_failed=soft_failed, apply_redaction=apply_redaction,
                forward_from=forward_from, head=head,
            )
            durable = self._persister.enqueue(batch)
        await self._commit(durable, ids, commit)
        return se

    def _plan_received(
        self, batch: PersistBatch, event: Event, stream: int, delta: dict[StateKey, str | None],
        member_events: dict[str, Event], new_head: RoomHead | None, state_before: StateMap,
        before_group: int, after_group: int, *, soft_failed: bool, apply_redaction: bool,
        forward_from: str | None, head: RoomHead,
    ) -> tuple[StoredEvent, Committed]:
        room_id = event.room_id
        for k, v in delta.items():
            if k[0] == "m.room.member":
                member = member_events.get(v or "")
                batch.memberships.append(Membership(
                    room_id, k[1], (member.membership or "leave") if member else "leave",
                    v or event.event_id, member.sender if member else event.sender, stream,
                ))
        replaces = state_before.get(event.state_tuple) if event.is_state else None
        se = StoredEvent(
            event, stream, before_group, after_group, soft_failed=soft_failed, replaces_state=replaces,
        )
        batch.events.append(se)
        if event.type == "m.room.redaction" and event.redacts and not soft_failed and apply_redaction:
            batch.redactions.append((event.event_id, event.redacts))
        changes = [(m.user_id, m.stream_ordering) for m in batch.memberships]
        if new_head is not None and event.type == "m.room.member" and event.state_key:
            changes.append((event.state_key, stream))
        forwarded: set[str] = set()
        if forward_from is not None and not soft_failed:
            forwarded = self._queue_for_federation(batch, [se], head, exclude=forward_from)
        return se, Committed([se], new_head, delta, changes, batch.redactions, frozenset(forwarded))

    async def _advance(
        self, head: RoomHead, event: Event, state_after: StateMap, after_group: int,
        after_chain: int, batch: PersistBatch, gids: Iterator[int],
    ) -> tuple[RoomHead, dict[StateKey, str | None], dict[str, Event]]:
        """The room head after a new forward extremity: current state (resolved if
        forks remain), extremities, members, and the room update to write."""
        prevs = set(event.prev_event_ids)
        forked = any(e not in prevs for e in head.extremities)
        current = (
            await self._reader.resolve_states(head.room_version, [head.state, state_after], [event])
            if forked else state_after
        )
        cur_group, cur_chain = after_group, after_chain
        if current != state_after:
            g = self._new_group(gids, head.room_id, after_group, after_chain, state_after, current)
            batch.state_groups.append(g)
            cur_group, cur_chain = g.id, g.chain_length
        delta: dict[StateKey, str | None] = {k: v for k, v in current.items() if head.state.get(k) != v}
        delta.update({k: None for k in head.state.keys() - current.keys()})
        changed = [v for k, v in delta.items() if k[0] == "m.room.member" and v and v != event.event_id]
        member_events = {eid: se.event for eid, se in (await self._reader.get_events(changed)).items()}
        if event.type == "m.room.member":
            member_events[event.event_id] = event
        members = dict(head.members)
        for k, v in delta.items():
            if k[0] == "m.room.member":
                member = member_events.get(v or "")
                members[k[1]] = (member.membership or "leave") if member else "leave"
        extremities = [e for e in head.extremities if e not in prevs] + [event.event_id]
        new_head = RoomHead(
            head.room_id, head.room_version, current, cur_group, cur_chain, extremities[-20:],
            max(head.max_depth, event.depth), members,
        )
        batch.room_updates.append(RoomUpdate(
            head.room_id, cur_group, new_head.max_depth, delta, tuple(new_head.extremities),
        ))
        return new_head, delta, member_events

    async def append_outliers(
        self, events: Sequence[Event], new_room: NewRoom | None = None, invite_for: str | None = None,
    ) -> list[StoredEvent]:
        """Store events that sit outside the room's timeline: auth chains and state
        from a join, or an invite to a room we are not in (`invite_for`, a local user,
        then sees it in /sync)."""
        known = await self._reader.known_event_ids(e.event_id for e in events)
        fresh = [e for e in events if e.event_id not in known]
        if not fresh and new_room is None:
            return []
        batch = PersistBatch(received_ts=now_ms())
        if new_room is not None:
            batch.new_rooms.append(new_room)
        invites = [e for e in fresh if invite_for is not None and e.state_key == invite_for]
        oids = await self._outlier_ids.take(len(fresh) - len(invites))
        async with self._stream_ids.ordered():
            ids = await self._stream_ids.take(len(invites))
            # No awaits from here to enqueue: stream ids must commit in order.
            invite_ids = iter(ids)
            stored = []
            for e in fresh:
                if invite_for is not None and e.state_key == invite_for:
                    invite_stream = next(invite_ids)
                    batch.memberships.append(Membership(
                        e.room_id, invite_for, e.membership or "invite", e.event_id, e.sender, invite_stream,
                    ))
                    stored.append(StoredEvent(e, invite_stream, None, None, outlier=True))
                else:
                    stored.append(StoredEvent(e, next(oids), None, None, outlier=True))
            batch.events = stored
            durable = self._persister.enqueue(batch)
        await self._commit(durable, ids, Committed(
            stored, membership_changes=[(m.user_id, m.stream_ordering) for m in batch.memberships],
        ))
        return stored

    async def append_backfill(self, events: Sequence[Event]) -> list[StoredEvent]:
        """Older history fetched from another server: visible to /messages, never to
        /sync, and it does not move the room's state."""
        ids = [e.event_id for e in events]
        in_timeline = await self._reader.known_event_ids(ids, include_outliers=False)
        as_outlier = await self._reader.known_event_ids(ids) - in_timeline
        if as_outlier:
            # Already held outside the timeline (e.g. room state from the join): place them in it.
            await self._events.mark_in_timeline(as_outlier)
            self._reader.forget(as_outlier)
        fresh = sorted(
            (e for e in events if e.event_id not in in_timeline and e.event_id not in as_outlier),
            key=lambda e: -e.depth,
        )
        batch = PersistBatch(received_ts=now_ms())
        oids = await self._outlier_ids.take(len(fresh))
        batch.events = [StoredEvent(e, next(oids), None, None) for e in fresh]
        if fresh:
            await self._commit(self._persister.enqueue(batch), (), Committed(batch.events))
        return batch.events + list((await self._reader.get_events(as_outlier)).values())



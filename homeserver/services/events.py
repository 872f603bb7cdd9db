"""The one owner of event and state truth for local events.

send_events: build -> auth -> sign -> persist -> notify, one room at a time
(a lock per room), every room's writes batched into shared commits by the
Persister. The room's head (current state, extremities, depth, members) is
kept in memory so building an event needs no database read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import attrs

from homeserver.core import auth_rules
from homeserver.core.canonical_json import encode_json
from homeserver.core.errors import AuthError, MatrixError, forbidden
from homeserver.core.events import Event, event_from_pdu, hash_and_sign_pdu, validate_pdu
from homeserver.core.ids import server_of
from homeserver.core.room_versions import get_room_version
from homeserver.core.server_acl import server_allowed
from homeserver.core.signing import SigningKey
from homeserver.services.clock import now_ms
from homeserver.services.lru import LruCache
from homeserver.services.notifier import Notifier
from homeserver.services.persister import IdGenerator, Persister
from homeserver.services.ports import FederationSenderPort
from homeserver.services.recent import RecentEvents
from storage.stores.events import (
    EventStore,
    Membership,
    NewRoom,
    PersistBatch,
    RoomUpdate,
    StoreConflict,
    StoredEvent,
)
from storage.stores.rooms import RoomStore
from storage.stores.state import NewStateGroup, StateKey, StateMap, StateStore, plan_state_group


@attrs.frozen
class EventSpec:
    """What a client asks for; the service fills in everything a PDU needs."""

    type: str
    sender: str
    content: dict[str, Any]
    state_key: str | None = None
    redacts: str | None = None
    txn: tuple[str, str] | None = None  # (device_id, txn_id)


@attrs.define
class RoomHead:
    room_id: str
    room_version: str
    state: StateMap
    state_group: int
    chain_length: int
    extremities: list[str]
    max_depth: int
    members: dict[str, str]  # user id -> membership

    def copy(self) -> RoomHead:
        return attrs.evolve(
            self, state=dict(self.state), extremities=list(self.extremities),
            members=dict(self.members),
        )

    def joined_local(self, server_name: str) -> list[str]:
        return [u for u, m in self.members.items() if m == "join" and server_of(u) == server_name]


Countersign = Callable[[Event], Awaitable[dict[str, Any]]]


class EventService:
    def __init__(
        self, *, server_name: str, signing_key: SigningKey, events: EventStore, state: StateStore,
        rooms: RoomStore, persister: Persister, notifier: Notifier, stream_ids: IdGenerator,
        group_ids: IdGenerator, outlier_ids: IdGenerator | None = None,
        recall_window_ms: int = 120_000,
    ) -> None:
        self.server_name = server_name
        self._key = signing_key
        self._events = events
        self._state = state
        self._rooms = rooms
        self._persister = persister
        self._notifier = notifier
        self._stream_ids = stream_ids
        self._group_ids = group_ids
        self.recall_window_ms = recall_window_ms
        self._heads: dict[str, RoomHead] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._cache: LruCache[str, StoredEvent] = LruCache(10_000)
        # (sender, device, txn id) of events sent by this process: retries need no query.
        self._recent_txns: LruCache[tuple[str, str, str], StoredEvent] = LruCache(100_000)
        # Outliers and backfilled history count down from 0 (see EventStore.max_ids).
        self._outlier_ids = outlier_ids or IdGenerator(0)
        self._federation: FederationSenderPort | None = None
        self.recent = RecentEvents(stream_ids.last)

    def attach_federation(self, sender: FederationSenderPort) -> None:
        """From now on, locally sent events are queued for every other server in the room."""
        self._federation = sender

    # -- reads --------------------------------------------------------------

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
        out: dict[str, StoredEvent] = {}
        missing = []
        for eid in event_ids:
            hit = self._cache.get(eid)
            if hit is not None:
                out[eid] = hit
            else:
                missing.append(eid)
        if missing:
            for eid, se in (await self._events.get_events(missing)).items():
                self._cache.put(eid, se)
                out[eid] = se
        return out

    async def get_event(self, event_id: str) -> StoredEvent | None:
        return (await self.get_events([event_id])).get(event_id)

    async def room_head(self, room_id: str) -> RoomHead | None:
        head = self._heads.get(room_id)
        if head is not None:
            return head
        room = await self._rooms.get_room(room_id)
        meta = await self._rooms.get_room_meta(room_id)
        if room is None or meta is None:
            return None
        group, depth, extremities = meta
        state, chain = await self._state.get_state_and_chain(group)
        members = {
            m.user_id: m.membership for m in await self._rooms.members_of_room(room_id)
        }
        head = RoomHead(room_id, room.room_version, dict(state), group, chain, extremities, depth, members)
        self._heads[room_id] = head
        return head

    def cached_head(self, room_id: str) -> RoomHead | None:
        return self._heads.get(room_id)

    def local_members(self, room_ids: Iterable[str]) -> set[str]:
        """Joined local users of rooms whose head is loaded (any room a local user acts in)."""
        out: set[str] = set()
        for room_id in room_ids:
            head = self._heads.get(room_id)
            if head is not None:
                out.update(head.joined_local(self.server_name))
        return out

    async def users_sharing_rooms(self, user_id: str) -> set[str]:
        out: set[str] = set()
        for row in await self._rooms.memberships_for_user(user_id, ["join"]):
            head = await self.room_head(row.room_id)
            if head is not None:
                out.update(u for u, m in head.members.items() if m == "join")
        out.discard(user_id)
        return out

    async def state_events(self, state: StateMap) -> dict[StateKey, Event]:
        got = await self.get_events(state.values())
        return {k: got[v].event for k, v in state.items() if v in got}

    async def current_state_event(self, room_id: str, key: StateKey) -> Event | None:
        head = await self.room_head(room_id)
        if head is None or key not in head.state:
            return None
        se = await self.get_event(head.state[key])
        return se.event if se else None

    async def server_allowed(self, room_id: str, server_name: str) -> bool:
        """Whether the room's m.room.server_acl lets this server take part."""
        acl = await self.current_state_event(room_id, ("m.room.server_acl", ""))
        return server_allowed(acl.content if acl is not None else None, server_name)

    async def state_at_group(self, group: int | None) -> StateMap:
        return await self._state.get_state(group) if group is not None else {}

    async def state_at_stream(self, room_id: str, stream: int) -> StateMap:
        """Room state after the room's last event at or before a stream position."""
        return await self.state_at_group(await self._events.state_group_at_stream(room_id, stream))

    async def find_by_txn(self, sender: str, device_id: str, txn_id: str) -> str | None:
        return await self._events.find_by_txn(sender, device_id, txn_id)

    @property
    def store(self) -> EventStore:
        return self._events

    def lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = asyncio.Lock()
        return lock

    # -- writes -------------------------------------------------------------

    async def create_room(
        self, room_id: str, room_version: str, creator: str, specs: Sequence[EventSpec],
    ) -> list[StoredEvent]:
        """Persist a new room's initial events in one commit."""
        get_room_version(room_version)
        head = RoomHead(room_id, room_version, {}, 0, 0, [], 0, {})
        new_room = NewRoom(room_id, room_version, creator, now_ms())
        async with self.lock(room_id):
            return await self._send_locked(head, specs, new_room)

    async def send_events(
        self, room_id: str, specs: Sequence[EventSpec], countersign: Countersign | None = None,
    ) -> list[StoredEvent]:
        async with self.lock(room_id):
            head = await self.room_head(room_id)
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
                existing = await self.find_by_txn(spec.sender, *spec.txn)
                se = await self.get_event(existing) if existing else None
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
        rv = get_room_version(work.room_version)
        built: list[tuple[Event, EventSpec, str | None]] = []
        state_cache: dict[str, Event] = {}
        now = now_ms()
        for spec in specs:
            event = self._build(work, spec, now)
            auth_state = await self._auth_state(work, event, state_cache)
            auth_rules.check_auth_rules(rv, event, auth_state)
            if event.type == "m.room.redaction":
                await self._check_redaction(work, event, auth_state)
            if countersign is not None:
                event = attrs.evolve(event, pdu=await countersign(event))
            replaces = work.state.get(event.state_tuple) if event.is_state else None
            if event.is_state:
                work.state[event.state_tuple] = event.event_id
                state_cache[event.event_id] = event
                if event.type == "m.room.member":
                    work.members[event.state_key or ""] = event.membership or "leave"
            work.extremities = [event.event_id]
            work.max_depth = event.depth
            built.append((event, spec, replaces))

        # No awaits from here to enqueue: stream ids must commit in order.
        batch = PersistBatch(received_ts=now)
        if new_room is not None:
            batch.new_rooms.append(new_room)
        state = dict(head.state)
        group, chain = head.state_group, head.chain_length
        stored: list[StoredEvent] = []
        for event, spec, replaces in built:
            stream = self._stream_ids.next()
            before = group if (group or new_room is None) else None
            if event.is_state:
                prev_state = dict(state)
                state[event.state_tuple] = event.event_id
                new_group = plan_state_group(
                    self._group_ids.next(), event.room_id, before, chain, prev_state, state,
                )
                batch.state_groups.append(new_group)
                self._state.remember(new_group, state)
                group, chain = new_group.id, new_group.chain_length
                if event.type == "m.room.member":
                    batch.memberships.append(Membership(
                        event.room_id, event.state_key or "", event.membership or "leave",
                        event.event_id, event.sender, stream,
                    ))
            if event.type == "m.room.redaction" and event.redacts:
                batch.redactions.append((event.event_id, event.redacts))
            se = StoredEvent(
                event, stream, before, group, spec.txn[0] if spec.txn else None,
                spec.txn[1] if spec.txn else None, replaces_state=replaces,
            )
            stored.append(se)
        batch.events = stored
        delta: dict[StateKey, str | None] = {
            k: v for k, v in state.items() if head.state.get(k) != v
        }
        work.state_group, work.chain_length = group, chain
        batch.room_updates.append(RoomUpdate(
            work.room_id, group, work.max_depth, delta, tuple(work.extremities),
        ))
        destinations = self._queue_for_federation(batch, stored, work)
        await self._persister.enqueue(batch)
        self.recent.redactions_applied(batch.redactions)
        if destinations and self._federation is not None:
            self._federation.wake(destinations)

        self._heads[work.room_id] = work
        for se in stored:
            self._cache.put(se.event.event_id, se)
        self._after_commit(stored, work)
        return stored

    # -- write primitives shared with RemoteEvents (remote_events.py) ---------

    def next_stream(self) -> int:
        """A timeline position; allocate it with no await before enqueue (commit order)."""
        return self._stream_ids.next()

    def next_outlier_position(self) -> int:
        return self._outlier_ids.next()

    def new_state_group(
        self, room_id: str, prev_group: int | None, prev_chain: int, prev_state: StateMap,
        state: StateMap,
    ) -> NewStateGroup:
        group = plan_state_group(
            self._group_ids.next(), room_id, prev_group, prev_chain, prev_state, state,
        )
        self._state.remember(group, state)
        return group

    async def state_and_chain(self, group: int) -> tuple[StateMap, int]:
        return await self._state.get_state_and_chain(group)

    async def commit(
        self, batch: PersistBatch, stored: Sequence[StoredEvent], head: RoomHead | None,
    ) -> None:
        """Persist a batch built elsewhere; then cache, move the room head (if given)
        and wake whoever the events concern."""
        await self._persister.enqueue(batch)
        self.recent.redactions_applied(batch.redactions)
        for se in stored:
            self._cache.put(se.event.event_id, se)
        for m in batch.memberships:
            self.recent.membership_changed(m.user_id, m.stream_ordering)
        if head is not None:
            self._heads[head.room_id] = head
            self._after_commit(list(stored), head)

    def forget_cached(self, event_ids: Iterable[str]) -> None:
        for eid in event_ids:
            self._cache.pop(eid)

    def notify_membership(self, user_id: str, stream: int) -> None:
        self.recent.membership_changed(user_id, stream)
        self._notifier.on_events(stream, [user_id])

    def _queue_for_federation(
        self, batch: PersistBatch, stored: list[StoredEvent], head: RoomHead,
    ) -> set[str]:
        """Outbox rows for every other server in the room, in the same commit as the events."""
        if self._federation is None:
            return set()
        servers = {server_of(u) for u, m in head.members.items() if m == "join"}
        all_dests: set[str] = set()
        for se in stored:
            dests = set(servers)
            if se.event.type == "m.room.member" and se.event.state_key:
                dests.add(server_of(se.event.state_key))  # a kicked/banned/invited remote user
            dests.discard(self.server_name)
            if dests:
                body = encode_json(se.event.pdu)
                batch.outbox += [(d, body) for d in sorted(dests)]
                all_dests |= dests
        return all_dests

    def _after_commit(self, stored: list[StoredEvent], head: RoomHead) -> None:
        self.recent.add(stored)
        wake = set(head.joined_local(self.server_name))
        for se in stored:
            if se.event.type == "m.room.member" and se.event.state_key:
                wake.add(se.event.state_key)
                self.recent.membership_changed(se.event.state_key, se.stream_ordering)
        self._notifier.on_events(stored[-1].stream_ordering, wake)

    def _build(self, work: RoomHead, spec: EventSpec, now: int) -> Event:
        rv = get_room_version(work.room_version)
        prev = list(work.extremities[-20:])
        auth_keys = auth_rules.auth_types_for_event(
            rv, spec.type, spec.sender, spec.state_key, spec.content,
        )
        auth_ids = [work.state[k] for k in auth_keys if k in work.state]
        pdu: dict[str, Any] = {
            "room_id": work.room_id, "sender": spec.sender, "type": spec.type,
            "content": spec.content, "origin_server_ts": now,
            "depth": min(work.max_depth + 1, 2**53 - 1),
            "prev_events": prev, "auth_events": auth_ids,
        }
        if spec.state_key is not None:
            pdu["state_key"] = spec.state_key
        if spec.redacts is not None:
            if rv.redacts_in_content:
                pdu["content"] = {**spec.content, "redacts": spec.redacts}
            else:
                pdu["redacts"] = spec.redacts
        signed = hash_and_sign_pdu(rv, pdu, self.server_name, self._key)
        validate_pdu(rv, signed)
        return event_from_pdu(rv.identifier, signed)

    async def _auth_state(
        self, work: RoomHead, event: Event, local: dict[str, Event],
    ) -> dict[StateKey, Event]:
        """The current state entries the auth rules may look at for this event."""
        keys = auth_rules.auth_types_for_event(
            get_room_version(work.room_version), event.type, event.sender, event.state_key,
            event.content,
        )
        wanted = {k: work.state[k] for k in keys if k in work.state}
        fetch = [eid for eid in wanted.values() if eid not in local]
        got = await self.get_events(fetch) if fetch else {}
        out: dict[StateKey, Event] = {}
        for k, eid in wanted.items():
            if eid in local:
                out[k] = local[eid]
            elif eid in got:
                out[k] = got[eid].event
        return out

    async def _check_redaction(
        self, work: RoomHead, event: Event, auth_state: dict[StateKey, Event],
    ) -> None:
        """A local user may recall their own event within the window, or any with the redact level."""
        target_id = event.redacts
        if not target_id:
            raise MatrixError(400, "M_BAD_JSON", "A redaction needs a target")
        target = await self.get_event(target_id)
        if target is None or target.event.room_id != work.room_id:
            raise MatrixError(404, "M_NOT_FOUND", "Cannot find the event to redact in this room")
        level = auth_rules.user_power_level(auth_state, event.sender)
        if level >= auth_rules.named_power_level(auth_state, "redact"):
            return
        if target.event.sender != event.sender:
            raise AuthError("You don't have permission to redact this event")
        if event.origin_server_ts - target.event.origin_server_ts > self.recall_window_ms:
            raise forbidden("The recall window for this event has passed")

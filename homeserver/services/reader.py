"""Reading events and state: cached events, state at an event, membership, and the
timeline queries /sync and /messages need. Never writes; the room writer does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from homeserver.core.events import Event, StoredEvent
from homeserver.core.server_acl import server_allowed
from homeserver.core.state_groups import StateKey, StateMap
from homeserver.core.state_res import resolve_state
from homeserver.services.fanout import Committed
from homeserver.services.lru import LruCache
from homeserver.services.recent import RecentEvents
from homeserver.services.room_heads import RoomHead, RoomHeads
from storage.stores.events import EventStore
from storage.stores.rooms import RoomStore
from storage.stores.state import StateStore


class EventReader:
    def __init__(
        self, *, server_name: str, events: EventStore, state: StateStore, rooms: RoomStore,
        heads: RoomHeads, recent: RecentEvents,
    ) -> None:
        self.server_name = server_name
        self._events = events
        self._state = state
        self._rooms = rooms
        self._heads = heads
        self.recent = recent  # what changed since start, for /sync (read it, never add to it)
        self._cache: LruCache[str, StoredEvent] = LruCache(10_000)

    def caches(self) -> dict[str, LruCache[Any, Any]]:
        """Named caches, for their hit rates on /metrics."""
        return {"get_event_cache": self._cache}

    # -- events -------------------------------------------------------------

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

    def on_committed(self, commit: Committed) -> None:
        """A subscriber of the room writer: events just written are read next."""
        for se in commit.events:
            self._cache.put(se.event.event_id, se)

    def forget(self, event_ids: Iterable[str]) -> None:
        """Drop cached copies of events whose stored row changed (the writer's)."""
        for eid in event_ids:
            self._cache.pop(eid)

    def clear(self) -> None:
        """Workers: notices were missed, so any cached event may be stale (redacted)."""
        self._cache.clear()

    async def known_event_ids(self, event_ids: Iterable[str], include_outliers: bool = True) -> set[str]:
        return await self._events.known_event_ids(event_ids, include_outliers)

    async def has_children(self, event_id: str) -> bool:
        """Some stored event names this one as a prev event."""
        return await self._events.has_children(event_id)

    async def find_by_txn(self, sender: str, device_id: str, txn_id: str) -> str | None:
        return await self._events.find_by_txn(sender, device_id, txn_id)

    # -- rooms and state ------------------------------------------------------

    async def room_head(self, room_id: str) -> RoomHead | None:
        return await self._heads.get(room_id)

    def cached_head(self, room_id: str) -> RoomHead | None:
        return self._heads.cached(room_id)

    def local_members(self, room_ids: Iterable[str]) -> set[str]:
        """Joined local users of rooms whose head is loaded (any room a local user acts in)."""
        out: set[str] = set()
        for room_id in room_ids:
            head = self._heads.cached(room_id)
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

    async def state_and_chain(self, group: int) -> tuple[StateMap, int]:
        return await self._state.get_state_and_chain(group)

    async def state_at_stream(self, room_id: str, stream: int) -> StateMap:
        """Room state after the room's last event at or before a stream position."""
        return await self.state_at_group(await self._events.state_group_at_stream(room_id, stream))

    async def resolve_states(
        self, room_version: str, states: Sequence[StateMap], pending: Sequence[Event] = (),
    ) -> StateMap:
        """State resolution (the room version's algorithm) over several state maps (forks meeting). `pending` are
        events not stored yet (the one being persisted) that the states may name."""
        distinct = {tuple(sorted(s.items())) for s in states}
        if len(distinct) == 1:
            return dict(states[0])
        unstored = {e.event_id: e for e in pending}

        async def fetch(event_ids: Iterable[str]) -> dict[str, Event]:
            ids = list(event_ids)
            found = {i: unstored[i] for i in ids if i in unstored}
            stored = await self.get_events(i for i in ids if i not in unstored)
            found.update({k: v.event for k, v in stored.items()})
            return found

        return await resolve_state(room_version, states, fetch)

    # -- timeline ---------------------------------------------------------------

    async def get_redactions_of(self, event_ids: Sequence[str]) -> dict[str, str]:
        """event id -> the redaction applied to it (recent.redacted_by answers newer ones)."""
        return await self._events.get_redactions_of(event_ids)

    async def topo_at_stream(self, room_id: str, stream: int) -> tuple[int, int] | None:
        return await self._events.topo_at_stream(room_id, stream)

    async def room_events_after(
        self, room_ids: Sequence[str], after: int, upto: int, limit: int,
    ) -> list[StoredEvent]:
        """Events in these rooms with after < stream <= upto, newest first (the
        recent-event ring answers the same from memory when it covers `after`)."""
        return await self._events.room_events_after(room_ids, after, upto, limit)

    async def latest_of_types(
        self, room_ids: Sequence[str], types: Sequence[str], upto: int,
    ) -> dict[str, int]:
        return await self._events.latest_of_types(room_ids, types, upto)

    async def paginate(
        self, room_id: str, cursor: tuple[int, int], backwards: bool, limit: int,
        to: tuple[int, int] | None,
    ) -> list[StoredEvent]:
        return await self._events.paginate(room_id, cursor, backwards, limit, to)

    async def event_near_ts(self, room_id: str, ts: int, forwards: bool) -> StoredEvent | None:
        return await self._events.event_near_ts(room_id, ts, forwards)

    async def oldest_event(self, room_id: str) -> StoredEvent | None:
        return await self._events.oldest_event(room_id)

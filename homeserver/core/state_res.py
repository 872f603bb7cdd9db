"""State resolution: v2 (room versions 2-11, https://spec.matrix.org/v1.19/rooms/v2/#state-resolution),
its v12 revision (rooms/v12: iterative auth checks from an empty map, conflicted
state subgraph) and v1 (room version 1, https://spec.matrix.org/v1.19/rooms/v1/#state-resolution).

Pure apart from ``fetch_events``, the one awaitable the caller supplies: it
is called with batches of event ids and returns whichever of them it has.
Events it cannot supply are left out of the calculation.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from homeserver.core.auth_helpers import CREATE_KEY, POWER_LEVELS_KEY, user_power_level
from homeserver.core.auth_rules import auth_types_for_event, check_auth_rules
from homeserver.core.errors import AuthError
from homeserver.core.events import Event, StateKey
from homeserver.core.room_versions import RoomVersion, StateResAlgorithm, get_room_version

StateMap = Mapping[StateKey, str]
FetchEvents = Callable[[Iterable[str]], Awaitable[Mapping[str, Event]]]


def lexicographical_topological_sort(
    graph: Mapping[str, Iterable[str]], key: Callable[[str], Any]
) -> list[str]:
    """Kahn's algorithm; ``graph[n]`` lists the nodes that must come before ``n``.

    Among the nodes that are ready, the one with the smallest ``(key(n), n)``
    goes next. Nodes only mentioned as predecessors are included too.
    Raises ValueError on a cycle.
    """
    preds: dict[str, set[str]] = {n: set(ps) for n, ps in graph.items()}
    for ps in list(preds.values()):
        for p in ps:
            preds.setdefault(p, set())
    succs: dict[str, list[str]] = {n: [] for n in preds}
    for n, ps in preds.items():
        for p in ps:
            succs[p].append(n)
    waiting = {n: len(ps) for n, ps in preds.items()}
    ready = [(key(n), n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        for child in succs[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (key(child), child))
    if len(order) != len(preds):
        raise ValueError("graph has a cycle")
    return order


class _EventCache:
    """Events fetched during one resolution; each id is requested at most once."""

    def __init__(self, fetch: FetchEvents) -> None:
        self._fetch = fetch
        self.events: dict[str, Event] = {}
        self._unavailable: set[str] = set()

    async def load(self, event_ids: Iterable[str]) -> None:
        wanted = {i for i in event_ids if i not in self.events and i not in self._unavailable}
        if not wanted:
            return
        found = await self._fetch(sorted(wanted))
        for event_id in wanted:
            event = found.get(event_id)
            if event is None:
                self._unavailable.add(event_id)
            else:
                self.events[event_id] = event

    async def load_auth_closure(self, event_ids: Iterable[str]) -> None:
        """Load the events and their whole auth chains, one batch per generation."""
        frontier = set(event_ids)
        await self.load(frontier)
        while frontier:
            parents = {
                a for i in frontier if i in self.events for a in self.events[i].auth_event_ids
            }
            parents.difference_update(self.events)
            parents.difference_update(self._unavailable)
            await self.load(parents)
            frontier = parents

    def auth_closure(self, start: Iterable[str], include_start: bool) -> set[str]:
        """Every loaded event reachable from ``start`` through auth_events."""
        seen: set[str] = set()
        stack = [a for s in start if s in self.events for a in self.events[s].auth_event_ids]
        if include_start:
            stack.extend(s for s in start if s in self.events)
        while stack:
            event_id = stack.pop()
            if event_id in seen or event_id not in self.events:
                continue
            seen.add(event_id)
            stack.extend(self.events[event_id].auth_event_ids)
        return seen

    async def load_create(self, version: RoomVersion, event_ids: Iterable[str]) -> None:
        """v12: the create event is named by the room id, not by auth_events."""
        if not version.room_id_is_create_hash:
            return
        for event_id in event_ids:
            event = self.events.get(event_id)
            if event is not None:
                await self.load(["$" + event.room_id[1:]])
                self.create = self.events.get("$" + event.room_id[1:])
                return

    create: Event | None = None

    def auth_state_of(self, event: Event) -> dict[StateKey, Event]:
        """The event's own (non-rejected) auth events keyed by state, plus the create
        event in v12 rooms, where auth_events never cite it."""
        auth_state: dict[StateKey, Event] = {}
        if self.create is not None:
            auth_state[CREATE_KEY] = self.create
        for auth_id in event.auth_event_ids:
            parent = self.events.get(auth_id)
            if parent is not None and parent.is_state and not parent.rejected:
                auth_state[parent.state_tuple] = parent
        return auth_state

    def power_levels_parent(self, event: Event) -> Event | None:
        """The m.room.power_levels event among ``event``'s auth events, if any."""
        for auth_id in event.auth_event_ids:
            parent = self.events.get(auth_id)
            if parent is not None and parent.is_state and parent.state_tuple == POWER_LEVELS_KEY:
                return parent
        return None


def _separate(state_sets: Sequence[StateMap]) -> tuple[dict[StateKey, str], set[str]]:
    unconflicted: dict[StateKey, str] = {}
    conflicted: set[str] = set()
    keys = set().union(*(s.keys() for s in state_sets))
    for key in keys:
        values = [s.get(key) for s in state_sets]
        first = values[0]
        if first is not None and all(v == first for v in values):
            unconflicted[key] = first
        else:
            conflicted.update(v for v in values if v is not None)
    return unconflicted, conflicted


def _is_power_event(event: Event) -> bool:
    if not event.is_state:
        return False
    if event.state_tuple in (POWER_LEVELS_KEY, ("m.room.join_rules", "")):
        return True
    return (
        event.type == "m.room.member"
        and event.membership in ("leave", "ban")
        and event.sender != event.state_key
    )


def _sender_power(version: RoomVersion, cache: _EventCache, event: Event) -> int:
    """The sender's level according to the event's own auth events only."""
    return user_power_level(cache.auth_state_of(event), event.sender, version)


def _power_sort_graph(nodes: set[str], cache: _EventCache) -> dict[str, set[str]]:
    """For each node, the nodes of the set it (transitively) depends on through
    auth_events, stopping at the first node of the set on each path."""
    below: dict[str, frozenset[str]] = {}
    for root in nodes:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            event_id, expanded = stack.pop()
            if event_id in below:
                continue
            parents = cache.events[event_id].auth_event_ids
            if not expanded:
                stack.append((event_id, True))
                stack.extend(
                    (p, False)
                    for p in parents
                    if p not in nodes and p not in below and p in cache.events
                )
                continue
            found: set[str] = set()
            for p in parents:
                if p in nodes:
                    found.add(p)
                elif p in below:
                    found |= below[p]
            below[event_id] = frozenset(found)
    return {n: set(below[n]) for n in nodes}


def _power_order(
    version: RoomVersion, full: set[str], cache: _EventCache
) -> tuple[set[str], list[str]]:
    """X (power events plus their auth ancestors within ``full``) in reverse
    topological power order: ``(-sender power, origin_server_ts, event_id)``."""
    power = {e for e in full if _is_power_event(cache.events[e])}
    power_set = power | (cache.auth_closure(power, include_start=False) & full)
    order = lexicographical_topological_sort(
        _power_sort_graph(power_set, cache),
        key=lambda e: (
            -_sender_power(version, cache, cache.events[e]),
            cache.events[e].origin_server_ts,
        ),
    )
    return power_set, order


def _iterative_auth_checks(
    version: RoomVersion,
    order: Iterable[str],
    base: Mapping[StateKey, str],
    cache: _EventCache,
) -> dict[StateKey, str]:
    resolved = dict(base)
    for event_id in order:
        event = cache.events[event_id]
        if event.rejected:
            continue  # Synapse's (documented) deviation; never happens for valid input
        auth_state = cache.auth_state_of(event)
        for key in auth_types_for_event(
            version, event.type, event.sender, event.state_key, event.content
        ):
            current = cache.events.get(resolved.get(key, ""))
            if current is not None and not current.rejected:
                auth_state[key] = current
        try:
            check_auth_rules(version, event, auth_state)
        except AuthError:
            continue
        resolved[event.state_tuple] = event_id
    return resolved


def _mainline_order(
    events: Iterable[str], power_levels_id: str | None, cache: _EventCache
) -> list[str]:
    # Depth 1 is the oldest PL on the mainline, n the resolved one; 0 means
    # "not on the mainline" (position infinity), which sorts first.
    mainline: list[str] = []
    current = cache.events.get(power_levels_id or "")
    while current is not None:
        mainline.append(current.event_id)
        current = cache.power_levels_parent(current)
    depth = {event_id: i for i, event_id in enumerate(reversed(mainline), start=1)}

    def mainline_depth(event: Event) -> int:
        walked: list[str] = []
        found = 0
        current: Event | None = event
        while current is not None:
            if current.event_id in depth:
                found = depth[current.event_id]
                break
            walked.append(current.event_id)
            current = cache.power_levels_parent(current)
        for event_id in walked:  # memoise the whole walk
            depth[event_id] = found
        return found

    def sort_key(event_id: str) -> tuple[int, int, str]:
        event = cache.events[event_id]
        return (mainline_depth(event), event.origin_server_ts, event_id)

    keyed = [(sort_key(e), e) for e in events]
    return [e for _, e in sorted(keyed)]


async def resolve_state(
    room_version: RoomVersion | str,
    state_sets: Sequence[StateMap],
    fetch_events: FetchEvents,
) -> dict[StateKey, str]:
    """Resolve state maps with the room version's algorithm."""
    version = get_room_version(room_version)
    if version.state_res is StateResAlgorithm.V1:
        return await resolve_state_v1(version, state_sets, fetch_events)
    return await resolve_state_v2(version, state_sets, fetch_events)


def _conflicted_subgraph(conflicted: set[str], cache: _EventCache) -> set[str]:
    """rooms/v12: every event on an auth_events path between two conflicted events."""
    reachable = cache.auth_closure(conflicted, include_start=True)
    reaches: dict[str, bool] = {}
    for root in reachable:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            event_id, expanded = stack.pop()
            if event_id in reaches:
                continue
            parents = [p for p in cache.events[event_id].auth_event_ids if p in cache.events]
            if not expanded:
                stack.append((event_id, True))
                stack.extend((p, False) for p in parents if p not in reaches)
                continue
            reaches[event_id] = event_id in conflicted or any(reaches.get(p) for p in parents)
    return {e for e in reachable if reaches.get(e)}


async def resolve_state_v2(
    room_version: RoomVersion | str,
    state_sets: Sequence[StateMap],
    fetch_events: FetchEvents,
) -> dict[StateKey, str]:
    """Resolve state maps ``(type, state_key) -> event_id`` into one."""
    version = get_room_version(room_version)
    unconflicted, conflicted = _separate(state_sets)
    if not conflicted:
        return unconflicted

    cache = _EventCache(fetch_events)
    await cache.load_auth_closure({e for s in state_sets for e in s.values()})

    # Auth difference. Each chain also holds the set's own state events (as
    # Synapse does), so unconflicted events never enter the full conflicted set.
    chains = [cache.auth_closure(set(s.values()), include_start=True) for s in state_sets]
    auth_difference = set().union(*chains) - set.intersection(*chains)
    full = (conflicted | auth_difference) - set(unconflicted.values())
    v2_1 = version.state_res is StateResAlgorithm.V2_1
    if v2_1:  # rooms/v12: the full conflicted set includes the conflicted subgraph
        full |= _conflicted_subgraph(conflicted, cache) - set(unconflicted.values())
        await cache.load_create(version, [e for s in state_sets for e in s.values()])
    # Unavailable events drop out; so do non-state events (only a malformed
    # auth_events list could bring one in).
    full = {e for e in full if e in cache.events and cache.events[e].is_state}

    # Steps 1-2: power events and their auth ancestors in the full conflicted set
    # (v12: checked from an empty state map, not the unconflicted one).
    power_set, order = _power_order(version, full, cache)
    resolved = _iterative_auth_checks(version, order, {} if v2_1 else unconflicted, cache)

    # Steps 3-4: everything else, in mainline order of the resolved power levels.
    others = _mainline_order(full - power_set, resolved.get(POWER_LEVELS_KEY), cache)
    resolved = _iterative_auth_checks(version, others, resolved, cache)

    # Step 5: the unconflicted state always wins.
    resolved.update(unconflicted)
    return resolved


def _sha1_hex(event_id: str) -> str:
    return hashlib.sha1(event_id.encode()).hexdigest()


def _allowed_in(
    version: RoomVersion, event: Event, resolved: Mapping[StateKey, str], cache: _EventCache
) -> bool:
    auth_state: dict[StateKey, Event] = {}
    for key in auth_types_for_event(
        version, event.type, event.sender, event.state_key, event.content
    ):
        current = cache.events.get(resolved.get(key, ""))
        if current is not None:
            auth_state[key] = current
    try:
        check_auth_rules(version, event, auth_state)
    except AuthError:
        return False
    return True


async def resolve_state_v1(
    room_version: RoomVersion | str,
    state_sets: Sequence[StateMap],
    fetch_events: FetchEvents,
) -> dict[StateKey, str]:
    """Room version 1's resolution: power levels, then join rules, then members are
    each replayed (ascending depth, descending sha1(event_id)) while the auth rules
    allow them in the state so far; any other conflict goes to the deepest event with
    the lowest sha1(event_id) that passes auth (rooms/v1 state resolution)."""
    version = get_room_version(room_version)
    unconflicted, conflicted = _separate(state_sets)
    if not conflicted:
        return unconflicted
    cache = _EventCache(fetch_events)
    await cache.load(conflicted)
    by_key: dict[StateKey, list[Event]] = {}
    for event_id in conflicted:
        event = cache.events.get(event_id)
        if event is not None and event.is_state:
            by_key.setdefault(event.state_tuple, []).append(event)
    # The state the auth rules look at names unconflicted events too.
    await cache.load(unconflicted.values())
    resolved = dict(unconflicted)

    def replay(events: list[Event]) -> None:
        ordered = sorted(events, key=lambda e: (e.depth, _neg_sha1(e.event_id)))
        resolved[ordered[0].state_tuple] = ordered[0].event_id
        for event in ordered[1:]:
            if not _allowed_in(version, event, resolved, cache):
                break
            resolved[event.state_tuple] = event.event_id

    auth_order = [POWER_LEVELS_KEY, ("m.room.join_rules", "")]
    auth_order += sorted(k for k in by_key if k[0] == "m.room.member")
    for key in auth_order:
        if key in by_key:
            replay(by_key[key])
    for key in sorted(by_key):
        if key in auth_order:
            continue
        candidates = sorted(by_key[key], key=lambda e: (-e.depth, _sha1_hex(e.event_id)))
        for event in candidates:
            if _allowed_in(version, event, resolved, cache):
                resolved[key] = event.event_id
                break
    return resolved


def _neg_sha1(event_id: str) -> tuple[int, ...]:
    """Sorts descending by sha1(event_id) inside an ascending sort."""
    return tuple(-b for b in hashlib.sha1(event_id.encode()).digest())

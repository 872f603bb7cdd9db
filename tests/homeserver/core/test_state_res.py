"""State resolution v2: the DAG scenarios of Synapse's tests/state/test_v2.py,
re-expressed with our own harness."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import attrs
import pytest

from homeserver.core.auth_rules import auth_types_for_event
from homeserver.core.events import Event
from homeserver.core.state_res import (
    lexicographical_topological_sort,
    resolve_state,
    resolve_state_v2,
)

ALICE = "@alice:example.com"
BOB = "@bob:example.com"
CHARLIE = "@charlie:example.com"
EVELYN = "@evelyn:example.com"
ZARA = "@zara:example.com"
ROOM_ID = "!test:example.com"
JOIN = {"membership": "join"}
PL = "m.room.power_levels"
TOPIC = "m.room.topic"
MEMBER = "m.room.member"


@attrs.frozen
class Node:
    node_id: str
    sender: str
    type: str
    state_key: str | None
    content: dict[str, Any] = attrs.field(factory=dict)

    @property
    def event_id(self) -> str:
        return f"${self.node_id}:example.com"


def initial_events(version: str) -> list[Node]:
    create = {"room_version": version, **({"creator": ALICE} if int(version) <= 10 else {})}
    return [
        Node("CREATE", ALICE, "m.room.create", "", create),
        Node("IMA", ALICE, MEMBER, ALICE, JOIN),
        Node("IPOWER", ALICE, PL, "", {"users": {ALICE: 100}}),
        Node("IJR", ALICE, "m.room.join_rules", "", {"join_rule": "public"}),
        Node("IMB", BOB, MEMBER, BOB, JOIN),
        Node("IMC", CHARLIE, MEMBER, CHARLIE, JOIN),
        Node("IMZ", ZARA, MEMBER, ZARA, JOIN),
        Node("START", ZARA, "m.room.message", None),
        Node("END", ZARA, "m.room.message", None),
    ]


INITIAL_EDGES = ["START", "IMZ", "IMC", "IMB", "IJR", "IPOWER", "IMA", "CREATE"]


class Store:
    """The events of one DAG, plus a record of what resolution fetched."""

    def __init__(self) -> None:
        self.events: dict[str, Event] = {}
        self.fetched: list[list[str]] = []

    async def fetch(self, event_ids: Iterable[str]) -> dict[str, Event]:
        batch = list(event_ids)
        self.fetched.append(batch)
        return {e: self.events[e] for e in batch if e in self.events}


async def build_graph(version: str, nodes: list[Node], edges: list[list[str]]):
    """Create every node in topological order, each with auth events picked from
    the state before it; returns the store and the state after each node."""
    by_id = {n.node_id: n for n in [*initial_events(version), *nodes]}
    prevs: dict[str, set[str]] = {n: set() for n in by_id}
    for chain in [INITIAL_EDGES, *edges]:
        for child, parent in itertools.pairwise(chain):
            prevs[child].add(parent)
    store = Store()
    state_after: dict[str, dict[tuple[str, str], str]] = {}
    for ts, node_id in enumerate(lexicographical_topological_sort(prevs, key=lambda n: n)):
        node = by_id[node_id]
        parents = sorted(prevs[node_id])
        if not parents:
            before: dict[tuple[str, str], str] = {}
        elif len(parents) == 1:
            before = dict(state_after[parents[0]])
        else:
            before = await resolve_state_v2(version, [state_after[p] for p in parents], store.fetch)
        keys = auth_types_for_event(version, node.type, node.sender, node.state_key, node.content)
        pdu: dict[str, Any] = {
            "type": node.type,
            "sender": node.sender,
            "room_id": ROOM_ID,
            "content": node.content,
            "origin_server_ts": ts,
            "depth": ts,
            "prev_events": [by_id[p].event_id for p in parents],
            "auth_events": [before[k] for k in keys if k in before],
        }
        if node.state_key is not None:
            pdu["state_key"] = node.state_key
        store.events[node.event_id] = Event(node.event_id, pdu, version)
        after = dict(before)
        if node.state_key is not None:
            after[(node.type, node.state_key)] = node.event_id
        state_after[node_id] = after
    return store, state_after


async def check(version: str, nodes: list[Node], edges: list[list[str]], expected: list[str]):
    store, state_after = await build_graph(version, nodes, edges)
    expected_state = {}
    for node_id in expected:
        event = store.events[f"${node_id}:example.com"]
        expected_state[event.state_tuple] = event.event_id
    start, end = state_after["START"], state_after["END"]
    changed = {k: v for k, v in end.items() if k in expected_state or start.get(k) != v}
    assert changed == expected_state


VERSIONS = pytest.mark.parametrize("version", [str(n) for n in range(2, 12)])


@VERSIONS
async def test_ban_vs_pl(version):
    nodes = [
        Node("PA", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("MA", ALICE, MEMBER, ALICE, JOIN),
        Node("MB", ALICE, MEMBER, BOB, {"membership": "ban"}),
        Node("PB", BOB, PL, "", {"users": {ALICE: 100, BOB: 50}}),
    ]
    edges = [["END", "MB", "MA", "PA", "START"], ["END", "PB", "PA"]]
    await check(version, nodes, edges, ["PA", "MA", "MB"])


@VERSIONS
async def test_join_rule_evasion(version):
    nodes = [
        # Deliberately the wrong key, as in Synapse's test: no join_rule means invite.
        Node("JR", ALICE, "m.room.join_rules", "", {"join_rules": "private"}),
        Node("ME", EVELYN, MEMBER, EVELYN, JOIN),
    ]
    edges = [["END", "JR", "START"], ["END", "ME", "START"]]
    await check(version, nodes, edges, ["JR"])


@VERSIONS
async def test_offtopic_pl(version):
    nodes = [
        Node("PA", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("PB", BOB, PL, "", {"users": {ALICE: 100, BOB: 50, CHARLIE: 50}}),
        Node("PC", CHARLIE, PL, "", {"users": {ALICE: 100, BOB: 50, CHARLIE: 0}}),
    ]
    edges = [["END", "PC", "PB", "PA", "START"], ["END", "PA"]]
    await check(version, nodes, edges, ["PC"])


@VERSIONS
async def test_topic_basic(version):
    nodes = [
        Node("T1", ALICE, TOPIC, ""),
        Node("PA1", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("T2", ALICE, TOPIC, ""),
        Node("PA2", ALICE, PL, "", {"users": {ALICE: 100, BOB: 0}}),
        Node("PB", BOB, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("T3", BOB, TOPIC, ""),
    ]
    edges = [["END", "PA2", "T2", "PA1", "T1", "START"], ["END", "T3", "PB", "PA1"]]
    await check(version, nodes, edges, ["PA2", "T2"])


@VERSIONS
async def test_topic_reset(version):
    nodes = [
        Node("T1", ALICE, TOPIC, ""),
        Node("PA", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("T2", BOB, TOPIC, ""),
        Node("MB", ALICE, MEMBER, BOB, {"membership": "ban"}),
    ]
    edges = [["END", "MB", "T2", "PA", "T1", "START"], ["END", "T1"]]
    await check(version, nodes, edges, ["T1", "MB", "PA"])


@VERSIONS
async def test_topic(version):
    nodes = [
        Node("T1", ALICE, TOPIC, ""),
        Node("PA1", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("T2", ALICE, TOPIC, ""),
        Node("PA2", ALICE, PL, "", {"users": {ALICE: 100, BOB: 0}}),
        Node("PB", BOB, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("T3", BOB, TOPIC, ""),
        Node("MZ1", ZARA, "m.room.message", None),
        Node("T4", ALICE, TOPIC, ""),
    ]
    edges = [
        ["END", "T4", "MZ1", "PA2", "T2", "PA1", "T1", "START"],
        ["END", "MZ1", "T3", "PB", "PA1"],
    ]
    await check(version, nodes, edges, ["T4", "PA2"])


@VERSIONS
async def test_mainline_sort(version):
    nodes = [
        Node("T1", ALICE, TOPIC, ""),
        Node("PA1", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("T2", ALICE, TOPIC, ""),
        Node("PA2", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}, "events": {PL: 100}}),
        Node("PB", BOB, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("T3", BOB, TOPIC, ""),
        Node("T4", ALICE, TOPIC, ""),
    ]
    edges = [["END", "T3", "PA2", "T2", "PA1", "T1", "START"], ["END", "T4", "PB", "PA1"]]
    # T3 wins although T4 is newer: T4 is based on older power levels.
    await check(version, nodes, edges, ["T3", "PA2"])


def test_lexicographical_sort():
    graph = {"l": {"o"}, "m": {"n", "o"}, "n": {"o"}, "o": set(), "p": {"o"}}
    assert lexicographical_topological_sort(graph, key=lambda x: x) == ["o", "l", "n", "m", "p"]


def test_lexicographical_sort_key_and_implicit_nodes():
    # "z" is only mentioned as a predecessor; the key reverses the name order.
    graph = {"a": ["z"], "b": ["z"], "c": []}
    assert lexicographical_topological_sort(graph, key=lambda x: -ord(x)) == ["z", "c", "b", "a"]
    with pytest.raises(ValueError):
        lexicographical_topological_sort({"a": ["b"], "b": ["a"]}, key=lambda x: x)


# --- behaviour beyond the scenarios -----------------------------------------------------------


async def test_no_conflict_needs_no_fetch():
    store, state_after = await build_graph("10", [], [])
    start = state_after["START"]
    assert await resolve_state_v2("10", [start, dict(start)], store.fetch) == start
    assert store.fetched == []
    assert await resolve_state_v2("10", [], store.fetch) == {}


async def test_fetches_are_batched_and_memoised():
    nodes = [
        Node("PA", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("MB", ALICE, MEMBER, BOB, {"membership": "ban"}),
        Node("PB", BOB, PL, "", {"users": {ALICE: 100, BOB: 50}}),
    ]
    edges = [["END", "MB", "PA", "START"], ["END", "PB", "PA"]]
    store, state_after = await build_graph("10", nodes, edges)
    store.fetched.clear()
    sets = [state_after["MB"], state_after["PB"]]
    result = await resolve_state_v2("10", sets, store.fetch)
    assert result[(PL, "")] == "$PA:example.com"
    assert result[(MEMBER, BOB)] == "$MB:example.com"
    fetched = [e for batch in store.fetched for e in batch]
    assert len(fetched) == len(set(fetched))  # nothing requested twice
    # One batch per auth-chain generation, not one request per event.
    assert len(store.fetched) < len(fetched)


async def test_unknown_events_are_left_out():
    nodes = [Node("T1", ALICE, TOPIC, ""), Node("T2", ALICE, TOPIC, "")]
    edges = [["END", "T1", "START"], ["END", "T2", "START"]]
    store, state_after = await build_graph("10", nodes, edges)
    del store.events["$T2:example.com"]
    sets = [state_after["T1"], state_after["T2"]]
    result = await resolve_state_v2("10", sets, store.fetch)
    assert result[(TOPIC, "")] == "$T1:example.com"


async def test_unconflicted_state_wins_and_rejected_events_are_skipped():
    nodes = [Node("T1", ALICE, TOPIC, ""), Node("T2", ALICE, TOPIC, "")]
    edges = [["END", "T1", "START"], ["END", "T2", "START"]]
    store, state_after = await build_graph("10", nodes, edges)
    t2 = store.events["$T2:example.com"]
    store.events[t2.event_id] = attrs.evolve(t2, rejected=True)
    sets = [state_after["T1"], state_after["T2"]]
    result = await resolve_state_v2("10", sets, store.fetch)
    assert result[(TOPIC, "")] == "$T1:example.com"
    # Every unconflicted key comes back unchanged.
    for key, value in state_after["START"].items():
        assert result[key] == value


async def test_iterative_checks_use_the_resolved_state():
    # Bob has no power under IPOWER, so his topics only pass with PA in the
    # (unconflicted) state, not against their own auth events.
    nodes = [
        Node("PA", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("T1", BOB, TOPIC, ""),
        Node("T2", BOB, TOPIC, ""),
    ]
    edges = [["PA", "START"], ["T1", "START"], ["T2", "START"]]
    store, state_after = await build_graph("10", nodes, edges)

    def state(*node_ids: str) -> dict[tuple[str, str], str]:
        result = dict(state_after["START"])
        for node_id in node_ids:
            event = store.events[f"${node_id}:example.com"]
            result[event.state_tuple] = event.event_id
        return result

    powerless = await resolve_state_v2("10", [state("T1"), state("T2")], store.fetch)
    assert (TOPIC, "") not in powerless
    powered = await resolve_state_v2("10", [state("PA", "T1"), state("PA", "T2")], store.fetch)
    assert powered[(TOPIC, "")] == "$T2:example.com"
    assert powered[(PL, "")] == "$PA:example.com"


def _ids(*node_ids: str) -> list[str]:
    return [f"${n}:example.com" for n in node_ids]


async def test_power_order_and_mainline_order_internals():
    # The intermediate orders those scenarios expect.
    from homeserver.core.room_versions import V10
    from homeserver.core.state_res import _EventCache, _mainline_order, _power_order

    nodes = [
        Node("PA", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("MA", ALICE, MEMBER, ALICE, JOIN),
        Node("MB", ALICE, MEMBER, BOB, {"membership": "ban"}),
        Node("PB", BOB, PL, "", {"users": {ALICE: 100, BOB: 50}}),
    ]
    store, _ = await build_graph(
        "10", nodes, [["END", "MB", "MA", "PA", "START"], ["END", "PB", "PA"]]
    )
    cache = _EventCache(store.fetch)
    await cache.load_auth_closure(store.events)
    full = set(_ids("IMA", "PA", "MA", "IMB", "MB", "PB"))
    power_set, order = _power_order(V10, full, cache)
    assert power_set == full
    assert order == _ids("IMA", "PA", "MA", "IMB", "MB", "PB")

    nodes = [
        Node("T1", ALICE, TOPIC, ""),
        Node("PA1", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("T2", ALICE, TOPIC, ""),
        Node("PA2", ALICE, PL, "", {"users": {ALICE: 100, BOB: 50}, "events": {PL: 100}}),
        Node("PB", BOB, PL, "", {"users": {ALICE: 100, BOB: 50}}),
        Node("T3", BOB, TOPIC, ""),
        Node("T4", ALICE, TOPIC, ""),
    ]
    edges = [["END", "T3", "PA2", "T2", "PA1", "T1", "START"], ["END", "T4", "PB", "PA1"]]
    store, _ = await build_graph("10", nodes, edges)
    cache = _EventCache(store.fetch)
    await cache.load_auth_closure(store.events)
    _, order = _power_order(V10, set(_ids("PA2", "PB", "T3", "T4")), cache)
    assert order == _ids("PA2", "PB")
    mainline = _mainline_order(_ids("T3", "T4"), "$PA2:example.com", cache)
    assert mainline == _ids("T4", "T3")
    # With no resolved power levels every position is infinity: plain ts order.
    assert _mainline_order(_ids("T4", "T3"), None, cache) == _ids("T3", "T4")


# --- room version 1 and 12 -----------------------------------------------------


def _ev(
    version: str,
    event_id: str,
    etype: str,
    sender: str,
    state_key,
    content,
    depth,
    auth=(),
    room=ROOM_ID,
):
    pdu: dict[str, Any] = {
        "type": etype,
        "sender": sender,
        "room_id": room,
        "content": content,
        "origin_server_ts": depth,
        "depth": depth,
        "prev_events": [],
        "auth_events": list(auth),
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    return Event(event_id, pdu, version)


async def test_v1_other_conflicts_pick_the_deepest_allowed_event():
    store = Store()
    base = [
        _ev("1", "$c:e", "m.room.create", ALICE, "", {"creator": ALICE}, 1),
        _ev("1", "$m:e", MEMBER, ALICE, ALICE, JOIN, 2),
        _ev("1", "$jb:e", MEMBER, BOB, BOB, JOIN, 3),
        _ev("1", "$p:e", PL, ALICE, "", {"users": {ALICE: 100}, "events": {TOPIC: 50}}, 3),
    ]
    deep_bob = _ev("1", "$t2:e", TOPIC, BOB, "", {"topic": "bob"}, 9)  # BOB lacks the level
    alice = _ev("1", "$t1:e", TOPIC, ALICE, "", {"topic": "alice"}, 5)
    for e in [*base, deep_bob, alice]:
        store.events[e.event_id] = e
    common = {e.state_tuple: e.event_id for e in base}
    sets = [{**common, (TOPIC, ""): "$t1:e"}, {**common, (TOPIC, ""): "$t2:e"}]
    assert (await resolve_state("1", sets, store.fetch))[(TOPIC, "")] == "$t1:e"
    # With the level, the deeper event wins (v2 would order by mainline then timestamp).
    store.events["$t2:e"] = _ev("1", "$t2:e", TOPIC, ALICE, "", {"topic": "later"}, 9)
    assert (await resolve_state("1", sets, store.fetch))[(TOPIC, "")] == "$t2:e"


async def test_v1_power_levels_replayed_by_depth_until_one_fails():
    store = Store()
    base = [
        _ev("1", "$c:e", "m.room.create", ALICE, "", {"creator": ALICE}, 1),
        _ev("1", "$m:e", MEMBER, ALICE, ALICE, JOIN, 2),
        _ev("1", "$jb:e", MEMBER, BOB, BOB, JOIN, 3),
    ]
    # PA (shallow) demotes Alice; PB (deeper, by Alice) is then not allowed, so PA stays.
    pa = _ev("1", "$pa:e", PL, ALICE, "", {"users": {ALICE: 10, BOB: 100}}, 4)
    pb = _ev("1", "$pb:e", PL, ALICE, "", {"users": {ALICE: 100, BOB: 0}}, 5)
    for e in [*base, pa, pb]:
        store.events[e.event_id] = e
    common = {e.state_tuple: e.event_id for e in base}
    sets = [{**common, (PL, ""): "$pa:e"}, {**common, (PL, ""): "$pb:e"}]
    assert (await resolve_state("1", sets, store.fetch))[(PL, "")] == "$pa:e"


async def test_v12_resolution_finds_the_create_event_by_room_id():
    store = Store()
    room = "!CREATE12"
    create = Event(
        "$CREATE12",
        {
            "type": "m.room.create",
            "sender": ALICE,
            "state_key": "",
            "content": {"room_version": "12"},
            "depth": 1,
            "origin_server_ts": 1,
            "prev_events": [],
            "auth_events": [],
        },
        "12",
    )
    join = _ev("12", "$ja", MEMBER, ALICE, ALICE, JOIN, 2, room=room)
    pl = _ev(
        "12", "$pl", PL, ALICE, "", {"users": {BOB: 50}, "events": {TOPIC: 50}}, 3, ["$ja"], room
    )
    jb = _ev("12", "$jb", MEMBER, BOB, BOB, JOIN, 4, ["$pl"], room)
    # Two conflicting PL changes by the creator (who is in no users map): both pass auth
    # only because the create event, cited by no auth_events, makes Alice a creator.
    p1 = _ev("12", "$p1", PL, ALICE, "", {"users": {BOB: 0}}, 5, ["$ja", "$pl"], room)
    p2 = _ev("12", "$p2", PL, ALICE, "", {"users": {BOB: 100}}, 6, ["$ja", "$pl"], room)
    for e in [create, join, pl, jb, p1, p2]:
        store.events[e.event_id] = e
    common = {e.state_tuple: e.event_id for e in [create, join, jb]}
    sets = [{**common, (PL, ""): "$p1"}, {**common, (PL, ""): "$p2"}]
    resolved = await resolve_state("12", sets, store.fetch)
    assert resolved[(PL, "")] == "$p2"  # both allowed; the later one by timestamp wins

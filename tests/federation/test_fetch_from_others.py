"""What an origin lacks, other servers in the room supply (spec, server-server API: "Checks
performed on receipt of a PDU" — missing auth and prev events may be requested "from the
origin or from other servers in the room").

The world of test_hostile_peer (alice on the victim, mallory@evil.test joined), plus
eve@evil2.test joined. evil.test answers nothing but keys and /send; evil2.test serves
what the victim asks it for. Each test sends a PDU from evil.test that needs an event the
victim never saw: it is accepted because evil2.test answers.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.services.clock import now_ms
from tests.federation.peer import EVIL2, EvilPeer
from tests.federation.test_hostile_peer import (  # noqa: F401  (fixtures)
    V1,
    V2,
    World,
    assert_pdu_error,
    peer,
    victim,
    world,
)
from tests.helpers import q


async def _join_eve(w: World) -> str:
    """eve@evil2.test joins through make_join/send_join signed by evil2.test."""
    eve = w.peer.user("eve", EVIL2)
    path = f"{V1}/make_join/{q(w.room)}/{q(eve)}?ver=10"
    made = await w.fed("GET", path, origin=EVIL2)
    assert made.status == 200, made.text
    template = made.json["event"]
    template["origin"] = EVIL2
    template["origin_server_ts"] = now_ms()
    join = w.peer.sign_pdu(template, signer=EVIL2)
    join_id = w.peer.event_id(join)
    path = f"{V2}/send_join/{q(w.room)}/{q(join_id)}"
    sent = await w.fed("PUT", path, join, origin=EVIL2)
    assert sent.status == 200, sent.text
    w.evil_room.advance(join, join_id)
    assert (await w.alice.state(w.room, "m.room.member", eve))["membership"] == "join"
    return eve


def _serve_only_as(evil: EvilPeer, host: str, prefix: str, body: dict[str, Any]) -> None:
    """``prefix`` answered with ``body`` when asked of ``host``; 404 when asked of the other name."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Host") != host:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "not me"}, status=404)
        return web.json_response(body)

    evil.handlers[prefix] = handler


def _asked(evil: EvilPeer, host: str, prefix: str) -> bool:
    return any(h == host and p.startswith(prefix) for h, _, p in evil.requests)


async def test_auth_events_fetched_from_another_server(world: World) -> None:  # noqa: F811
    w = world
    await _join_eve(w)
    # mallory changes her display name; the victim never hears of it.
    rename = w.peer.build_pdu(
        w.evil_room, "m.room.member", {"membership": "join", "displayname": "M"}, state_key=w.mallory,
    )
    rename_id = w.peer.event_id(rename)
    # Her next message cites the rename as an auth event (its prev is what the victim has).
    msg = w.message("authorised by an event only evil2 will show", auth_events=[
        w.evil_room.state[("m.room.create", "")], w.evil_room.state[("m.room.power_levels", "")], rename_id,
    ])
    msg_id = w.peer.event_id(msg)
    chain = [rename]
    _serve_only_as(w.peer, EVIL2, f"{V1}/event_auth/", {"auth_chain": chain})
    r = await w.send_txn([msg])
    assert r.status == 200, r.text
    assert r.json["pdus"] == {msg_id: {}}, r.json
    assert _asked(w.peer, w.peer.server_name, f"{V1}/event_auth/")  # the origin first
    assert _asked(w.peer, EVIL2, f"{V1}/event_auth/")
    assert msg_id in [e["event_id"] for e in await w.timeline()]


async def test_missing_prev_events_fetched_from_another_server(world: World) -> None:  # noqa: F811
    w = world
    await _join_eve(w)
    gap = w.message("said while the victim was not listening")
    gap_id = w.peer.event_id(gap)
    w.evil_room.advance(gap, gap_id)
    after = w.message("and then this")
    after_id = w.peer.event_id(after)
    _serve_only_as(w.peer, EVIL2, f"{V1}/get_missing_events/", {"events": [gap]})
    r = await w.send_txn([after])
    assert r.status == 200, r.text
    assert r.json["pdus"] == {after_id: {}}, r.json
    assert _asked(w.peer, w.peer.server_name, f"{V1}/get_missing_events/")
    assert _asked(w.peer, EVIL2, f"{V1}/get_missing_events/")
    ids = [e["event_id"] for e in await w.timeline()]
    assert gap_id in ids and after_id in ids
    # Both are timeline events, in order: the gap was filled, not papered over with /state.
    assert ids.index(after_id) < ids.index(gap_id)  # /messages backwards: newest first
    assert not _asked(w.peer, EVIL2, f"{V1}/state/")


async def test_nobody_has_the_auth_events(world: World) -> None:  # noqa: F811
    """Neither server can help: the PDU is refused and both were asked."""
    w = world
    await _join_eve(w)
    before = await w.snapshot()
    rename = w.peer.build_pdu(
        w.evil_room, "m.room.member", {"membership": "join", "displayname": "M"}, state_key=w.mallory,
    )
    msg = w.message("nobody vouches for me", auth_events=[
        w.evil_room.state[("m.room.create", "")], w.evil_room.state[("m.room.power_levels", "")],
        w.peer.event_id(rename),
    ])
    r = await w.send_txn([msg])
    assert_pdu_error(r, w.peer.event_id(msg))
    assert "evil2.test" in r.json["pdus"][w.peer.event_id(msg)]["error"]
    assert await w.snapshot() == before



async def test_a_long_gap_is_filled_in_rounds(world: World) -> None:  # noqa: F811
    """A peer catching up sends only its newest event; the 45 before it come from
    /get_missing_events in rounds (this peer answers 20 at most, as Synapse does), so the
    victim's timeline has all of them and no gap (no /state was needed)."""
    w = world
    chain: dict[str, dict[str, Any]] = {}
    for n in range(45):
        pdu = w.message(f"gap {n}")
        event_id = w.peer.event_id(pdu)
        chain[event_id] = pdu
        w.evil_room.advance(pdu, event_id)
    newest = w.message("caught up")
    newest_id = w.peer.event_id(newest)
    chain[newest_id] = newest

    async def missing(request: web.Request) -> web.StreamResponse:
        # Walk back from latest_events through prev_events, stopping at earliest_events.
        body = await request.json()
        stop, found = set(body["earliest_events"]), []
        frontier = [p for e in body["latest_events"] for p in chain[e]["prev_events"]]
        while frontier and len(found) < min(body["limit"], 20):
            event_id = frontier.pop(0)
            if event_id in stop or event_id not in chain or chain[event_id] in found:
                continue
            found.append(chain[event_id])
            frontier += chain[event_id]["prev_events"]
        return web.json_response({"events": found})

    w.peer.handlers[f"{V1}/get_missing_events/"] = missing
    r = await w.send_txn([newest])
    assert r.json["pdus"] == {newest_id: {}}, r.json
    rounds = [p for _, _, p in w.peer.requests if p.startswith(f"{V1}/get_missing_events/")]
    assert len(rounds) == 3
    assert not any(p.startswith(f"{V1}/state") for _, _, p in w.peer.requests)
    bodies = [e["content"].get("body") for e in reversed(await w.timeline()) if e["type"] == "m.room.message"]
    assert bodies[-46:] == [f"gap {n}" for n in range(45)] + ["caught up"]

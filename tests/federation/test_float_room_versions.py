"""Floats in events (spec appendix "Canonical JSON" and rooms/v6): rooms of versions 1-5
predate strict canonical JSON, so their events may hold floats and servers "SHOULD be
capable of handling" them; from version 6 on such an event is invalid. Decided: a
transaction is parsed keeping numbers as the peer wrote them, and each PDU is judged by
its room's version — accepted (hash and signatures checked over its floats) in a v5 room,
refused alone in a v10 room while the rest of the transaction goes through."""

from __future__ import annotations

from homeserver.core.events import hash_and_sign_pdu
from homeserver.services.clock import now_ms
from tests.federation.peer import EvilPeer, EvilRoom
from tests.federation.test_hostile_peer import (  # noqa: F401  (fixtures)
    V1,
    V2,
    VICTIM,
    World,
    peer,
    raw,
    victim,
    world,
)
from tests.helpers import Matrix, q


async def _join_v5_room(hs: Matrix, evil: EvilPeer) -> tuple[str, EvilRoom, Matrix]:
    alice = await hs.register("alice5")
    room = await alice.create_room(preset="public_chat", room_version="5")
    mallory = evil.user("mallory")
    path = f"{V1}/make_join/{q(room)}/{q(mallory)}?ver=5"
    made = await raw(hs, "GET", path, headers={"Authorization": evil.auth("GET", path, VICTIM)})
    assert made.status == 200, made.text
    assert made.json["room_version"] == "5"
    template = made.json["event"]
    template["origin"] = evil.server_name
    template["origin_server_ts"] = now_ms()
    join = evil.sign_pdu(template, room_version="5")
    join_id = evil.event_id(join, "5")
    path = f"{V2}/send_join/{q(room)}/{q(join_id)}"
    sent = await raw(hs, "PUT", path, join, {"Authorization": evil.auth("PUT", path, VICTIM, join)})
    assert sent.status == 200, sent.text
    state = {(e["type"], e["state_key"]): evil.event_id(e, "5") for e in sent.json["state"]}
    state[("m.room.member", mallory)] = join_id
    return room, EvilRoom(room, state, [join_id], join["depth"]), alice


async def test_a_float_in_a_version_5_room_is_accepted(victim: Matrix, peer: EvilPeer) -> None:  # noqa: F811
    room, evil_room, alice = await _join_v5_room(victim, peer)
    pdu = peer.build_pdu(evil_room, "m.room.message", {"msgtype": "m.text", "body": "old", "weight": 1.5})
    # build_pdu signs as version 10; sign again as version 5 (floats allowed there).
    pdu = peer.sign_pdu(pdu, room_version="5")
    event_id = peer.event_id(pdu, "5")
    path = f"{V1}/send/float-{now_ms()}"
    body = {"origin": peer.server_name, "origin_server_ts": now_ms(), "pdus": [pdu]}
    r = await raw(victim, "PUT", path, body, {"Authorization": peer.auth("PUT", path, VICTIM, body)})
    assert r.status == 200, r.text
    assert r.json["pdus"] == {event_id: {}}
    chunk = (await alice.messages(room, limit=10))["chunk"]
    got = [e for e in chunk if e["event_id"] == event_id]
    assert got and got[0]["content"]["weight"] == 1.5


async def test_a_float_in_a_version_10_room_is_refused_alone(world: World) -> None:  # noqa: F811
    w = world
    before = await w.snapshot()
    bad = w.peer.build_pdu(w.evil_room, "m.room.message", {"msgtype": "m.text", "body": "x", "weight": 1.5})
    # Signed as a version-5 event would be (version 10 forbids the float, so cannot sign it).
    bad = hash_and_sign_pdu("5", {k: v for k, v in bad.items() if k not in ("hashes", "signatures")},
                            w.peer.server_name, w.peer.key)
    good = w.message("and this one is fine")
    good_id = w.peer.event_id(good)
    r = await w.send_txn([bad, good])
    assert r.status == 200, r.text  # not a 400 for the whole transaction
    assert r.json["pdus"].get(good_id) == {}, r.json
    (bad_id,) = set(r.json["pdus"]) - {good_id}  # its id is over the redacted form: no float
    assert "canonical JSON" in r.json["pdus"][bad_id]["error"]
    ids = [e["event_id"] for e in await w.timeline()]
    assert good_id in ids and len(ids) == len(before[1]) + 1

"""Checks on what a peer may ask for (server-server API): /state and /state_ids only at
events that have state (not rejected ones), /backfill and /event_auth only for events of
the room named in the path. Uses the scripted peer of test_hostile_peer.py."""

from __future__ import annotations

from tests.federation.test_hostile_peer import (  # noqa: F401  (fixtures)
    V1,
    World,
    assert_pdu_error,
    invite_pdu,
    peer,
    put_invite,
    victim,
    world,
)
from tests.helpers import assert_error, q


async def test_state_at_a_rejected_event_is_not_found(world: World) -> None:  # noqa: F811
    w = world
    pl = await w.alice.state(w.room, "m.room.power_levels")
    grab = w.peer.build_pdu(
        w.evil_room, "m.room.power_levels",
        {**pl, "users": {**pl.get("users", {}), w.mallory: 100}}, state_key="",
    )
    grab_id = w.peer.event_id(grab)
    assert_pdu_error(await w.send_txn([grab]), grab_id)
    for endpoint in ("state", "state_ids"):
        r = await w.fed("GET", f"{V1}/{endpoint}/{q(w.room)}?event_id={q(grab_id)}")
        assert r.status == 404, r.text
        assert_error(r.json, "M_NOT_FOUND")
    # A real event of the room still answers.
    ok_id = await w.mallory_says("hello")
    r = await w.fed("GET", f"{V1}/state_ids/{q(w.room)}?event_id={q(ok_id)}")
    assert r.status == 200 and r.json["pdu_ids"], r.text


async def test_backfill_and_event_auth_stay_inside_the_room(world: World) -> None:  # noqa: F811
    w = world
    # A private room the peer is not in, with a secret message.
    secret = await w.alice.create_room(preset="private_chat", name="Secret", room_version="10")
    secret_id = await w.alice.send(secret, "do not leak")
    # Asking about it through the room the peer is in: nothing of the secret room comes back.
    r = await w.fed("GET", f"{V1}/backfill/{q(w.room)}?v={q(secret_id)}&limit=10")
    assert r.status == 200, r.text
    assert all(p["room_id"] == w.room for p in r.json["pdus"]), r.json
    assert "do not leak" not in r.text
    r = await w.fed("GET", f"{V1}/event_auth/{q(w.room)}/{q(secret_id)}")
    assert r.status == 404, r.text
    assert_error(r.json, "M_NOT_FOUND")
    # The room's own events backfill as before.
    own = await w.mallory_says("mine")
    r = await w.fed("GET", f"{V1}/backfill/{q(w.room)}?v={q(own)}&limit=3")
    assert r.status == 200 and r.json["pdus"], r.text


async def test_server_acl_covers_invites(world: World) -> None:  # noqa: F811
    w = world
    bob = await w.victim.register("bob")
    await w.alice.put_state(w.room, "m.room.server_acl", {"allow": ["*"], "deny": [w.peer.server_name]})
    r = await put_invite(w, invite_pdu(w, bob.user_id, w.room))
    assert r.status == 403, r.text
    assert_error(r.json, "M_FORBIDDEN")

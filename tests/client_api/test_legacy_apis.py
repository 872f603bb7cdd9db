"""The deprecated /events, /events/{eventId}, /initialSync and /rooms/{roomId}/initialSync,
and peeking into world-readable rooms through /events?room_id=."""

from __future__ import annotations

import asyncio

from tests.helpers import Matrix, assert_error, bodies, q


async def test_events_stream_from_a_token_and_waiting(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    now = await bob.get("/events", params={"timeout": 0})
    assert now["chunk"] == [] and now["start"] == now["end"]
    await alice.send(room, "first")
    got = await bob.get("/events", params={"from": now["end"], "timeout": 0})
    assert bodies(got["chunk"]) == ["first"] and got["chunk"][0]["room_id"] == room
    # A long poll returns when the next message arrives.
    waiting = asyncio.create_task(bob.get("/events", params={"from": got["end"], "timeout": 10000}))
    await asyncio.sleep(0.2)
    await alice.send(room, "second")
    assert bodies((await asyncio.wait_for(waiting, 10))["chunk"]) == ["second"]
    assert_error(await bob.get("/events", params={"from": "garbage"}, expect=400), "M_INVALID_PARAM")


async def test_peeking_a_world_readable_room_through_events(hs: Matrix) -> None:
    alice, eve = await hs.users("alice", "eve")
    room = await alice.create_room(preset="public_chat")
    await alice.put_state(room, "m.room.history_visibility", {"history_visibility": "world_readable"})
    start = (await eve.get("/events", params={"timeout": 0}))["end"]
    await alice.send(room, "readable by all")
    got = await eve.get("/events", params={"from": start, "room_id": room, "timeout": 0})
    assert bodies(got["chunk"]) == ["readable by all"]
    private = await alice.create_room(preset="private_chat")
    err = await eve.get("/events", params={"from": start, "room_id": private, "timeout": 0}, expect=403)
    assert_error(err, "M_FORBIDDEN")


async def test_single_event_and_initial_syncs(hs: Matrix) -> None:
    alice, bob, eve = await hs.users("alice", "bob", "eve")
    room = await alice.create_room(preset="private_chat", name="Old style")
    event_id = await alice.send(room, "hello")
    assert (await alice.get(f"/events/{q(event_id)}"))["content"]["body"] == "hello"
    assert_error(await eve.get(f"/events/{q(event_id)}", expect=403), "M_FORBIDDEN")
    assert_error(await alice.get(f"/events/{q('$nope')}", expect=404), "M_NOT_FOUND")

    one = await alice.get(f"/rooms/{q(room)}/initialSync")
    assert one["room_id"] == room and one["membership"] == "join"
    assert bodies(one["messages"]["chunk"]) == ["hello"]
    assert one["messages"]["chunk"][-1]["event_id"] == event_id  # oldest first
    assert any(e["type"] == "m.room.name" for e in one["state"])
    assert_error(await eve.get(f"/rooms/{q(room)}/initialSync", expect=403), "M_FORBIDDEN")

    await alice.invite(room, bob)
    left = await alice.create_room()
    await alice.send(left, "gone")
    await alice.leave(left)
    everything = await alice.get("/initialSync", params={"limit": 5})
    assert [r["room_id"] for r in everything["rooms"]] == [room] and everything["end"].startswith("s")
    assert room in [r["room_id"] for r in (await bob.get("/initialSync"))["rooms"] if r["membership"] == "invite"]
    archived = await alice.get("/initialSync", params={"archived": "true"})
    assert {r["room_id"] for r in archived["rooms"]} == {room, left}


async def test_thirdparty_without_bridges(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    assert await alice.get("/thirdparty/protocols") == {}
    for path in ("/thirdparty/protocol/irc", "/thirdparty/location/irc", "/thirdparty/user/irc"):
        assert_error(await alice.get(path, expect=404), "M_NOT_FOUND")
    assert await alice.get("/thirdparty/location", params={"alias": "#a:hs.test"}) == []
    assert await alice.get("/thirdparty/user", params={"userid": "@a:hs.test"}) == []
    await hs.call("GET", "/thirdparty/protocols", expect=401)

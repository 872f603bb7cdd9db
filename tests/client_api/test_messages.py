"""Sending events (with transaction ids), /event, and /messages pagination."""

from __future__ import annotations

from tests.helpers import Matrix, User, assert_error, bodies, q, timeline


async def chat(hs: Matrix) -> tuple[User, User, str]:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    return alice, bob, room


async def test_send_and_read_back_with_event(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    event_id = await alice.send(room, {"msgtype": "m.text", "body": "hello", "extra": [1, "two"]})
    event = await bob.get(f"/rooms/{q(room)}/event/{q(event_id)}")
    assert event["event_id"] == event_id
    assert event["room_id"] == room and event["sender"] == alice.user_id
    assert event["type"] == "m.room.message"
    assert event["content"] == {"msgtype": "m.text", "body": "hello", "extra": [1, "two"]}
    assert isinstance(event["origin_server_ts"], int) and event["unsigned"]["age"] >= 0
    assert "state_key" not in event
    for federation_key in ("auth_events", "prev_events", "hashes", "signatures", "depth", "origin"):
        assert federation_key not in event


async def test_unknown_event_is_404(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    assert_error(await alice.get(f"/rooms/{q(room)}/event/{q('$nope')}", expect=404), "M_NOT_FOUND")
    other = await alice.create_room()
    event_id = await alice.send(other, "elsewhere")
    assert_error(await alice.get(f"/rooms/{q(room)}/event/{q(event_id)}", expect=404), "M_NOT_FOUND")


async def test_outsiders_cannot_read_events_of_a_private_room(hs: Matrix) -> None:
    alice, eve = await hs.users("alice", "eve")
    room = await alice.create_room()
    event_id = await alice.send(room, "secret")
    assert_error(await eve.get(f"/rooms/{q(room)}/event/{q(event_id)}", expect=403), "M_FORBIDDEN")
    err = await eve.get(f"/rooms/{q(room)}/messages", params={"dir": "b"}, expect=403)
    assert_error(err, "M_FORBIDDEN")


async def test_same_transaction_id_gives_the_same_event_once(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    first = await alice.send(room, "only once", txn="abc")
    again = await alice.send(room, "only once", txn="abc")
    assert again == first
    assert bodies((await bob.messages(room, limit=10))["chunk"]) == ["only once"]


async def test_transaction_ids_are_per_device_and_per_user(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    laptop = await hs.login_user("alice")
    a = await alice.send(room, "from phone", txn="same")
    b = await laptop.send(room, "from laptop", txn="same")
    c = await bob.send(room, "from bob", txn="same")
    assert len({a, b, c}) == 3
    chunk = (await bob.messages(room, "f", limit=50))["chunk"]
    assert bodies(chunk) == ["from phone", "from laptop", "from bob"]


async def test_transaction_id_is_echoed_to_the_sending_device_only(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    laptop = await hs.login_user("alice")
    event_id = await alice.send(room, "echo", txn="local-echo-1")

    def find(events: list[dict]) -> dict:
        return next(e for e in events if e["event_id"] == event_id)

    assert find(timeline(await alice.sync(), room))["unsigned"]["transaction_id"] == "local-echo-1"
    assert "transaction_id" not in find(timeline(await laptop.sync(), room))["unsigned"]
    assert "transaction_id" not in find(timeline(await bob.sync(), room))["unsigned"]


async def test_non_members_cannot_send(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    eve = await hs.register("eve")
    assert_error(await eve.send(room, "let me in", expect=403), "M_FORBIDDEN")
    await bob.leave(room)
    assert_error(await bob.send(room, "bye?", expect=403), "M_FORBIDDEN")
    assert bodies((await alice.messages(room))["chunk"]) == []


async def test_send_to_unknown_room_is_404(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    assert_error(await alice.send("!nope:hs.test", "hi", expect=404), "M_NOT_FOUND")


async def test_legacy_post_send(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    got = await alice.post(f"/rooms/{q(room)}/send/m.room.message", {"msgtype": "m.text", "body": "posted"})
    assert got["event_id"].startswith("$")
    assert bodies((await bob.messages(room))["chunk"]) == ["posted"]


async def test_messages_backwards_pages_round_trip(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    for n in range(1, 8):
        await alice.send(room, f"m{n}")
    page = await bob.messages(room, "b", limit=3)
    assert bodies(page["chunk"]) == ["m7", "m6", "m5"]
    assert page["start"] and page["end"]
    page = await bob.messages(room, "b", limit=3, **{"from": page["end"]})
    assert bodies(page["chunk"]) == ["m4", "m3", "m2"]
    page = await bob.messages(room, "b", limit=3, **{"from": page["end"]})
    assert bodies(page["chunk"]) == ["m1"]  # then the join and creation events
    seen = []
    while "end" in page:
        page = await bob.messages(room, "b", limit=3, **{"from": page["end"]})
        seen += page["chunk"]
        assert len(seen) < 50, "pagination never ends"
    assert seen[-1]["type"] == "m.room.create"
    assert "m1" not in bodies(seen)


async def test_messages_forwards_from_the_start(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    for n in range(1, 5):
        await alice.send(room, f"m{n}")
    page = await bob.messages(room, "f", limit=100)
    assert page["chunk"][0]["type"] == "m.room.create"
    assert bodies(page["chunk"]) == ["m1", "m2", "m3", "m4"]
    assert "end" not in page  # nothing further


async def test_messages_backwards_then_forwards_returns_the_same_events(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    for n in range(1, 7):
        await alice.send(room, f"m{n}")
    newest = await bob.messages(room, "b", limit=2)
    assert bodies(newest["chunk"]) == ["m6", "m5"]
    older = await bob.messages(room, "b", limit=2, **{"from": newest["end"]})
    assert bodies(older["chunk"]) == ["m4", "m3"]
    # walking forwards from the older page's end reaches the same events in order
    forward = await bob.messages(room, "f", limit=4, **{"from": older["end"]})
    assert bodies(forward["chunk"]) == ["m3", "m4", "m5", "m6"]


async def test_messages_to_token_stops_pagination(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    for n in range(1, 4):
        await alice.send(room, f"old{n}")
    mark = (await bob.sync())["next_batch"]
    for n in range(1, 4):
        await alice.send(room, f"new{n}")
    page = await bob.messages(room, "b", limit=50, to=mark)
    assert bodies(page["chunk"]) == ["new3", "new2", "new1"]
    assert "end" not in page
    forward = await bob.messages(room, "f", limit=50, **{"from": mark})
    assert bodies(forward["chunk"]) == ["new1", "new2", "new3"]


async def test_messages_accepts_a_sync_token_as_from(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await alice.send(room, "before")
    mark = (await bob.sync())["next_batch"]
    await alice.send(room, "after")
    page = await bob.messages(room, "b", limit=10, **{"from": mark})
    assert bodies(page["chunk"]) == ["before"]


async def test_prev_batch_from_a_limited_sync_continues_the_timeline(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    for n in range(1, 7):
        await alice.send(room, f"m{n}")
    sync = await bob.sync(filter={"room": {"timeline": {"limit": 2}}})
    section = sync["rooms"]["join"][room]["timeline"]
    assert section["limited"] is True
    assert bodies(section["events"]) == ["m5", "m6"]
    page = await bob.messages(room, "b", limit=3, **{"from": section["prev_batch"]})
    assert bodies(page["chunk"]) == ["m4", "m3", "m2"]


async def test_prev_batch_of_an_incremental_sync(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await alice.send(room, "seen")
    since = (await bob.sync())["next_batch"]
    for n in range(1, 5):
        await alice.send(room, f"new{n}")
    sync = await bob.sync(since, filter={"room": {"timeline": {"limit": 2}}})
    section = sync["rooms"]["join"][room]["timeline"]
    assert section["limited"] is True and bodies(section["events"]) == ["new3", "new4"]
    gap = await bob.messages(room, "b", limit=10, **{"from": section["prev_batch"], "to": since})
    assert bodies(gap["chunk"]) == ["new2", "new1"]


async def test_messages_filter(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await alice.send(room, "text")
    await alice.send(room, {"shape": "round"}, type="org.example.shape")
    await alice.put_state(room, "m.room.topic", {"topic": "t"})
    page = await bob.messages(room, "b", limit=5, filter={"types": ["org.example.shape"]})
    assert [e["type"] for e in page["chunk"]] == ["org.example.shape"]
    page = await bob.messages(room, "b", limit=2, filter={"not_types": ["m.room.topic"]})
    assert [e["type"] for e in page["chunk"]] == ["org.example.shape", "m.room.message"]


async def test_messages_lazy_loads_the_members_of_the_chunks_senders(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    (carol,) = await hs.users("carol")
    await carol.join(room)
    await carol.send(room, "from carol")
    await alice.send(room, "from alice")
    page = await bob.messages(room, "b", limit=1, filter={"lazy_load_members": True})
    assert bodies(page["chunk"]) == ["from alice"]
    members = {e["state_key"]: e["content"]["membership"] for e in page["state"]}
    assert members == {alice.user_id: "join"}  # not carol, not bob: they sent nothing here
    page = await bob.messages(room, "b", limit=2, filter={"lazy_load_members": True})
    assert {e["state_key"] for e in page["state"]} == {alice.user_id, carol.user_id}
    assert all(e["type"] == "m.room.member" for e in page["state"])
    # Without lazy loading the client gets members from /sync, so no `state` is sent.
    assert "state" not in await bob.messages(room, "b", limit=2)


async def test_messages_rejects_a_bad_direction(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    err = await alice.get(f"/rooms/{q(room)}/messages", params={"dir": "sideways"}, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_a_former_member_sees_history_only_up_to_leaving(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await alice.send(room, "while bob was here")
    await bob.leave(room)
    secret = await alice.send(room, "after bob left")
    page = await bob.messages(room, "b", limit=20)
    assert bodies(page["chunk"]) == ["while bob was here"]
    assert_error(await bob.get(f"/rooms/{q(room)}/event/{q(secret)}", expect=404), "M_NOT_FOUND")


async def test_world_readable_rooms_can_be_read_without_joining(hs: Matrix) -> None:
    alice, eve = await hs.users("alice", "eve")
    room = await alice.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}},
    ])
    event_id = await alice.send(room, "for everyone")
    assert bodies((await eve.messages(room, "b", limit=5))["chunk"]) == ["for everyone"]
    assert (await eve.get(f"/rooms/{q(room)}/event/{q(event_id)}"))["content"]["body"] == "for everyone"
    assert_error(await eve.send(room, "but not writable", expect=403), "M_FORBIDDEN")


async def test_joined_history_visibility_hides_what_came_before_joining(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
    ])
    secret = await alice.send(room, "before bob joined")
    await bob.join(room)
    await alice.send(room, "after bob joined")
    assert bodies((await bob.messages(room, "b", limit=20))["chunk"]) == ["after bob joined"]
    assert_error(await bob.get(f"/rooms/{q(room)}/event/{q(secret)}", expect=404), "M_NOT_FOUND")
    assert bodies(timeline(await bob.sync(), room)) == ["after bob joined"]


async def test_messages_end_is_omitted_exactly_when_history_runs_out(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    total = len((await alice.messages(room, "f", limit=100))["chunk"])
    everything = await alice.messages(room, "b", limit=total)
    assert len(everything["chunk"]) == total
    assert everything["chunk"][-1]["type"] == "m.room.create"
    if "end" in everything:  # allowed, but then the next page must be empty
        rest = await alice.messages(room, "b", limit=10, **{"from": everything["end"]})
        assert rest["chunk"] == [] and "end" not in rest
    almost = await alice.messages(room, "b", limit=total - 1)
    assert "end" in almost
    last = await alice.messages(room, "b", limit=10, **{"from": almost["end"]})
    assert [e["type"] for e in last["chunk"]] == ["m.room.create"]


async def test_paging_with_any_limit_and_filter_reaches_every_event_both_ways(hs: Matrix) -> None:
    """`end` is there as long as more history exists, also when a filter skips most events."""
    alice, bob, room = await chat(hs)
    for n in range(12):
        await alice.send(room, f"m{n}")
        await alice.put_state(room, "m.room.topic", {"topic": f"t{n}"})
    for limit in (1, 3, 10):
        for flt in (None, {"types": ["m.room.message"]}, {"not_types": ["m.room.message"]}):
            want = [e["event_id"] for e in (await bob.messages(room, "b", limit=1000, filter=flt))["chunk"]]
            for direction in ("b", "f"):
                page = await bob.messages(room, direction, limit=limit, filter=flt)
                got = [e["event_id"] for e in page["chunk"]]
                while "end" in page:
                    page = await bob.messages(room, direction, limit=limit, filter=flt, **{"from": page["end"]})
                    got += [e["event_id"] for e in page["chunk"]]
                    assert len(got) <= len(want)
                assert got == (want if direction == "b" else want[::-1]), (direction, limit, flt)

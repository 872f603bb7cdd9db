"""GET /sync: initial, incremental, invites, leaves, long-poll, filters and limits."""

import asyncio
import json
import time

from sltools import bodies, find_event, joined, quote, state_events, timeline_events


async def test_can_sync(user):
    """SyTest: Can sync."""
    s = await user.sync()
    assert isinstance(s["next_batch"], str)
    rooms = s.get("rooms", {})
    assert isinstance(rooms, dict)
    # Re-using a token is safe and an incremental sync also yields a next_batch.
    s2 = await user.sync(s["next_batch"])
    assert isinstance(s2["next_batch"], str)


async def test_initial_sync_includes_room_timeline_and_state(user):
    """SyTest: Can sync a joined room."""
    room = await user.create_room(preset="public_chat", name="synced")
    event_id = await user.send_message(room, "in the timeline")
    s = await user.sync()
    r = joined(s, room)
    assert r is not None, f"room missing from rooms.join: {list(s['rooms'].get('join', {}))}"
    tl = r["timeline"]
    assert isinstance(tl["events"], list) and isinstance(tl["limited"], bool)
    assert tl["events"][-1]["event_id"] == event_id  # oldest first, newest last
    assert "room_id" not in tl["events"][-1] or tl["events"][-1]["room_id"] == room
    assert isinstance(r["state"]["events"], list)
    everything = r["state"]["events"] + tl["events"]
    assert find_event(everything, type="m.room.create") is not None
    name = find_event(everything, type="m.room.name")
    assert name is not None and name["content"]["name"] == "synced"
    # State events in the timeline are not repeated in state.
    tl_ids = {e["event_id"] for e in tl["events"]}
    assert not tl_ids & {e["event_id"] for e in r["state"]["events"]}


async def test_incremental_sync_has_new_message(user):
    """SyTest: A message sent after an initial sync appears in the timeline of an incremental sync."""
    room = await user.create_room()
    since = (await user.sync())["next_batch"]
    event_id = await user.send_message(room, "after initial")
    s = await user.sync(since)
    evs = timeline_events(s, room)
    assert [e["event_id"] for e in evs] == [event_id]
    assert evs[0]["content"]["body"] == "after initial"
    assert joined(s, room)["timeline"]["limited"] is False


async def test_own_event_carries_transaction_id(user):
    room = await user.create_room()
    since = (await user.sync())["next_batch"]
    (
        await user.send_event(
            room, "m.room.message", {"msgtype": "m.text", "body": "t"}, txn_id="sl-echo"
        )
    ).expect(200)
    s = await user.sync(since)
    ev = timeline_events(s, room)[0]
    assert ev["unsigned"]["transaction_id"] == "sl-echo"


async def test_newly_joined_room_in_incremental_sync(user, make_user):
    """SyTest: Newly joined room is included in an incremental sync."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat", name="join me")
    await user.send_message(room, "before bob")
    since = (await bob.sync())["next_batch"]
    assert joined(await bob.sync(since), room) is None
    (await bob.join(room)).expect(200)
    s = await bob.sync(since)
    r = joined(s, room)
    assert r is not None
    everything = r["state"]["events"] + r["timeline"]["events"]
    me = find_event(everything, type="m.room.member", state_key=bob.user_id)
    assert me is not None and me["content"]["membership"] == "join"
    # A newly joined room is reported with its full state.
    assert find_event(everything, type="m.room.create") is not None
    assert find_event(everything, type="m.room.name")["content"]["name"] == "join me"


async def test_invite_appears_in_incremental_sync(user, make_user):
    """SyTest: Rooms a user is invited to appear in an incremental sync."""
    bob = await make_user()
    room = await user.create_room(preset="private_chat", name="invitation")
    since = (await bob.sync())["next_batch"]
    (await user.invite(room, bob.user_id)).expect(200)
    s = await bob.sync(since)
    inv = s["rooms"]["invite"].get(room)
    assert inv is not None, s["rooms"]
    evs = inv["invite_state"]["events"]
    me = find_event(evs, type="m.room.member", state_key=bob.user_id)
    assert me is not None, evs
    assert me["content"]["membership"] == "invite"
    assert me["sender"] == user.user_id
    name = find_event(evs, type="m.room.name")
    assert name is not None and name["content"]["name"] == "invitation"
    assert joined(s, room) is None


async def test_left_room_in_leave_section(user, make_user):
    """SyTest: Newly left rooms appear in the leave section of incremental sync."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    since = (await bob.sync())["next_batch"]
    (await bob.leave(room)).expect(200)
    s = await bob.sync(since)
    left = s["rooms"]["leave"].get(room)
    assert left is not None, s["rooms"]
    everything = left.get("timeline", {}).get("events", []) + left.get("state", {}).get(
        "events", []
    )
    me = find_event(everything, type="m.room.member", state_key=bob.user_id)
    assert me is not None and me["content"]["membership"] == "leave"
    assert joined(s, room) is None


async def test_kicked_room_in_leave_section(user, make_user):
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    since = (await bob.sync())["next_batch"]
    (await user.post(f"rooms/{quote(room)}/kick", {"user_id": bob.user_id})).expect(200)
    s = await bob.sync(since)
    assert room in s["rooms"]["leave"], s["rooms"]


async def test_state_change_in_incremental_sync(user, make_user):
    """SyTest: Changes to state are included in an incremental sync."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    since = (await bob.sync())["next_batch"]
    (await user.put_state(room, "m.room.topic", {"topic": "fresh topic"})).expect(200)
    s = await bob.sync(since)
    r = joined(s, room)
    assert r is not None
    ev = find_event(r["timeline"]["events"] + r["state"]["events"], type="m.room.topic")
    assert ev is not None and ev["content"]["topic"] == "fresh topic"
    assert ev["state_key"] == "" and ev["sender"] == user.user_id


async def test_sync_long_poll_wakes_on_message(user, make_user):
    """SyTest: Sync can be polled for updates. A /sync with timeout=10000 started before a
    message is sent returns it promptly, not after the timeout."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    since = (await bob.sync())["next_batch"]
    # Drain anything already pending so the long-poll really has to wait.
    for _ in range(5):
        s = await bob.sync(since)
        if s["next_batch"] == since:
            break
        since = s["next_batch"]

    async def poll(token):
        while True:
            s = await bob.sync(token, timeout_ms=10000)
            if bodies(timeline_events(s, room)):
                return s, time.monotonic()
            token = s["next_batch"]

    task = asyncio.create_task(poll(since))
    await asyncio.sleep(1.0)
    assert not task.done(), "long-poll returned before anything happened"
    sent_at = time.monotonic()
    await user.send_message(room, "wake up")
    s, got_at = await asyncio.wait_for(task, timeout=15)
    assert bodies(timeline_events(s, room)) == ["wake up"]
    assert got_at - sent_at < 3.0, f"long-poll took {got_at - sent_at:.1f}s to deliver"


async def test_sync_timeout_returns_empty(user):
    """With nothing to report, a long-poll ends at its timeout with 200, not earlier and not an error."""
    room = await user.create_room()
    since = (await user.sync())["next_batch"]
    start = time.monotonic()
    s = await user.sync(since, timeout_ms=1500)
    took = time.monotonic() - start
    assert joined(s, room) is None or not timeline_events(s, room)
    assert 1.0 <= took < 10, took


async def test_create_and_get_filter(user):
    """SyTest: Can create filter."""
    flt = {
        "room": {"timeline": {"limit": 7, "types": ["m.room.message"]}},
        "presence": {"not_types": ["*"]},
    }
    j = (await user.post(f"user/{quote(user.user_id)}/filter", flt)).expect(200)
    fid = j["filter_id"]
    assert isinstance(fid, str) and fid
    got = (await user.get(f"user/{quote(user.user_id)}/filter/{quote(fid)}")).expect(200)
    assert got["room"]["timeline"]["limit"] == 7
    assert got["room"]["timeline"]["types"] == ["m.room.message"]
    assert got["presence"]["not_types"] == ["*"]


async def test_filtered_timeline_is_limited_with_usable_prev_batch(user):
    """SyTest: A filtered timeline reaches its limit; A prev_batch token can be used in the
    v1 messages API."""
    room = await user.create_room()
    fid = (
        await user.post(f"user/{quote(user.user_id)}/filter", {"room": {"timeline": {"limit": 2}}})
    ).expect(200)["filter_id"]
    since = (await user.sync(filter=fid))["next_batch"]
    for i in range(5):
        await user.send_message(room, f"n{i}")
    s = await user.sync(since, filter=fid)
    r = joined(s, room)
    assert r is not None
    assert bodies(r["timeline"]["events"]) == ["n3", "n4"]
    assert r["timeline"]["limited"] is True
    prev = r["timeline"]["prev_batch"]
    j = (await user.messages(room, dir="b", limit=3, **{"from": prev})).expect(200)
    assert bodies(j["chunk"]) == ["n2", "n1", "n0"]


async def test_initial_sync_inline_filter_limit(user):
    room = await user.create_room()
    for i in range(4):
        await user.send_message(room, f"i{i}")
    s = await user.sync(filter=json.dumps({"room": {"timeline": {"limit": 1}}}))
    r = joined(s, room)
    assert bodies(r["timeline"]["events"]) == ["i3"]
    assert r["timeline"]["limited"] is True
    # State at the start of the timeline is complete even though the timeline is cut.
    assert find_event(state_events(s, room), type="m.room.create") is not None
    j = (
        await user.messages(room, dir="b", limit=1, **{"from": r["timeline"]["prev_batch"]})
    ).expect(200)
    assert bodies(j["chunk"]) == ["i2"]

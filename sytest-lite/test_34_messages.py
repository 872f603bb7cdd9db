"""Sending events, /event, /messages and pagination."""

from sltools import bodies, quote


async def test_send_message_with_txn_id(user):
    """SyTest: PUT /rooms/:room_id/send/:event_type/:txn_id sends a message."""
    room = await user.create_room()
    event_id = await user.send_message(room, "hello world")
    j = (await user.messages(room, limit=5)).expect(200)
    ev = j["chunk"][0]
    assert ev["event_id"] == event_id
    assert ev["type"] == "m.room.message"
    assert ev["sender"] == user.user_id
    assert ev["content"] == {"msgtype": "m.text", "body": "hello world"}
    assert ev["room_id"] == room
    assert isinstance(ev["origin_server_ts"], int)


async def test_send_same_txn_id_deduplicates(user):
    """SyTest: PUT /rooms/:room_id/send/:event_type/:txn_id deduplicates the same txn id."""
    room = await user.create_room()
    content = {"msgtype": "m.text", "body": "only once"}
    first = (await user.send_event(room, "m.room.message", content, txn_id="sl-dup-1")).expect(200)
    again = (await user.send_event(room, "m.room.message", content, txn_id="sl-dup-1")).expect(200)
    assert first["event_id"] == again["event_id"]
    j = (await user.messages(room, limit=20)).expect(200)
    assert bodies(j["chunk"]).count("only once") == 1
    # A different txn id is a different event.
    other = (await user.send_event(room, "m.room.message", content, txn_id="sl-dup-2")).expect(200)
    assert other["event_id"] != first["event_id"]


async def test_get_event_by_id(user):
    """SyTest: /event/ on joined room works."""
    room = await user.create_room()
    event_id = await user.send_message(room, "fetch me")
    j = (await user.get(f"rooms/{quote(room)}/event/{quote(event_id)}")).expect(200)
    assert j["event_id"] == event_id
    assert j["room_id"] == room
    assert j["sender"] == user.user_id
    assert j["type"] == "m.room.message"
    assert j["content"]["body"] == "fetch me"
    r = await user.get(f"rooms/{quote(room)}/event/{quote('$sytestlitenosuchevent')}")
    r.expect_error(404, "M_NOT_FOUND")


async def test_messages_returns_messages(user):
    """SyTest: GET /rooms/:room_id/messages returns a message."""
    room = await user.create_room()
    await user.send_message(room, "first")
    await user.send_message(room, "second")
    j = (await user.messages(room, dir="b", limit=10)).expect(200)
    assert isinstance(j["start"], str)
    assert bodies(j["chunk"])[:2] == ["second", "first"]  # dir=b: newest first
    # dir=f without `from` starts at the beginning of the room.
    j = (await user.messages(room, dir="f", limit=100)).expect(200)
    assert j["chunk"][0]["type"] == "m.room.create"
    assert bodies(j["chunk"]) == ["first", "second"]


async def test_message_history_can_be_paginated(user):
    """SyTest: Message history can be paginated (both directions, both token kinds)."""
    room = await user.create_room()
    msgs = [f"m{i}" for i in range(6)]
    for m in msgs:
        await user.send_message(room, m)
    token = (await user.sync())["next_batch"]

    # Backwards from "now", 2 at a time, following `end`.
    seen: list[str] = []
    ends: list[str] = []
    frm = token
    for _ in range(10):
        j = (await user.messages(room, dir="b", limit=2, **{"from": frm})).expect(200)
        assert len(j["chunk"]) <= 2
        seen += bodies(j["chunk"])
        if "m0" in seen or "end" not in j:
            break
        ends.append(j["end"])
        frm = j["end"]
    assert seen == list(reversed(msgs))
    # Pages were [m5, m4] with end E0 (just before m4) and [m3, m2] with end E1 (just before m2).
    e1 = ends[1]

    # Forwards from E1 gives m2, m3, then m4, m5, following `end`.
    f1 = (await user.messages(room, dir="f", limit=2, **{"from": e1})).expect(200)
    assert bodies(f1["chunk"]) == ["m2", "m3"]
    f2 = (await user.messages(room, dir="f", limit=2, **{"from": f1["end"]})).expect(200)
    assert bodies(f2["chunk"]) == ["m4", "m5"]
    # The `start` of a forwards page is where that page began: backwards from it gives what
    # precedes the page.
    back = (await user.messages(room, dir="b", limit=2, **{"from": f2["start"]})).expect(200)
    assert bodies(back["chunk"]) == ["m3", "m2"]
    # Nothing after the end: an empty chunk (and `end` may be omitted).
    f3 = (await user.messages(room, dir="f", limit=2, **{"from": f2.get("end", token)})).expect(200)
    assert bodies(f3["chunk"]) == []


async def test_non_members_cannot_read_messages(user, make_user):
    """A user who is not in a (non-world-readable) room cannot read its history."""
    carol = await make_user()
    room = await user.create_room(preset="private_chat")
    event_id = await user.send_message(room, "secret")
    r = await carol.messages(room, limit=10)
    r.expect_error(403, "M_FORBIDDEN")
    r = await carol.get(f"rooms/{quote(room)}/event/{quote(event_id)}")
    assert r.status in (403, 404), r.text  # spec: 404 M_NOT_FOUND when not visible
    assert r.errcode in ("M_FORBIDDEN", "M_NOT_FOUND")


async def test_local_non_members_dont_see_posted_messages(user, make_user):
    """SyTest: Local non-members don't see posted message events."""
    carol = await make_user()
    since = (await carol.sync())["next_batch"]
    room = await user.create_room(preset="public_chat")
    await user.send_message(room, "not for carol")
    s = await carol.sync(since, timeout_ms=500)
    assert room not in s.get("rooms", {}).get("join", {})
    assert room not in s.get("rooms", {}).get("invite", {})


async def test_oversize_event_rejected(user):
    """An event bigger than 65536 bytes (canonical JSON) is refused with 413 M_TOO_LARGE."""
    room = await user.create_room()
    r = await user.send_event(room, "m.room.message", {"msgtype": "m.text", "body": "x" * 70000})
    r.expect_error(413, "M_TOO_LARGE")
    # A normal message still works afterwards.
    await user.send_message(room, "small")

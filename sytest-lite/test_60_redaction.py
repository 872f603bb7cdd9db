"""Redactions."""

from sltools import quote


async def _redact(u, room, event_id, reason="sytest"):
    return await u.put(
        f"rooms/{quote(room)}/redact/{quote(event_id)}/{quote(u.txn_id())}", {"reason": reason}
    )


async def _get_event(u, room, event_id):
    return (await u.get(f"rooms/{quote(room)}/event/{quote(event_id)}")).expect(200)


async def test_sender_can_redact_own_message(user):
    """SyTest: PUT /rooms/:room_id/redact/:event_id/:txn_id as original message sender redacts message."""
    room = await user.create_room()
    event_id = await user.send_message(room, "regrettable")
    j = (await _redact(user, room, event_id)).expect(200)
    redaction_id = j["event_id"]
    assert redaction_id.startswith("$") and redaction_id != event_id
    ev = await _get_event(user, room, event_id)
    assert ev["content"] == {}
    assert ev["type"] == "m.room.message" and ev["sender"] == user.user_id
    because = ev.get("unsigned", {}).get("redacted_because")
    assert because is not None and because["event_id"] == redaction_id
    assert because["type"] == "m.room.redaction"
    # The redaction event itself is in the timeline and names its target.
    red = await _get_event(user, room, redaction_id)
    assert red["type"] == "m.room.redaction"
    assert event_id in (red.get("redacts"), red["content"].get("redacts"))


async def test_power_user_can_redact_others_message(user, make_user):
    """SyTest: ... as power user redacts message."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    event_id = await bob.send_message(room, "spam")
    (await _redact(user, room, event_id)).expect(200)
    ev = await _get_event(bob, room, event_id)
    assert ev["content"] == {}


async def test_random_user_cannot_redact(user, make_user):
    """SyTest: ... as random user does not redact message."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    event_id = await user.send_message(room, "keep me")
    r = await _redact(bob, room, event_id)
    r.expect_error(403, "M_FORBIDDEN")
    ev = await _get_event(user, room, event_id)
    assert ev["content"]["body"] == "keep me"


async def test_redacted_message_stripped_in_messages(user):
    room = await user.create_room()
    event_id = await user.send_message(room, "gone soon")
    (await _redact(user, room, event_id)).expect(200)
    j = (await user.messages(room, limit=10)).expect(200)
    ev = next(e for e in j["chunk"] if e["event_id"] == event_id)
    assert ev["content"] == {}

"""Redactions: who may redact, and what readers see afterwards."""

from __future__ import annotations

import pytest

from tests.helpers import Matrix, User, assert_error, q, timeline


async def chat(hs: Matrix, version: str = "10") -> tuple[User, User, User, str]:
    alice, bob, carol = [await hs.register(n) for n in ("alice", "bob", "carol")]
    room = await alice.create_room(preset="public_chat", room_version=version)
    await bob.join(room)
    await carol.join(room)
    return alice, bob, carol, room


async def redact(user: User, room: str, event_id: str, reason: str | None = None, *, expect: int = 200):
    body = {} if reason is None else {"reason": reason}
    got = await user.put(f"/rooms/{q(room)}/redact/{q(event_id)}/{user.next_txn()}", body, expect=expect)
    return got["event_id"] if expect == 200 else got


async def read(user: User, room: str, event_id: str) -> dict:
    return await user.get(f"/rooms/{q(room)}/event/{q(event_id)}")


def in_messages(page: dict, event_id: str) -> dict:
    return next(e for e in page["chunk"] if e["event_id"] == event_id)


@pytest.mark.parametrize("version", ["10", "11"])
async def test_sender_redacts_their_own_message(hs: Matrix, version: str) -> None:
    alice, bob, _, room = await chat(hs, version)
    target = await bob.send(room, "oops, wrong room")
    redaction_id = await redact(bob, room, target, "typo")

    seen = await read(alice, room, target)
    assert seen["content"] == {}
    assert seen["type"] == "m.room.message" and seen["sender"] == bob.user_id
    because = seen["unsigned"]["redacted_because"]
    assert because["event_id"] == redaction_id and because["sender"] == bob.user_id
    assert because["content"]["reason"] == "typo"

    page = await alice.messages(room, "b", limit=5)
    assert in_messages(page, target)["content"] == {}
    redaction = in_messages(page, redaction_id)
    assert redaction["type"] == "m.room.redaction"
    assert redaction["redacts"] == target
    if version == "11":
        assert redaction["content"]["redacts"] == target


async def test_redacted_content_is_stripped_in_sync_too(hs: Matrix) -> None:
    alice, bob, _, room = await chat(hs)
    since = (await alice.sync())["next_batch"]
    target = await bob.send(room, "secret")
    await redact(bob, room, target)
    events = timeline(await alice.sync(since), room)
    assert events[0]["event_id"] == target and events[0]["content"] == {}
    assert "redacted_because" in events[0]["unsigned"]
    fresh = timeline(await alice.sync(), room)
    assert next(e for e in fresh if e["event_id"] == target)["content"] == {}


async def test_a_moderator_may_redact_someone_elses_message(hs: Matrix) -> None:
    alice, bob, carol, room = await chat(hs)
    target = await bob.send(room, "spam spam spam")
    await redact(alice, room, target, "spam")
    assert (await read(carol, room, target))["content"] == {}
    assert (await read(carol, room, target))["unsigned"]["redacted_because"]["sender"] == alice.user_id


async def test_an_ordinary_user_may_not_redact_someone_elses_message(hs: Matrix) -> None:
    alice, bob, carol, room = await chat(hs)
    target = await alice.send(room, "important announcement")
    assert_error(await redact(carol, room, target, expect=403), "M_FORBIDDEN")
    seen = await read(bob, room, target)
    assert seen["content"]["body"] == "important announcement"
    assert "redacted_because" not in seen["unsigned"]
    page = await bob.messages(room, "b", limit=3)
    assert page["chunk"][0]["type"] == "m.room.message"  # no redaction event was added


async def test_outsiders_may_not_redact(hs: Matrix) -> None:
    alice, bob, _, room = await chat(hs)
    eve = await hs.register("eve")
    target = await bob.send(room, "hello")
    assert_error(await redact(eve, room, target, expect=403), "M_FORBIDDEN")
    assert (await read(alice, room, target))["content"]["body"] == "hello"


async def test_redacting_an_unknown_event_fails(hs: Matrix) -> None:
    alice, _, _, room = await chat(hs)
    err = await redact(alice, room, "$doesnotexist", expect=404)
    assert_error(err, "M_NOT_FOUND")


async def test_redaction_is_idempotent_on_its_transaction_id(hs: Matrix) -> None:
    alice, bob, _, room = await chat(hs)
    target = await bob.send(room, "hmm")
    path = f"/rooms/{q(room)}/redact/{q(target)}/same-txn"
    first = (await bob.put(path, {}))["event_id"]
    assert (await bob.put(path, {}))["event_id"] == first
    page = await alice.messages(room, "b", limit=5)
    assert [e["type"] for e in page["chunk"]].count("m.room.redaction") == 1


async def test_redacting_state_keeps_only_the_essential_keys(hs: Matrix) -> None:
    alice, bob, _, room = await chat(hs)
    rules = await alice.put_state(room, "m.room.join_rules", {"join_rule": "public", "note": "x"})
    topic = await alice.put_state(room, "m.room.topic", {"topic": "to be redacted"})
    await redact(alice, room, rules)
    await redact(alice, room, topic)
    assert (await read(bob, room, rules))["content"] == {"join_rule": "public"}
    assert (await read(bob, room, topic))["content"] == {}
    state = await bob.room_state(room)
    assert state[("m.room.topic", "")]["content"] == {}
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}


async def test_single_state_entry_is_served_redacted(hs: Matrix) -> None:
    alice, bob, _, room = await chat(hs)
    topic = await alice.put_state(room, "m.room.topic", {"topic": "to be redacted"})
    await redact(alice, room, topic)
    assert await bob.state(room, "m.room.topic") == {}
    event = await bob.get(f"/rooms/{q(room)}/state/m.room.topic/", params={"format": "event"})
    assert event["content"] == {} and "redacted_because" in event["unsigned"]

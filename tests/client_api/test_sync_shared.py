"""Initial syncs built from shared per-room material (homeserver/services/room_material.py):
what is shared never leaks what belongs to one reader, and a commit is seen at once."""

from __future__ import annotations

import json

from tests.helpers import Matrix, q, timeline

LAZY = json.dumps({"room": {"timeline": {"limit": 3}, "state": {"lazy_load_members": True}}})


def members(sync: dict, room: str) -> set[str]:
    return {e["state_key"] for e in sync["rooms"]["join"][room]["state"]["events"] if e["type"] == "m.room.member"}


async def test_shared_rooms_keep_each_readers_own_parts(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await carol.join(room)
    for i in range(3):
        await alice.send(room, f"a{i}", txn=f"alice-txn-{i}")
    first = await bob.sync(filter=LAZY)
    second = await carol.sync(filter=LAZY)
    mine = await alice.sync(filter=LAZY)
    for sync, me in ((first, bob), (second, carol), (mine, alice)):
        events = [e for e in timeline(sync, room) if e["type"] == "m.room.message"]
        assert [e["content"]["body"] for e in events] == ["a0", "a1", "a2"]
        txns = [e["unsigned"].get("transaction_id") for e in events]
        # only the sending device sees its transaction ids
        assert txns == (["alice-txn-0", "alice-txn-1", "alice-txn-2"] if me is alice else [None] * 3)
        assert all(isinstance(e["unsigned"]["age"], int) and e["unsigned"]["age"] >= 0 for e in events)
        # lazy loading: the senders' members and the reader's own, nobody else's
        assert members(sync, room) == {alice.user_id, me.user_id}


async def test_a_commit_changes_the_shared_material_at_once(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(preset="public_chat", name="Before")
    await bob.join(room)
    await carol.join(room)
    await alice.send(room, "one")
    await bob.sync(filter=LAZY)  # builds the room's material
    await alice.send(room, "two")
    await alice.put_state(room, "m.room.name", {"name": "After"})
    later = await carol.sync(filter=LAZY)
    events = timeline(later, room)
    assert [e["content"].get("body") for e in events if e["type"] == "m.room.message"][-1] == "two"
    assert events[-1]["type"] == "m.room.name" and events[-1]["content"]["name"] == "After"
    redacted = await alice.send(room, "secret")
    await bob.sync(filter=LAZY)
    await alice.put(f"/rooms/{q(room)}/redact/{q(redacted)}/r1", {})
    after = await carol.sync(filter=LAZY)
    secret = next(e for e in timeline(after, room) if e["event_id"] == redacted)
    assert secret["content"] == {} and "redacted_because" in secret["unsigned"]

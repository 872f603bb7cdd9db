"""Room tags and account data rules (spec: "Room Tagging", "Client Config")."""

from __future__ import annotations

from tests.helpers import Matrix, assert_error, q


async def test_tags_round_trip_and_reach_sync(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room()
    base = f"/user/{q(alice.user_id)}/rooms/{q(room)}/tags"
    assert await alice.get(base) == {"tags": {}}
    since = (await alice.sync())["next_batch"]
    await alice.put(f"{base}/m.favourite", {"order": 0.25})
    await alice.put(f"{base}/u.work", {})
    assert await alice.get(base) == {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}
    section = (await alice.sync(since))["rooms"]["join"][room]
    assert {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}} in \
        section["account_data"]["events"]

    since = (await alice.sync())["next_batch"]
    await alice.delete(f"{base}/m.favourite")
    await alice.delete(f"{base}/never-set")
    assert await alice.get(base) == {"tags": {"u.work": {}}}
    section = (await alice.sync(since))["rooms"]["join"][room]
    assert section["account_data"]["events"] == [{"type": "m.tag", "content": {"tags": {"u.work": {}}}}]
    # Initial sync carries the tags too.
    initial = (await alice.sync())["rooms"]["join"][room]["account_data"]["events"]
    assert {"type": "m.tag", "content": {"tags": {"u.work": {}}}} in initial

    assert_error(await bob.get(base, expect=403), "M_FORBIDDEN")
    assert_error(await bob.put(f"{base}/x", {}, expect=403), "M_FORBIDDEN")


async def test_bad_tags_change_nothing(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    base = f"/user/{q(alice.user_id)}/rooms/{q(room)}/tags"
    assert_error(await alice.put(f"{base}/m.favourite", {"order": "first"}, expect=400), "M_BAD_JSON")
    assert_error(await alice.put(f"{base}/m.favourite", [1], expect=400), "M_BAD_JSON")
    assert await alice.get(base) == {"tags": {}}


async def test_server_controlled_account_data_is_refused(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    for path in (f"/user/{q(alice.user_id)}/account_data/m.push_rules",
                 f"/user/{q(alice.user_id)}/account_data/m.fully_read",
                 f"/user/{q(alice.user_id)}/rooms/{q(room)}/account_data/m.fully_read"):
        assert_error(await alice.put(path, {"x": 1}, expect=405), "M_BAD_JSON")
    bad_room = f"/user/{q(alice.user_id)}/rooms/not-a-room/account_data/org.example"
    assert_error(await alice.put(bad_room, {"x": 1}, expect=400), "M_INVALID_PARAM")
    # The read marker still moves through /read_markers.
    event_id = await alice.send(room, "hi")
    await alice.post(f"/rooms/{q(room)}/read_markers", {"m.fully_read": event_id})
    got = await alice.get(f"/user/{q(alice.user_id)}/rooms/{q(room)}/account_data/m.fully_read")
    assert got == {"event_id": event_id}

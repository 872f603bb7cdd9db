"""Room state: GET/PUT of single entries (with and without a state key), the whole state."""

from __future__ import annotations

from tests.helpers import CS, Matrix, assert_error, q


async def test_put_and_get_state_with_an_empty_state_key_in_every_path_form(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    base = f"/rooms/{q(room)}/state/m.room.topic"
    first = (await alice.put(base, {"topic": "no slash"}))["event_id"]
    assert first.startswith("$")
    assert await alice.get(base) == {"topic": "no slash"}
    assert await alice.get(base + "/") == {"topic": "no slash"}
    second = (await alice.put(base + "/", {"topic": "trailing slash"}))["event_id"]
    assert second != first
    assert await alice.get(base) == {"topic": "trailing slash"}
    assert await alice.get(base + "/") == {"topic": "trailing slash"}
    assert await hs.call(
        "GET", f"/_matrix/client/r0/rooms/{q(room)}/state/m.room.topic", token=alice.token,
    ) == {"topic": "trailing slash"}


async def test_state_with_a_state_key(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    await alice.put_state(room, "org.example.pin", {"n": 1}, key="one")
    await alice.put_state(room, "org.example.pin", {"n": 2}, key="two")
    await alice.put_state(room, "org.example.pin", {"n": 3}, key="@alice:hs.test")
    assert await alice.state(room, "org.example.pin", "one") == {"n": 1}
    assert await alice.state(room, "org.example.pin", "two") == {"n": 2}
    assert await alice.state(room, "org.example.pin", "@alice:hs.test") == {"n": 3}
    assert_error(await alice.state(room, "org.example.pin", expect=404), "M_NOT_FOUND")
    state = await alice.room_state(room)
    assert {k for k in state if k[0] == "org.example.pin"} == {
        ("org.example.pin", "one"), ("org.example.pin", "two"), ("org.example.pin", "@alice:hs.test"),
    }


async def test_state_with_a_slash_in_the_state_key(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    await alice.put(f"/rooms/{q(room)}/state/org.example.path/a/b", {"v": 1})
    assert await alice.get(f"/rooms/{q(room)}/state/org.example.path/a/b") == {"v": 1}


async def test_missing_state_is_404(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    assert_error(await alice.state(room, "m.room.topic", expect=404), "M_NOT_FOUND")
    assert_error(await alice.state("!nope:hs.test", "m.room.topic", expect=404), "M_NOT_FOUND")


async def test_format_event_returns_the_whole_event(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room(name="Lunch")
    event_id = await alice.put_state(room, "m.room.name", {"name": "Dinner"})
    event = await alice.get(f"/rooms/{q(room)}/state/m.room.name/", params={"format": "event"})
    assert event["event_id"] == event_id
    assert event["type"] == "m.room.name" and event["state_key"] == ""
    assert event["sender"] == alice.user_id and event["content"] == {"name": "Dinner"}
    for federation_key in ("auth_events", "prev_events", "hashes", "signatures", "depth"):
        assert federation_key not in event


async def test_whole_state_lists_every_current_entry_once(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat", name="One")
    await alice.put_state(room, "m.room.name", {"name": "Two"})
    await bob.join(room)
    events = await bob.get(f"/rooms/{q(room)}/state")
    keys = [(e["type"], e["state_key"]) for e in events]
    assert len(keys) == len(set(keys))
    state = {k: e for k, e in zip(keys, events, strict=True)}
    assert state[("m.room.name", "")]["content"] == {"name": "Two"}
    assert state[("m.room.member", bob.user_id)]["content"]["membership"] == "join"
    assert {("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", "")} <= set(keys)
    assert all(e["room_id"] == room for e in events)


async def test_state_change_without_power_is_forbidden_and_changes_nothing(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat", name="Alice's room")
    await bob.join(room)
    before = await bob.state_ids(room)
    assert_error(await bob.put_state(room, "m.room.name", {"name": "Bob's now"}, expect=403), "M_FORBIDDEN")
    assert_error(
        await bob.put_state(room, "m.room.power_levels", {"users": {bob.user_id: 100}}, expect=403),
        "M_FORBIDDEN",
    )
    assert await bob.state_ids(room) == before
    assert await alice.state(room, "m.room.name") == {"name": "Alice's room"}


async def test_outsiders_cannot_read_or_write_state(hs: Matrix) -> None:
    alice, eve = await hs.users("alice", "eve")
    room = await alice.create_room(name="Secret")
    assert_error(await eve.state(room, "m.room.name", expect=403), "M_FORBIDDEN")
    assert_error(await eve.get(f"/rooms/{q(room)}/state", expect=403), "M_FORBIDDEN")
    assert_error(await eve.put_state(room, "m.room.name", {"name": "Eve's"}, expect=403), "M_FORBIDDEN")
    assert await alice.state(room, "m.room.name") == {"name": "Secret"}


async def test_member_state_needs_a_membership(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    err = await alice.put_state(room, "m.room.member", {"displayname": "x"}, key=alice.user_id, expect=400)
    assert_error(err, "M_BAD_JSON")
    assert (await alice.state(room, "m.room.member", alice.user_id))["membership"] == "join"


async def test_power_levels_change_takes_effect(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    pl = await alice.state(room, "m.room.power_levels")
    pl["users"][bob.user_id] = 50
    await alice.put_state(room, "m.room.power_levels", pl)
    await bob.put_state(room, "m.room.name", {"name": "Bob was promoted"})
    assert await alice.state(room, "m.room.name") == {"name": "Bob was promoted"}


async def test_state_path_percent_decoding(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    # the room id fully escaped, as matrix-js-sdk sends it
    path = f"{CS}/rooms/{q(room)}/state/m.room.topic/"
    await hs.call("PUT", path, {"topic": "escaped"}, token=alice.token)
    assert await alice.state(room, "m.room.topic") == {"topic": "escaped"}


async def test_canonical_alias_must_be_well_formed_and_point_to_the_room(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room(room_alias_name="here")
    await alice.create_room(room_alias_name="there")
    await alice.put(f"/directory/room/{q('#second:hs.test')}", {"room_id": room})
    path = f"/rooms/{q(room)}/state/m.room.canonical_alias"
    for bad, code in (
        ({"alias": "not an alias"}, "M_INVALID_PARAM"),
        ({"alias": 5}, "M_INVALID_PARAM"),
        ({"alt_aliases": "#here:hs.test"}, "M_INVALID_PARAM"),
        ({"alias": "#here:hs.test", "alt_aliases": ["#there:hs.test"]}, "M_BAD_ALIAS"),  # another room's
        ({"alias": "#nowhere:hs.test"}, "M_BAD_ALIAS"),  # no such alias
    ):
        assert_error(await alice.put(path, bad, expect=400), code)
    assert await alice.get(path) == {"alias": "#here:hs.test"}
    assert (await alice.put(path, {"alias": "#here:hs.test", "alt_aliases": ["#second:hs.test"]}))["event_id"]
    # An alias deleted from the directory can still be kept or dropped from the list.
    await alice.delete(f"/directory/room/{q('#second:hs.test')}")
    assert (await alice.put(path, {"alias": "#here:hs.test", "alt_aliases": ["#second:hs.test"]}))["event_id"]
    assert (await alice.put(path, {}))["event_id"]
    assert await alice.get(path) == {}

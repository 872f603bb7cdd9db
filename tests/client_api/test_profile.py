"""Profiles: display name and avatar, and their echo in member events."""

from __future__ import annotations

from tests.helpers import Matrix, assert_error, q, timeline


async def test_new_users_are_named_after_their_localpart(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    assert await bob.get(f"/profile/{q(alice.user_id)}") == {"displayname": "alice"}
    assert await bob.get(f"/profile/{q(alice.user_id)}/displayname") == {"displayname": "alice"}


async def test_profile_can_be_read_without_a_token(hs: Matrix) -> None:
    alice = await hs.register("alice")
    await alice.put(f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice"})
    assert (await hs.call("GET", f"/profile/{q(alice.user_id)}"))["displayname"] == "Alice"


async def test_set_displayname_and_avatar(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    await alice.put(f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice Liddell"})
    await alice.put(f"/profile/{q(alice.user_id)}/avatar_url", {"avatar_url": "mxc://hs.test/rabbit"})
    assert await alice.get(f"/profile/{q(alice.user_id)}") == {
        "displayname": "Alice Liddell", "avatar_url": "mxc://hs.test/rabbit",
    }
    assert await alice.get(f"/profile/{q(alice.user_id)}/avatar_url") == {"avatar_url": "mxc://hs.test/rabbit"}


async def test_profile_change_updates_member_events_in_joined_rooms(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    one = await alice.create_room(preset="public_chat")
    two = await alice.create_room(preset="public_chat")
    await bob.join(one)
    since = (await bob.sync())["next_batch"]
    await alice.put(f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Queen Alice"})

    for room in (one, two):
        member = await alice.state(room, "m.room.member", alice.user_id)
        assert member == {"membership": "join", "displayname": "Queen Alice"}
    joined = (await bob.get(f"/rooms/{q(one)}/joined_members"))["joined"]
    assert joined[alice.user_id]["display_name"] == "Queen Alice"

    events = timeline(await bob.sync(since), one)
    assert len(events) == 1
    change = events[0]
    assert change["type"] == "m.room.member" and change["state_key"] == alice.user_id
    assert change["content"]["displayname"] == "Queen Alice"
    assert change["unsigned"]["prev_content"]["displayname"] == "alice"


async def test_rooms_joined_after_a_change_use_the_new_name(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    await bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bobby"})
    await bob.put(f"/profile/{q(bob.user_id)}/avatar_url", {"avatar_url": "mxc://hs.test/bob"})
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    member = await alice.state(room, "m.room.member", bob.user_id)
    assert member == {"membership": "join", "displayname": "Bobby", "avatar_url": "mxc://hs.test/bob"}


async def test_nobody_else_may_change_a_profile(hs: Matrix) -> None:
    alice, eve = await hs.users("alice", "eve")
    room = await alice.create_room()
    err = await eve.put(f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Evil Alice"}, expect=403)
    assert_error(err, "M_FORBIDDEN")
    err = await eve.put(f"/profile/{q(alice.user_id)}/avatar_url", {"avatar_url": "mxc://x/y"}, expect=403)
    assert_error(err, "M_FORBIDDEN")
    assert await alice.get(f"/profile/{q(alice.user_id)}") == {"displayname": "alice"}
    assert (await alice.state(room, "m.room.member", alice.user_id))["displayname"] == "alice"


async def test_profile_put_needs_a_token_and_a_value(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    path = f"/profile/{q(alice.user_id)}/displayname"
    assert_error(await hs.call("PUT", path, {"displayname": "x"}, expect=401), "M_MISSING_TOKEN")
    assert_error(await alice.put(path, {}, expect=400), "M_MISSING_PARAM")
    assert_error(await alice.put(path, {"displayname": 7}, expect=400), "M_BAD_JSON")
    assert await alice.get(path) == {"displayname": "alice"}


async def test_unknown_users_have_no_profile(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    assert_error(await alice.get(f"/profile/{q('@ghost:hs.test')}", expect=404), "M_NOT_FOUND")


async def test_delete_a_profile_field(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    await alice.put(f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice A."})
    assert_error(await bob.delete(f"/profile/{q(alice.user_id)}/displayname", expect=403), "M_FORBIDDEN")
    assert await alice.delete(f"/profile/{q(alice.user_id)}/displayname") == {}
    assert "displayname" not in await hs.call("GET", f"/profile/{q(alice.user_id)}")

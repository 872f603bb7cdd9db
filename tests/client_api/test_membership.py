"""Joining, inviting, leaving, kicking, banning and forgetting, with their refusals."""

from __future__ import annotations

from tests.helpers import Matrix, User, assert_error, q


async def membership(user: User, room: str, target: User) -> str | None:
    """The target's membership as the room state says (None when absent)."""
    state = await user.room_state(room)
    event = state.get(("m.room.member", target.user_id))
    return event["content"]["membership"] if event else None


async def joined(user: User, room: str) -> set[str]:
    return set((await user.get(f"/rooms/{q(room)}/joined_members"))["joined"])


async def test_join_by_room_id_with_both_endpoints(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(preset="public_chat")
    assert await bob.post(f"/rooms/{q(room)}/join") == {"room_id": room}
    assert await carol.join(room) == {"room_id": room}
    assert await joined(alice, room) == {alice.user_id, bob.user_id, carol.user_id}
    assert await bob.join(room) == {"room_id": room}  # joining twice is harmless
    assert await joined(alice, room) == {alice.user_id, bob.user_id, carol.user_id}


async def test_join_unknown_room_is_404(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    assert_error(await alice.join("!nope:hs.test", expect=404), "M_NOT_FOUND")
    assert_error(await alice.join("#nope:hs.test", expect=404), "M_NOT_FOUND")
    assert await alice.joined_rooms() == []


async def test_invite_then_join(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room()
    assert_error(await bob.join(room, expect=403), "M_FORBIDDEN")
    assert await alice.invite(room, bob) == {}
    assert await membership(alice, room, bob) == "invite"
    assert await bob.joined_rooms() == []
    await bob.join(room)
    assert await bob.joined_rooms() == [room]
    assert await joined(alice, room) == {alice.user_id, bob.user_id}


async def test_only_members_can_invite(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(preset="public_chat")
    assert_error(await bob.invite(room, carol, expect=403), "M_FORBIDDEN")
    assert await membership(alice, room, carol) is None


async def test_invite_needs_the_invite_power_level(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(preset="public_chat")  # invite: 50
    await bob.join(room)
    assert_error(await bob.invite(room, carol, expect=403), "M_FORBIDDEN")
    assert await membership(alice, room, carol) is None


async def test_inviting_an_unknown_local_user_fails(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    err = await alice.post(f"/rooms/{q(room)}/invite", {"user_id": "@ghost:hs.test"}, expect=404)
    assert_error(err, "M_NOT_FOUND")


async def test_leave(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    assert await bob.leave(room) == {}
    assert await bob.joined_rooms() == []
    assert await membership(alice, room, bob) == "leave"
    assert_error(await bob.send(room, "still here?", expect=403), "M_FORBIDDEN")
    assert_error(await bob.leave(room, expect=403), "M_FORBIDDEN")


async def test_rejecting_an_invite_by_leaving(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(invite=[bob.user_id])
    await bob.leave(room)
    assert await membership(alice, room, bob) == "leave"
    assert_error(await bob.join(room, expect=403), "M_FORBIDDEN")


async def test_kick(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await carol.join(room)
    assert_error(
        await bob.post(f"/rooms/{q(room)}/kick", {"user_id": carol.user_id}, expect=403), "M_FORBIDDEN",
    )
    assert await membership(alice, room, carol) == "join"
    assert await alice.post(f"/rooms/{q(room)}/kick", {"user_id": carol.user_id, "reason": "spam"}) == {}
    assert await carol.joined_rooms() == []
    member = await alice.state(room, "m.room.member", carol.user_id)
    assert member["membership"] == "leave" and member["reason"] == "spam"
    await carol.join(room)  # a kick is not a ban
    assert await membership(alice, room, carol) == "join"


async def test_ban_and_unban(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await carol.join(room)
    assert_error(
        await bob.post(f"/rooms/{q(room)}/ban", {"user_id": carol.user_id}, expect=403), "M_FORBIDDEN",
    )
    assert await membership(alice, room, carol) == "join"

    assert await alice.post(f"/rooms/{q(room)}/ban", {"user_id": carol.user_id}) == {}
    assert await membership(alice, room, carol) == "ban"
    assert await carol.joined_rooms() == []
    assert_error(await carol.join(room, expect=403), "M_FORBIDDEN")
    assert await membership(alice, room, carol) == "ban"

    assert_error(
        await bob.post(f"/rooms/{q(room)}/unban", {"user_id": carol.user_id}, expect=403), "M_FORBIDDEN",
    )
    assert await membership(alice, room, carol) == "ban"
    assert await alice.post(f"/rooms/{q(room)}/unban", {"user_id": carol.user_id}) == {}
    assert await membership(alice, room, carol) == "leave"
    await carol.join(room)
    assert await membership(alice, room, carol) == "join"


async def test_ban_a_user_who_never_joined(hs: Matrix) -> None:
    alice, troll = await hs.users("alice", "troll")
    room = await alice.create_room(preset="public_chat")
    await alice.post(f"/rooms/{q(room)}/ban", {"user_id": troll.user_id})
    assert_error(await troll.join(room, expect=403), "M_FORBIDDEN")


async def test_membership_actions_need_a_user_id(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    for action in ("invite", "kick", "ban", "unban"):
        err = await alice.post(f"/rooms/{q(room)}/{action}", {}, expect=400)
        assert err["errcode"] in ("M_MISSING_PARAM", "M_BAD_JSON")


async def test_forget(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    err = await bob.post(f"/rooms/{q(room)}/forget", expect=400)
    assert err["errcode"] == "M_UNKNOWN"
    await bob.leave(room)
    include_leave = {"room": {"include_leave": True}}
    assert room in (await bob.sync(filter=include_leave))["rooms"]["leave"]
    assert await bob.post(f"/rooms/{q(room)}/forget") == {}
    assert room not in (await bob.sync(filter=include_leave))["rooms"]["leave"]
    await bob.join(room)  # forgetting does not stop a later join
    assert await bob.joined_rooms() == [room]


async def test_joined_rooms_lists_only_joined_rooms(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    one = await alice.create_room(preset="public_chat")
    two = await alice.create_room(preset="public_chat")
    invited = await alice.create_room(invite=[bob.user_id])
    await bob.join(one)
    await bob.join(two)
    assert sorted(await bob.joined_rooms()) == sorted([one, two])
    await bob.leave(one)
    assert await bob.joined_rooms() == [two]
    assert sorted(await alice.joined_rooms()) == sorted([one, two, invited])


async def test_members_and_joined_members(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(preset="public_chat", invite=[carol.user_id])
    await bob.join(room)
    chunk = (await alice.get(f"/rooms/{q(room)}/members"))["chunk"]
    assert {e["state_key"]: e["content"]["membership"] for e in chunk} == {
        alice.user_id: "join", bob.user_id: "join", carol.user_id: "invite",
    }
    assert all(e["type"] == "m.room.member" and e["room_id"] == room for e in chunk)
    only_joined = (await alice.get(f"/rooms/{q(room)}/members", params={"membership": "join"}))["chunk"]
    assert {e["state_key"] for e in only_joined} == {alice.user_id, bob.user_id}
    not_joined = (await alice.get(f"/rooms/{q(room)}/members", params={"not_membership": "join"}))["chunk"]
    assert [e["state_key"] for e in not_joined] == [carol.user_id]

    joined_members = (await bob.get(f"/rooms/{q(room)}/joined_members"))["joined"]
    assert set(joined_members) == {alice.user_id, bob.user_id}
    assert joined_members[alice.user_id]["display_name"] == "alice"
    assert joined_members[bob.user_id]["display_name"] == "bob"
    assert joined_members[bob.user_id].get("avatar_url") is None


async def test_outsiders_cannot_read_members_of_a_private_room(hs: Matrix) -> None:
    alice, eve = await hs.users("alice", "eve")
    room = await alice.create_room()
    assert_error(await eve.get(f"/rooms/{q(room)}/members", expect=403), "M_FORBIDDEN")
    assert_error(await eve.get(f"/rooms/{q(room)}/joined_members", expect=403), "M_FORBIDDEN")


async def test_inviting_someone_already_joined_is_forbidden(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    before = await alice.state_ids(room)
    assert_error(await alice.invite(room, bob, expect=403), "M_FORBIDDEN")
    assert await alice.state_ids(room) == before


async def test_a_former_member_sees_state_as_it_was_when_they_left(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat", topic="old topic")
    await bob.join(room)
    await bob.leave(room)
    await alice.put_state(room, "m.room.topic", {"topic": "new topic"})
    assert await bob.state(room, "m.room.topic") == {"topic": "old topic"}
    assert (await bob.room_state(room))[("m.room.topic", "")]["content"] == {"topic": "old topic"}
    assert await alice.state(room, "m.room.topic") == {"topic": "new topic"}


async def test_moderators_cannot_kick_or_ban_those_above_them(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(
        preset="public_chat", power_level_content_override={"users": {alice.user_id: 100, bob.user_id: 50}},
    )
    await bob.join(room)
    for action in ("kick", "ban"):
        err = await bob.post(f"/rooms/{q(room)}/{action}", {"user_id": alice.user_id}, expect=403)
        assert_error(err, "M_FORBIDDEN")
    assert await membership(bob, room, alice) == "join"


async def test_a_non_member_cannot_kick(hs: Matrix) -> None:
    alice, bob, mallory, zoe = await hs.users("alice", "bob", "mallory", "zoe")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    # Not joined: never in the room, then after leaving (with the kick power level kept).
    for target in (bob, alice, zoe):
        err = await mallory.post(f"/rooms/{q(room)}/kick", {"user_id": target.user_id}, expect=403)
        assert_error(err, "M_FORBIDDEN")
    levels = await alice.state(room, "m.room.power_levels")
    await alice.put_state(room, "m.room.power_levels", {**levels, "users": {**levels["users"], mallory.user_id: 100}})
    await mallory.join(room)
    await mallory.leave(room)
    for target in (bob, zoe):
        err = await mallory.post(f"/rooms/{q(room)}/kick", {"user_id": target.user_id}, expect=403)
        assert_error(err, "M_FORBIDDEN")
    assert await joined(alice, room) == {alice.user_id, bob.user_id}
    assert await membership(alice, room, zoe) is None
    for action in ("kick", "ban", "invite"):
        err = await mallory.post(f"/rooms/{q('!unknown:hs.test')}/{action}", {"user_id": bob.user_id}, expect=403)
        assert_error(err, "M_FORBIDDEN")


async def test_invite_events_carry_the_invitees_profile(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    await bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bobby"})
    await bob.put(f"/profile/{q(bob.user_id)}/avatar_url", {"avatar_url": "mxc://hs.test/bob"})
    room = await alice.create_room()
    await alice.invite(room, bob)
    member = await alice.state(room, "m.room.member", bob.user_id)
    assert member == {"membership": "invite", "displayname": "Bobby", "avatar_url": "mxc://hs.test/bob"}
    await alice.post(f"/rooms/{q(room)}/invite", {"user_id": carol.user_id, "reason": "lunch"})
    member = await alice.state(room, "m.room.member", carol.user_id)
    assert member == {"membership": "invite", "displayname": "carol", "reason": "lunch"}

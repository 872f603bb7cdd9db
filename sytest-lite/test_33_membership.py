"""Joining, inviting, leaving, kicking, banning; member lists."""

from sltools import quote, rand_localpart


async def test_join_room_by_id(user, make_user):
    """SyTest: POST /rooms/:room_id/join can join a room."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    j = (await bob.join_room_id(room)).expect(200)
    assert j["room_id"] == room
    assert room in await bob.joined_rooms()
    assert await user.membership(room, bob.user_id) == "join"


async def test_join_public_room_by_alias(hs, user, make_user):
    """SyTest: POST /join/:room_alias can join a room."""
    bob = await make_user()
    alias = f"#{rand_localpart('jal')}:{hs.server_name}"
    room = await user.create_room(preset="public_chat", room_alias_name=alias[1:].split(":")[0])
    j = (await bob.join(alias)).expect(200)
    assert j["room_id"] == room
    assert room in await bob.joined_rooms()


async def test_join_twice_is_idempotent(user, make_user):
    """SyTest: Joining room twice is idempotent."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    (await bob.join(room)).expect(200)
    assert await user.membership(room, bob.user_id) == "join"
    j = (await user.get(f"rooms/{quote(room)}/joined_members")).expect(200)
    assert set(j["joined"]) == {user.user_id, bob.user_id}


async def test_uninvited_user_cannot_join_invite_only_room(user, make_user):
    """SyTest: Uninvited users cannot join the room."""
    bob = await make_user()
    room = await user.create_room(preset="private_chat")
    (await bob.join(room)).expect_error(403, "M_FORBIDDEN")
    assert room not in await bob.joined_rooms()


async def test_invite_then_join(user, make_user):
    """SyTest: POST /rooms/:room_id/invite can send an invite; Can invite users to invite-only rooms."""
    bob = await make_user()
    room = await user.create_room(preset="private_chat")
    assert (await user.invite(room, bob.user_id)).expect(200) == {}
    assert await user.membership(room, bob.user_id) == "invite"
    (await bob.join(room)).expect(200)
    assert await user.membership(room, bob.user_id) == "join"
    assert room in await bob.joined_rooms()


async def test_invited_user_can_reject_invite(user, make_user):
    """SyTest: Invited user can reject invite."""
    bob = await make_user()
    room = await user.create_room(preset="private_chat")
    (await user.invite(room, bob.user_id)).expect(200)
    (await bob.leave(room)).expect(200)
    assert await user.membership(room, bob.user_id) == "leave"
    assert room not in await bob.joined_rooms()
    # The rejected invite is gone: bob cannot join now.
    (await bob.join(room)).expect_error(403, "M_FORBIDDEN")


async def test_leave_room(user, make_user):
    """SyTest: POST /rooms/:room_id/leave can leave a room."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    assert (await bob.leave(room)).expect(200) == {}
    assert room not in await bob.joined_rooms()
    assert await user.membership(room, bob.user_id) == "leave"
    # After leaving, bob can no longer send into the room.
    r = await bob.send_event(room, "m.room.message", {"msgtype": "m.text", "body": "x"})
    r.expect_error(403, "M_FORBIDDEN")


async def test_kick(user, make_user):
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    r = await user.post(f"rooms/{quote(room)}/kick", {"user_id": bob.user_id, "reason": "test"})
    assert r.expect(200) == {}
    ev = (await user.get_state(room, "m.room.member", bob.user_id)).expect(200)
    assert ev["membership"] == "leave"
    assert room not in await bob.joined_rooms()
    full = (
        await user.get(f"{user.state_path(room, 'm.room.member', bob.user_id)}?format=event")
    ).expect(200)
    if "sender" in full:  # ?format=event is optional; when honoured, the kicker is the sender
        assert full["sender"] == user.user_id


async def test_non_member_cannot_kick(user, make_user):
    """SyTest: Users cannot kick users from a room they are not in."""
    bob, carol = await make_user(), await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    r = await carol.post(f"rooms/{quote(room)}/kick", {"user_id": bob.user_id})
    r.expect_error(403, "M_FORBIDDEN")
    assert await user.membership(room, bob.user_id) == "join"


async def test_ban_prevents_rejoin_until_unban(user, make_user):
    """SyTest: Banned user is kicked and may not rejoin until unbanned."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    (await user.post(f"rooms/{quote(room)}/ban", {"user_id": bob.user_id, "reason": "x"})).expect(
        200
    )
    assert await user.membership(room, bob.user_id) == "ban"
    assert room not in await bob.joined_rooms()
    # The spec only requires 403 here; Synapse answers M_BAD_STATE rather than M_FORBIDDEN.
    (await bob.join(room)).expect_error(403, ("M_FORBIDDEN", "M_BAD_STATE"))
    (await user.post(f"rooms/{quote(room)}/unban", {"user_id": bob.user_id})).expect(200)
    assert await user.membership(room, bob.user_id) == "leave"
    (await bob.join(room)).expect(200)
    assert await user.membership(room, bob.user_id) == "join"


async def test_members_and_joined_members(user, make_user):
    """Complement TestGetRoomMembers: Can get rooms/{roomId}/members."""
    bob, carol = await make_user(), await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    (await user.invite(room, carol.user_id)).expect(200)
    j = (await user.get(f"rooms/{quote(room)}/members")).expect(200)
    members = {e["state_key"]: e["content"]["membership"] for e in j["chunk"]}
    assert members == {user.user_id: "join", bob.user_id: "join", carol.user_id: "invite"}
    for e in j["chunk"]:
        assert e["type"] == "m.room.member" and e["event_id"].startswith("$")
    j = (await user.get(f"rooms/{quote(room)}/members", params={"membership": "join"})).expect(200)
    assert {e["state_key"] for e in j["chunk"]} == {user.user_id, bob.user_id}
    j = (await bob.get(f"rooms/{quote(room)}/joined_members")).expect(200)
    assert set(j["joined"]) == {user.user_id, bob.user_id}
    assert isinstance(j["joined"][user.user_id], dict)

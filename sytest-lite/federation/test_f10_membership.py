"""Membership across servers: invite, join (by ID and by alias), reject, leave, kick."""

from fedtools import server_of, shared_room, wait_membership
from sltools import FEDERATION_DEADLINE, find_event, invited, quote, state_events


async def test_invite_across_servers_then_join(alice, bob):
    """SyTest: Remote users can join room by invite; invite_state reaches the invitee."""
    room = await alice.create_room(preset="private_chat", name="fed invite room")
    since = (await bob.sync())["next_batch"]
    (await alice.invite(room, bob.user_id)).expect(200)

    def got_invite(s):
        inv = invited(s, room)
        return inv and find_event(
            inv.get("invite_state", {}).get("events", []),
            type="m.room.member",
            state_key=bob.user_id,
        )

    _, member = await bob.sync_until(since, got_invite, deadline=FEDERATION_DEADLINE)
    assert member["content"]["membership"] == "invite"
    assert member["sender"] == alice.user_id

    r = await bob.join(room, via=[server_of(alice)])
    assert r.expect(200)["room_id"] == room
    await wait_membership(alice, room, bob.user_id, "join")
    await wait_membership(bob, room, bob.user_id, "join")
    assert room in await bob.joined_rooms()


async def test_join_public_room_by_id_with_via(alice, bob):
    """SyTest: Remote users can join a public room by ID (server_name / via)."""
    room = await shared_room(alice, bob)
    members = (await alice.get(f"rooms/{quote(room)}/joined_members")).expect(200)["joined"]
    assert set(members) == {alice.user_id, bob.user_id}
    members = (await bob.get(f"rooms/{quote(room)}/joined_members")).expect(200)["joined"]
    assert set(members) == {alice.user_id, bob.user_id}


async def test_remote_alias_lookup_and_join_by_alias(alice, bob):
    """SyTest: Remote room alias queries; Remote users can join room by alias."""
    localpart = alice.localpart.replace("sl", "fedalias", 1)
    room = await alice.create_room(preset="public_chat", room_alias_name=localpart)
    alias = f"#{localpart}:{server_of(alice)}"

    r = await bob.get(f"directory/room/{quote(alias)}")
    j = r.expect(200)
    assert j["room_id"] == room
    assert server_of(alice) in j["servers"], j

    r = await bob.join(alias)
    assert r.expect(200)["room_id"] == room
    await wait_membership(alice, room, bob.user_id, "join")


async def test_unknown_remote_alias_is_404(alice, bob):
    alias = f"#nosuchalias{alice.localpart}:{server_of(alice)}"
    r = await bob.get(f"directory/room/{quote(alias)}")
    r.expect_error(404, "M_NOT_FOUND")


async def test_reject_invite_across_servers(alice, bob):
    """SyTest: Remote invited user can reject invite."""
    room = await alice.create_room(preset="private_chat")
    since = (await bob.sync())["next_batch"]
    (await alice.invite(room, bob.user_id)).expect(200)
    await bob.sync_until(since, lambda s: invited(s, room), deadline=FEDERATION_DEADLINE)
    (await bob.leave(room)).expect(200)
    await wait_membership(alice, room, bob.user_id, "leave")


async def test_leave_across_servers(alice, bob):
    """SyTest: Remote user can leave; the room's server sees the leave."""
    room = await shared_room(alice, bob)
    since = (await alice.sync())["next_batch"]
    (await bob.leave(room)).expect(200)

    def saw_leave(s):
        ev = find_event(
            state_events(s, room) + _timeline(s, room), type="m.room.member", state_key=bob.user_id
        )
        return ev if ev and ev["content"].get("membership") == "leave" else None

    await alice.sync_until(since, saw_leave, deadline=FEDERATION_DEADLINE)
    await wait_membership(alice, room, bob.user_id, "leave")
    assert room not in await bob.joined_rooms()


async def test_kick_across_servers(alice, bob):
    """SyTest: Remote user can be kicked; the kicked user sees the room under rooms.leave."""
    room = await shared_room(alice, bob)
    since = (await bob.sync())["next_batch"]
    r = await alice.post(f"rooms/{quote(room)}/kick", {"user_id": bob.user_id, "reason": "x"})
    r.expect(200)

    def kicked(s):
        left = s.get("rooms", {}).get("leave", {}).get(room)
        if not left:
            return None
        evs = left.get("timeline", {}).get("events", []) + left.get("state", {}).get("events", [])
        return find_event(evs, type="m.room.member", state_key=bob.user_id)

    _, ev = await bob.sync_until(since, kicked, deadline=FEDERATION_DEADLINE)
    assert ev["content"]["membership"] == "leave"
    assert ev["sender"] == alice.user_id
    await wait_membership(bob, room, bob.user_id, "leave")


def _timeline(s, room):
    r = s.get("rooms", {}).get("join", {}).get(room) or {}
    return r.get("timeline", {}).get("events", [])

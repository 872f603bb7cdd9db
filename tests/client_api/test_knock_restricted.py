"""Knocking (spec "Knocking on rooms") and restricted rooms (spec "Restricted rooms"), on
one server; tests/federation/test_knock_federation.py takes them across servers."""

from __future__ import annotations

from tests.helpers import Matrix, User, assert_error, q


async def membership(user: User, room: str, target: User) -> str | None:
    event = (await user.room_state(room)).get(("m.room.member", target.user_id))
    return event["content"]["membership"] if event else None


async def test_knock_then_accept_with_an_invite(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="private_chat", name="Knock here")
    # The join rule is invite: no knocking.
    assert_error(await bob.post(f"/knock/{q(room)}", {}, expect=403), "M_FORBIDDEN")
    await alice.put_state(room, "m.room.join_rules", {"join_rule": "knock"})
    first = await bob.sync()
    assert await bob.post(f"/knock/{q(room)}", {"reason": "let me in"}) == {"room_id": room}
    member = await alice.state(room, "m.room.member", bob.user_id)
    assert member["membership"] == "knock" and member["reason"] == "let me in"
    # The knocker sees the knock in /sync with the room's stripped state, initial and incremental.
    for got in (await bob.sync(), await bob.sync(since=first["next_batch"])):
        events = got["rooms"]["knock"][room]["knock_state"]["events"]
        assert any(e["type"] == "m.room.name" and e["content"]["name"] == "Knock here" for e in events)
        assert any(e["type"] == "m.room.member" and e["state_key"] == bob.user_id
                   and e["content"]["membership"] == "knock" for e in events)
    assert_error(await bob.join(room, expect=403), "M_FORBIDDEN")  # a knock is not an invite
    await alice.invite(room, bob)  # accept
    synced = await bob.sync()
    assert room in synced["rooms"]["invite"] and room not in synced["rooms"]["knock"]
    await bob.join(room)
    assert await membership(alice, room, bob) == "join"


async def test_knock_rejected_by_a_kick_and_retracted_by_leaving(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(preset="private_chat")
    await alice.put_state(room, "m.room.join_rules", {"join_rule": "knock"})
    await bob.post(f"/knock/{q(room)}", {})
    await alice.post(f"/rooms/{q(room)}/kick", {"user_id": bob.user_id, "reason": "no"})  # reject
    assert await membership(alice, room, bob) == "leave"
    assert room not in (await bob.sync())["rooms"]["knock"]
    await carol.post(f"/knock/{q(room)}", {})
    await carol.leave(room)  # retract
    assert await membership(alice, room, carol) == "leave"
    # Banned users cannot knock; members need not.
    await alice.post(f"/rooms/{q(room)}/ban", {"user_id": carol.user_id})
    assert_error(await carol.post(f"/knock/{q(room)}", {}, expect=403), "M_FORBIDDEN")
    assert_error(await alice.post(f"/knock/{q(room)}", {}, expect=403), "M_FORBIDDEN")
    assert_error(await bob.post(f"/knock/{q('!nowhere:hs.test')}", {}, expect=404), "M_NOT_FOUND")


async def test_knock_restricted_admits_knocks_and_allowed_joins(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    space = await alice.create_room(preset="public_chat", name="Space")
    room = await alice.create_room(preset="private_chat")
    await alice.put_state(room, "m.room.join_rules", {
        "join_rule": "knock_restricted", "allow": [{"type": "m.room_membership", "room_id": space}],
    })
    await bob.join(space)
    await bob.join(room)  # a member of the allowed room joins without an invite
    member = await alice.state(room, "m.room.member", bob.user_id)
    assert member["membership"] == "join"
    assert member["join_authorised_via_users_server"] == alice.user_id
    assert_error(await carol.join(room, expect=403), "M_FORBIDDEN")
    await carol.post(f"/knock/{q(room)}", {})  # everyone else may knock
    assert await membership(alice, room, carol) == "knock"


async def test_restricted_room_allow_conditions(hs: Matrix) -> None:
    alice, bob, carol, dave = await hs.users("alice", "bob", "carol", "dave")
    space = await alice.create_room(preset="public_chat")
    room = await alice.create_room(preset="private_chat")
    await alice.put_state(room, "m.room.join_rules", {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}],
    })
    await bob.join(space)
    await bob.join(room)
    assert await membership(alice, room, bob) == "join"
    # Not in the allowed room: refused, and a knock is not allowed either.
    assert_error(await carol.join(room, expect=403), "M_FORBIDDEN")
    assert_error(await carol.post(f"/knock/{q(room)}", {}, expect=403), "M_FORBIDDEN")
    # Leaving the allowed room ends the right to join.
    await dave.join(space)
    await dave.leave(space)
    assert_error(await dave.join(room, expect=403), "M_FORBIDDEN")
    # An invite still works as in an invite-only room.
    await alice.invite(room, carol)
    await carol.join(room)
    assert await membership(alice, room, carol) == "join"

"""Spec "Ignoring Users": m.ignored_user_list drops the ignored users' events (state events
excepted) from /sync and /messages, and their invites from /sync."""

from __future__ import annotations

from tests.helpers import Matrix, User, bodies, q, timeline


async def ignore(user: User, *others: User) -> None:
    content = {"ignored_users": {o.user_id: {} for o in others}}
    await user.put(f"/user/{q(user.user_id)}/account_data/m.ignored_user_list", content)


async def test_ignored_users_messages_leave_sync_and_messages(hs: Matrix) -> None:
    alice, bob, troll = await hs.users("alice", "bob", "troll")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await troll.join(room)
    first = await alice.sync()
    await ignore(alice, troll)
    await troll.send(room, "spam")
    await bob.send(room, "hello")
    # State stays visible: the room's state must stay true.
    await troll.put_state(room, "m.room.member", {"membership": "join", "displayname": "T"}, troll.user_id)
    later = await alice.sync(since=first["next_batch"])
    events = timeline(later, room)
    assert bodies(events) == ["hello"]
    assert any(e["type"] == "m.room.member" and e["sender"] == troll.user_id for e in events)
    assert "spam" not in bodies((await alice.messages(room, limit=50))["chunk"])
    assert "spam" not in bodies(timeline(await alice.sync(), room))
    # bob does not ignore anyone: he sees everything.
    assert "spam" in bodies((await bob.messages(room, limit=50))["chunk"])
    # Un-ignoring brings the history back.
    await ignore(alice)
    assert "spam" in bodies((await alice.messages(room, limit=50))["chunk"])


async def test_invites_from_ignored_users_are_not_sent(hs: Matrix) -> None:
    alice, troll, bob = await hs.users("alice", "troll", "bob")
    await ignore(alice, troll)
    spam_room = await troll.create_room()
    await troll.invite(spam_room, alice)
    real_room = await bob.create_room()
    await bob.invite(real_room, alice)
    invites = (await alice.sync())["rooms"]["invite"]
    assert set(invites) == {real_room}

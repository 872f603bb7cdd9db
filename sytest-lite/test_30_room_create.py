"""POST /createRoom."""

from sltools import bodies, find_event, state_events, timeline_events


async def test_create_public_room(user):
    """SyTest: POST /createRoom makes a public room."""
    room = await user.create_room(visibility="public", preset="public_chat")
    # !opaque:server up to room version 11; version 12 ids are ! + the create event's hash.
    assert room.startswith("!") and len(room) > 1
    j = (await user.get_state(room, "m.room.join_rules")).expect(200)
    assert j["join_rule"] == "public"
    assert room in await user.joined_rooms()


async def test_create_private_room(user):
    """SyTest: POST /createRoom makes a private room."""
    room = await user.create_room(visibility="private", preset="private_chat")
    j = (await user.get_state(room, "m.room.join_rules")).expect(200)
    assert j["join_rule"] == "invite"


async def test_create_room_with_name(user):
    """SyTest: POST /createRoom makes a room with a name."""
    room = await user.create_room(name="Sytest Lite Room")
    j = (await user.get_state(room, "m.room.name")).expect(200)
    assert j == {"name": "Sytest Lite Room"}


async def test_create_room_with_topic(user):
    """SyTest: POST /createRoom makes a room with a topic."""
    room = await user.create_room(topic="Testing things")
    j = (await user.get_state(room, "m.room.topic")).expect(200)
    assert j["topic"] == "Testing things"


async def test_create_room_with_version_10(user):
    """SyTest: POST /createRoom creates a room with the given version."""
    room = await user.create_room(room_version="10")
    j = (await user.get_state(room, "m.room.create")).expect(200)
    assert j["room_version"] == "10"
    assert j["creator"] == user.user_id  # v1-v10 rooms carry the creator in content


async def test_create_room_unknown_version_rejected(user):
    """SyTest: POST /createRoom rejects attempts to create rooms with unknown versions."""
    r = await user.post("createRoom", {"room_version": "sytest-lite-no-such-version"})
    r.expect_error(400, "M_UNSUPPORTED_ROOM_VERSION")


async def test_create_room_reports_create_event_to_myself(user):
    """SyTest: Room creation reports m.room.create to myself (and Can /sync newly created room)."""
    room = await user.create_room(name="created")
    s = await user.sync()
    assert room in s["rooms"]["join"], "new room missing from initial sync"
    evs = state_events(s, room) + timeline_events(s, room)
    create = find_event(evs, type="m.room.create", state_key="")
    assert create is not None, evs
    assert create["sender"] == user.user_id
    member = find_event(evs, type="m.room.member", state_key=user.user_id)
    assert member is not None and member["content"]["membership"] == "join"
    assert bodies(evs) == []


async def test_create_room_with_invite_list(user, make_user):
    bob = await make_user()
    room = await user.create_room(preset="private_chat", invite=[bob.user_id])
    assert await user.membership(room, bob.user_id) == "invite"
    (await bob.join_room_id(room)).expect(200)
    assert await user.membership(room, bob.user_id) == "join"

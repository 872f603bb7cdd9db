"""createRoom: presets, initial state, invites, power levels and room versions."""

from __future__ import annotations

import pytest

from tests.helpers import Matrix, User, assert_error, q


async def created_events(user: User, room: str) -> list[tuple[str, str | None]]:
    """(type, state_key) of the room's events in order, oldest first."""
    chunk = (await user.messages(room, "f", limit=50))["chunk"]
    return [(e["type"], e.get("state_key")) for e in chunk]


async def test_private_chat_by_default(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room()
    # Version 12 by default: the room id is the create event's hash, without a server.
    assert (await alice.state(room, "m.room.create"))["room_version"] == "12"
    assert room.startswith("!") and ":" not in room and len(room) == 44
    assert (await alice.state(room, "m.room.join_rules"))["join_rule"] == "invite"
    assert (await alice.state(room, "m.room.history_visibility"))["history_visibility"] == "shared"
    assert (await alice.state(room, "m.room.guest_access"))["guest_access"] == "can_join"
    assert await alice.joined_rooms() == [room]
    assert_error(await bob.join(room, expect=403), "M_FORBIDDEN")
    assert await bob.joined_rooms() == []


async def test_public_chat_preset_lets_anyone_join(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    assert (await alice.state(room, "m.room.join_rules"))["join_rule"] == "public"
    assert (await alice.state(room, "m.room.guest_access"))["guest_access"] == "forbidden"
    assert await bob.join(room) == {"room_id": room}
    assert await bob.joined_rooms() == [room]


async def test_public_visibility_without_preset_means_public_chat(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(visibility="public")
    assert (await alice.state(room, "m.room.join_rules"))["join_rule"] == "public"
    await bob.join(room)


async def test_trusted_private_chat_gives_invitees_the_creators_power(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="trusted_private_chat", invite=[bob.user_id], room_version="11")
    pl = await alice.state(room, "m.room.power_levels")
    assert pl["users"] == {alice.user_id: 100, bob.user_id: 100}
    await bob.join(room)
    await bob.put_state(room, "m.room.name", {"name": "Bob may rename"})
    assert (await alice.state(room, "m.room.name"))["name"] == "Bob may rename"


async def test_default_power_levels(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room(preset="public_chat", room_version="11")
    pl = await alice.state(room, "m.room.power_levels")
    assert pl["users"] == {alice.user_id: 100}
    # v12: the creator's power is implied, never listed (rooms/v12 auth rule 10.4).
    v12 = await alice.state(await alice.create_room(preset="public_chat"), "m.room.power_levels")
    assert v12["users"] == {}
    assert (pl["users_default"], pl["events_default"], pl["state_default"]) == (0, 0, 50)
    assert (pl["ban"], pl["kick"], pl["redact"], pl["invite"]) == (50, 50, 50, 50)
    assert pl["events"]["m.room.power_levels"] == 100
    pl_private = await alice.state(await alice.create_room(preset="private_chat"), "m.room.power_levels")
    assert pl_private["invite"] == 0


async def test_name_topic_and_initial_state(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room(
        name="Lunch", topic="Where shall we eat?",
        initial_state=[
            {"type": "org.example.settings", "state_key": "", "content": {"colour": "blue"}},
            {"type": "org.example.pin", "state_key": "top", "content": {"event": "none"}},
        ],
    )
    assert await alice.state(room, "m.room.name") == {"name": "Lunch"}
    assert await alice.state(room, "m.room.topic") == {"topic": "Where shall we eat?"}
    assert await alice.state(room, "org.example.settings") == {"colour": "blue"}
    assert await alice.state(room, "org.example.pin", "top") == {"event": "none"}


async def test_creation_events_come_in_the_specified_order(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(
        preset="public_chat", room_alias_name="lunch", name="Lunch", topic="Food",
        initial_state=[{"type": "org.example.settings", "content": {"x": 1}}], invite=[bob.user_id],
    )
    assert await created_events(alice, room) == [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.canonical_alias", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.guest_access", ""),
        ("org.example.settings", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", bob.user_id),
    ]


async def test_room_alias_name_sets_canonical_alias_and_can_be_joined(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat", room_alias_name="lunch")
    assert await alice.state(room, "m.room.canonical_alias") == {"alias": "#lunch:hs.test"}
    assert await bob.join("#lunch:hs.test") == {"room_id": room}
    assert await bob.joined_rooms() == [room]


async def test_a_taken_alias_is_refused_and_no_room_is_created(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    first = await alice.create_room(room_alias_name="lunch")
    err = await alice.post("/createRoom", {"room_alias_name": "lunch"}, expect=400)
    assert_error(err, "M_ROOM_IN_USE")
    assert await alice.joined_rooms() == [first]


async def test_invite_list_invites_each_user(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(invite=[bob.user_id, carol.user_id])
    for invitee in (bob, carol):
        invites = (await invitee.sync())["rooms"]["invite"]
        assert list(invites) == [room]
        await invitee.join(room)
    joined = (await alice.get(f"/rooms/{q(room)}/joined_members"))["joined"]
    assert set(joined) == {alice.user_id, bob.user_id, carol.user_id}


async def test_is_direct_marks_the_invite(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="trusted_private_chat", is_direct=True, invite=[bob.user_id])
    member = await alice.state(room, "m.room.member", bob.user_id)
    assert member == {"membership": "invite", "is_direct": True}
    invite_state = (await bob.sync())["rooms"]["invite"][room]["invite_state"]["events"]
    mine = [e for e in invite_state if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert mine[0]["content"]["is_direct"] is True
    assert mine[0]["sender"] == alice.user_id


async def test_power_level_content_override(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(
        preset="public_chat",
        power_level_content_override={
            "events_default": 20, "users": {alice.user_id: 100, bob.user_id: 20},
        },
    )
    pl = await alice.state(room, "m.room.power_levels")
    assert pl["events_default"] == 20
    assert pl["users"] == {bob.user_id: 20}  # v12: the creator is dropped from users
    assert pl["state_default"] == 50  # untouched defaults stay
    await bob.join(room)
    await carol.join(room)
    await bob.send(room, "bob may speak")
    assert_error(await carol.send(room, "carol may not", expect=403), "M_FORBIDDEN")
    chunk = (await alice.messages(room, limit=5))["chunk"]
    assert [e["content"]["body"] for e in chunk if e["type"] == "m.room.message"] == ["bob may speak"]


async def test_room_version_11(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room(room_version="11")
    create = await alice.state(room, "m.room.create")
    assert create["room_version"] == "11"
    assert "creator" not in create  # v11 dropped it; the sender is the creator
    event = await alice.get(f"/rooms/{q(room)}/state/m.room.create/", params={"format": "event"})
    assert event["sender"] == alice.user_id
    await alice.send(room, "works in v11")


async def test_room_version_10_records_the_creator(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room(room_version="10", creation_content={"m.federate": False})
    create = await alice.state(room, "m.room.create")
    assert create == {"room_version": "10", "creator": alice.user_id, "m.federate": False}


async def test_default_room_version_is_advertised_in_capabilities(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    caps = (await alice.get("/capabilities"))["capabilities"]["m.room_versions"]
    assert set(caps["available"]) >= {"10", "11"}
    room = await alice.create_room()
    assert (await alice.state(room, "m.room.create"))["room_version"] == caps["default"]


async def test_unsupported_room_version_is_refused_and_no_room_is_created(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    for version in ("999", "13", 11):
        err = await alice.post("/createRoom", {"room_version": version}, expect=400)
        assert_error(err, "M_UNSUPPORTED_ROOM_VERSION")
    assert await alice.joined_rooms() == []


async def test_bad_create_room_bodies_are_refused(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    assert_error(await alice.post("/createRoom", {"name": 5}, expect=400), "M_BAD_JSON")
    assert_error(await alice.post("/createRoom", {"initial_state": {"a": 1}}, expect=400), "M_BAD_JSON")
    err = await alice.post("/createRoom", {"preset": "party"}, expect=400)
    assert err["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON")
    assert await alice.joined_rooms() == []


async def test_capabilities_advertise_only_what_is_served(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    caps = (await alice.get("/capabilities"))["capabilities"]
    assert caps["m.change_password"] == {"enabled": True}
    assert caps["m.set_displayname"] == {"enabled": True}
    assert caps["m.set_avatar_url"] == {"enabled": True}
    assert caps["m.3pid_changes"] == {"enabled": False}
    # Login tokens cannot be minted here, so clients must not offer QR sign-in.
    assert caps["m.get_login_token"] == {"enabled": False}
    r = await hs.raw("POST", "/_matrix/client/v1/login/get_token", {}, token=alice.token)
    assert r.status in (400, 404, 405)


async def test_public_rooms_server_parameter_and_networks(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room(preset="public_chat", visibility="public", name="Listed")
    assert [r["room_id"] for r in (await hs.call("GET", "/publicRooms", params={"server": "hs.test"}))["chunk"]] == [room]
    got = await alice.post("/publicRooms", {"filter": {"generic_search_term": "list"}}, params={"server": "hs.test"})
    assert [r["room_id"] for r in got["chunk"]] == [room]
    assert (await alice.post("/publicRooms", {"third_party_instance_id": "irc"}))["chunk"] == []
    assert [r["room_id"] for r in (await alice.post("/publicRooms", {"include_all_networks": True}))["chunk"]] == [room]
    err = await hs.call("GET", "/publicRooms", params={"server": "not a server!"}, expect=400)
    assert_error(err, "M_INVALID_PARAM")


async def test_v12_creator_is_not_in_power_levels_and_v11_room_has_a_server(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="trusted_private_chat", invite=[bob.user_id])
    create = await alice.state(room, "m.room.create")
    assert create["additional_creators"] == [bob.user_id]
    pl = await alice.state(room, "m.room.power_levels")
    assert alice.user_id not in pl["users"] and bob.user_id not in pl["users"]
    old = await alice.create_room(room_version="11")
    assert old.endswith(":hs.test")


@pytest.mark.parametrize("version", [str(n) for n in range(1, 13)])
async def test_every_stable_version_can_be_created_and_used(hs: Matrix, version: str) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(room_version=version, preset="public_chat", name="v" + version)
    await bob.join(room)
    await bob.send(room, "hello")
    await alice.put_state(room, "m.room.topic", {"topic": "t"})
    chunk = (await alice.messages(room, "b", limit=20))["chunk"]
    assert [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"] == ["hello"]
    assert (await alice.state(room, "m.room.create"))["room_version"] == version

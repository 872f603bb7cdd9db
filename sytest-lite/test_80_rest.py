"""The rest of the client-server API: defects found black-box (localparts, kicks, canonical
aliases, ignored users), server-side search, knocking, restricted rooms, room upgrades,
reports, the deprecated read APIs, VoIP and third-party networks."""

from sltools import quote, rand_localpart


def bodies(chunk):
    return [e["content"].get("body") for e in chunk if e.get("type") == "m.room.message"]


async def test_register_refuses_a_localpart_with_a_newline(hs):
    """Spec "User Identifiers": a localpart is [a-z0-9._=/+-]; a trailing newline is not."""
    for name in (rand_localpart("nl") + "\n", "a\nb" + rand_localpart()):
        r = await hs.request("POST", "register", json_body={
            "username": name, "password": "p4ssw0rd!", "auth": {"type": "m.login.dummy"},
        })
        r.expect_error(400, "M_INVALID_USERNAME")


async def test_non_member_cannot_kick(user, make_user):
    bob, mallory = await make_user(), await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    (await mallory.post(f"rooms/{quote(room)}/kick", {"user_id": bob.user_id})).expect_error(403, "M_FORBIDDEN")
    assert await user.membership(room, bob.user_id) == "join"


async def test_canonical_alias_must_point_to_the_room(hs, user):
    room = await user.create_room(preset="public_chat")
    missing = f"#{rand_localpart('nowhere')}:{hs.server_name}"
    (await user.put_state(room, "m.room.canonical_alias", {"alias": missing})).expect_error(400, "M_BAD_ALIAS")
    r = await user.put_state(room, "m.room.canonical_alias", {"alias": "not-an-alias"})
    r.expect_error(400, ("M_INVALID_PARAM", "M_BAD_ALIAS"))


async def test_ignored_users_messages_are_hidden(user, make_user):
    troll = await make_user()
    room = await user.create_room(preset="public_chat")
    (await troll.join(room)).expect(200)
    await troll.send_message(room, "noise before ignoring")
    (await user.put(f"user/{quote(user.user_id)}/account_data/m.ignored_user_list",
                    {"ignored_users": {troll.user_id: {}}})).expect(200)
    await troll.send_message(room, "noise")
    await user.send_message(room, "signal")
    chunk = (await user.messages(room, dir="b", limit=20)).expect(200)["chunk"]
    assert "signal" in bodies(chunk) and "noise" not in bodies(chunk)


async def test_search_room_events(user, make_user):
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    word = rand_localpart("w")
    await user.send_message(room, f"the {word} is here")
    await bob.send_message(room, f"{word} again")
    await user.send_message(room, "unrelated")
    body = {"search_categories": {"room_events": {"search_term": word, "order_by": "recent"}}}
    got = (await bob.post("search", body)).expect(200)["search_categories"]["room_events"]
    assert bodies([r["result"] for r in got["results"]]) == [f"{word} again", f"the {word} is here"]
    assert got["count"] == 2
    # A user outside the room finds nothing.
    eve = await make_user()
    none = (await eve.post("search", body)).expect(200)["search_categories"]["room_events"]
    assert none["results"] == []


async def test_knock_and_accept(user, make_user):
    bob = await make_user()
    room = await user.create_room(preset="private_chat", room_version="10")
    (await user.put_state(room, "m.room.join_rules", {"join_rule": "knock"})).expect(200)
    (await bob.post(f"knock/{quote(room)}", {"reason": "please"})).expect(200)
    assert await user.membership(room, bob.user_id) == "knock"
    synced, _ = await bob.sync_until(None, lambda s: room in s.get("rooms", {}).get("knock", {}))
    assert synced["rooms"]["knock"][room]["knock_state"]["events"]
    (await user.invite(room, bob.user_id)).expect(200)
    (await bob.join(room)).expect(200)
    assert await user.membership(room, bob.user_id) == "join"


async def test_restricted_room_admits_members_of_the_allowed_room(user, make_user):
    bob, carol = await make_user(), await make_user()
    space = await user.create_room(preset="public_chat")
    room = await user.create_room(preset="private_chat", room_version="10")
    (await user.put_state(room, "m.room.join_rules", {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}],
    })).expect(200)
    (await bob.join(space)).expect(200)
    (await bob.join(room)).expect(200)
    (await carol.join(room)).expect_error(403, "M_FORBIDDEN")


async def test_room_upgrade(user, make_user):
    bob = await make_user()
    room = await user.create_room(preset="public_chat", name="before upgrade", room_version="10")
    (await bob.join(room)).expect(200)
    (await bob.post(f"rooms/{quote(room)}/upgrade", {"new_version": "11"})).expect_error(403, "M_FORBIDDEN")
    new = (await user.post(f"rooms/{quote(room)}/upgrade", {"new_version": "11"})).expect(200)["replacement_room"]
    tomb = (await user.get_state(room, "m.room.tombstone")).expect(200)
    assert tomb["replacement_room"] == new
    create = (await user.get_state(new, "m.room.create")).expect(200)
    assert create["predecessor"]["room_id"] == room and create["room_version"] == "11"
    assert (await user.get_state(new, "m.room.name")).expect(200)["name"] == "before upgrade"


async def test_reports(user, make_user):
    bob, eve = await make_user(), await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    event_id = await bob.send_message(room, "report me")
    (await user.post(f"rooms/{quote(room)}/report/{quote(event_id)}", {"reason": "bad"})).expect(200)
    (await eve.post(f"rooms/{quote(room)}/report/{quote(event_id)}", {"reason": "bad"})).expect_error(404, "M_NOT_FOUND")
    (await eve.post(f"rooms/{quote(room)}/report", {"reason": "bad room"})).expect(200)


async def test_deprecated_event_and_room_initial_sync(user):
    room = await user.create_room(preset="private_chat", name="legacy")
    event_id = await user.send_message(room, "old clients")
    assert (await user.get(f"events/{quote(event_id)}")).expect(200)["content"]["body"] == "old clients"
    init = (await user.get(f"rooms/{quote(room)}/initialSync")).expect(200)
    assert init["room_id"] == room and init["membership"] == "join"
    assert "old clients" in bodies(init["messages"]["chunk"])
    assert any(e["type"] == "m.room.name" for e in init["state"])
    whole = (await user.get("initialSync", params={"limit": 1})).expect(200)
    assert room in [r["room_id"] for r in whole["rooms"]]


async def test_turn_server_and_thirdparty_protocols_without_configuration(user):
    turn = (await user.get("voip/turnServer")).expect(200)
    assert isinstance(turn, dict)
    assert (await user.get("thirdparty/protocols")).expect(200) == {}

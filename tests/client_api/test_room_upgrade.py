"""POST /rooms/{roomId}/upgrade (spec: "Room Upgrades")."""

from __future__ import annotations

from tests.helpers import Matrix, assert_error, q


async def test_upgrade_replaces_the_room_and_carries_its_state(hs: Matrix) -> None:
    alice, bob, carol, troll = await hs.users("alice", "bob", "carol", "troll")
    room = await alice.create_room(
        preset="private_chat", name="Old name", topic="Old topic", room_alias_name="team", room_version="10",
    )
    await alice.put(f"/directory/list/room/{q(room)}", {"visibility": "public"})
    await alice.invite(room, bob)
    await bob.join(room)
    await alice.invite(room, troll)
    await troll.join(room)
    await alice.post(f"/rooms/{q(room)}/ban", {"user_id": troll.user_id})
    await alice.put_state(room, "m.room.avatar", {"url": "mxc://hs.test/avatar"})
    await alice.put_state(room, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
    await alice.put_state(room, "m.room.server_acl", {"allow": ["*"], "deny": ["evil.test"]})

    assert_error(await bob.post(f"/rooms/{q(room)}/upgrade", {"new_version": "11"}, expect=403), "M_FORBIDDEN")
    assert_error(await carol.post(f"/rooms/{q(room)}/upgrade", {"new_version": "11"}, expect=403), "M_FORBIDDEN")
    bad = await alice.post(f"/rooms/{q(room)}/upgrade", {"new_version": "999"}, expect=400)
    assert_error(bad, "M_UNSUPPORTED_ROOM_VERSION")

    new = (await alice.post(f"/rooms/{q(room)}/upgrade", {"new_version": "11"}))["replacement_room"]
    assert new != room
    tombstone = await alice.state(room, "m.room.tombstone")
    assert tombstone["replacement_room"] == new
    create = await alice.state(new, "m.room.create")
    assert create["room_version"] == "11" and create["predecessor"]["room_id"] == room
    for event_type, content in (
        ("m.room.name", {"name": "Old name"}), ("m.room.topic", {"topic": "Old topic"}),
        ("m.room.avatar", {"url": "mxc://hs.test/avatar"}),
        ("m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"}),
        ("m.room.server_acl", {"allow": ["*"], "deny": ["evil.test"]}),
        ("m.room.canonical_alias", {"alias": "#team:hs.test"}),
    ):
        assert await alice.state(new, event_type) == content, event_type
    assert (await alice.state(new, "m.room.join_rules"))["join_rule"] == "invite"
    old_pl = await alice.state(room, "m.room.power_levels")
    new_pl = await alice.state(new, "m.room.power_levels")
    assert new_pl["users"] == old_pl["users"]
    # The old room is restricted: bob can no longer talk there.
    assert old_pl["events_default"] >= 50 and old_pl["invite"] >= 50
    assert_error(await bob.send(room, "still here?", expect=403), "M_FORBIDDEN")
    # Aliases and the directory listing move to the new room.
    assert (await alice.get(f"/directory/room/{q('#team:hs.test')}"))["room_id"] == new
    assert await alice.get(f"/directory/list/room/{q(new)}") == {"visibility": "public"}
    assert await alice.get(f"/directory/list/room/{q(room)}") == {"visibility": "private"}
    assert await alice.state(room, "m.room.canonical_alias") == {}
    # Local members are invited, bans carry over.
    assert new in (await bob.sync())["rooms"]["invite"]
    await bob.join(new)
    assert_error(await troll.join(new, expect=403), "M_FORBIDDEN")
    assert (await alice.state(new, "m.room.member", troll.user_id))["membership"] == "ban"

"""Profiles of remote users (federation profile queries) and display names in rooms."""

from fedtools import server_of, shared_room
from sltools import eventually, quote


async def test_remote_profile_lookup(alice, bob):
    """SyTest: GET /profile/:user_id/displayname publicly accessible (remote user)."""
    name = f"Bob {bob.localpart[-6:]}"
    (await bob.set_displayname(name)).expect(200)

    async def full():
        r = await alice.profile(bob.user_id)
        return r.json if r.status == 200 and r.json.get("displayname") == name else None

    await eventually(full, what="alice's server returns bob's new display name")
    r = await alice.profile(bob.user_id, "displayname")
    assert r.expect(200) == {"displayname": name}


async def test_remote_profile_of_unknown_user_is_404(alice, bob):
    r = await alice.profile(f"@nosuchuser{bob.localpart}:{server_of(bob)}")
    assert r.status == 404, r.text
    assert r.errcode in ("M_NOT_FOUND", "M_UNKNOWN"), r.text


async def test_display_name_in_remote_member_event(alice, bob):
    """The joiner's display name travels in its member event to the room's server."""
    name = f"Remote Bob {bob.localpart[-6:]}"
    (await bob.set_displayname(name)).expect(200)
    room = await shared_room(alice, bob)
    r = await alice.get_state(room, "m.room.member", bob.user_id)
    assert r.expect(200).get("displayname") == name
    members = (await alice.get(f"rooms/{quote(room)}/joined_members")).expect(200)["joined"]
    assert members[bob.user_id].get("display_name") == name

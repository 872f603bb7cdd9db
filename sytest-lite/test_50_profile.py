"""Profiles: displayname, avatar_url, and their reflection in room membership."""

from sltools import CS, quote, rand_localpart


async def test_set_and_get_displayname(hs, user):
    """SyTest: PUT /profile/:user_id/displayname sets my name;
    GET /profile/:user_id/displayname publicly accessible."""
    path = f"profile/{quote(user.user_id)}/displayname"
    assert (await user.put(path, {"displayname": "Sytest Lite Tester"})).expect(200) == {}
    assert (await user.get(path)).expect(200) == {"displayname": "Sytest Lite Tester"}
    # Readable without auth.
    j = (await hs.request("GET", f"{CS}/{path}")).expect(200)
    assert j["displayname"] == "Sytest Lite Tester"


async def test_set_and_get_avatar_url(hs, user):
    """SyTest: PUT /profile/:user_id/avatar_url sets my avatar."""
    path = f"profile/{quote(user.user_id)}/avatar_url"
    mxc = f"mxc://{hs.server_name}/SytestLiteAvatar"
    assert (await user.put(path, {"avatar_url": mxc})).expect(200) == {}
    assert (await user.get(path)).expect(200) == {"avatar_url": mxc}
    j = (await user.get(f"profile/{quote(user.user_id)}")).expect(200)
    assert j["avatar_url"] == mxc


async def test_full_profile(user):
    await user.put(f"profile/{quote(user.user_id)}/displayname", {"displayname": "Full P"})
    j = (await user.get(f"profile/{quote(user.user_id)}")).expect(200)
    assert j["displayname"] == "Full P"


async def test_cannot_set_other_users_displayname(user, make_user):
    bob = await make_user()
    r = await user.put(f"profile/{quote(bob.user_id)}/displayname", {"displayname": "hijacked"})
    # Spec v1.16 gives 403 for this; Synapse answers 400 M_FORBIDDEN. Both refuse it.
    assert r.status in (400, 403), r.text
    assert r.errcode == "M_FORBIDDEN", r.text
    j = (await bob.get(f"profile/{quote(bob.user_id)}")).expect(200)
    assert j.get("displayname") != "hijacked"


async def test_unknown_user_profile_is_404(hs, user):
    ghost = f"@{rand_localpart('ghost')}:{hs.server_name}"
    r = await user.get(f"profile/{quote(ghost)}")
    # The spec requires 404 (its example uses M_NOT_FOUND); Synapse sends M_UNKNOWN.
    r.expect_error(404, ("M_NOT_FOUND", "M_UNKNOWN"))


async def test_displayname_change_updates_member_event(user, make_user):
    """Complement TestDisplayNameUpdate: displayname updates affect room member events."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    since = (await bob.sync())["next_batch"]
    (
        await user.put(f"profile/{quote(user.user_id)}/displayname", {"displayname": "Renamed"})
    ).expect(200)

    # The new member event may be sent just after the PUT returns; wait for it in /sync.
    def seen(s):
        evs = (s["rooms"].get("join", {}).get(room) or {}).get("timeline", {}).get("events", [])
        return next(
            (e for e in evs if e["type"] == "m.room.member" and e["state_key"] == user.user_id),
            None,
        )

    _, ev = await bob.sync_until(since, seen)
    assert ev["content"]["displayname"] == "Renamed"
    assert ev["content"]["membership"] == "join"
    member = (await bob.get_state(room, "m.room.member", user.user_id)).expect(200)
    assert member["membership"] == "join"
    assert member["displayname"] == "Renamed"
    j = (await bob.get(f"rooms/{quote(room)}/joined_members")).expect(200)
    assert j["joined"][user.user_id]["display_name"] == "Renamed"

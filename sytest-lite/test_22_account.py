"""Devices, password change without logging out, deactivation leaving rooms, 3PIDs without
an identity server, OpenID tokens, account data and room tags."""

from sltools import CS, eventually, quote


def _auth(user):
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password}


async def _alive(hs, token):
    return (await hs.request("GET", f"{CS}/account/whoami", token=token)).status == 200


async def test_delete_devices(hs, user):
    """SyTest: Can delete multiple devices."""
    tokens = [(await hs.login(user.localpart, device_id=d)).expect(200)["access_token"] for d in ("SLDA", "SLDB")]
    first = await user.post("delete_devices", {"devices": ["SLDA", "SLDB"]})
    assert first.status == 401 and "session" in first.json, first.text
    auth = {**_auth(user), "session": first.json["session"]}
    (await user.post("delete_devices", {"devices": ["SLDA", "SLDB"], "auth": auth})).expect(200)
    for token in tokens:
        assert not await _alive(hs, token)
    devices = [d["device_id"] for d in (await user.get("devices")).expect(200)["devices"]]
    assert "SLDA" not in devices and "SLDB" not in devices and user.device_id in devices


async def test_password_change_keeping_devices(hs, user):
    other = (await hs.login(user.localpart)).expect(200)["access_token"]
    first = await user.post("account/password", {"new_password": "sl-new-pass-1", "logout_devices": False})
    assert first.status == 401, first.text
    body = {"new_password": "sl-new-pass-1", "logout_devices": False,
            "auth": {**_auth(user), "session": first.json["session"]}}
    (await user.post("account/password", body)).expect(200)
    assert await _alive(hs, other) and await _alive(hs, user.access_token)


async def test_deactivation_leaves_rooms(hs, user, make_user):
    bob = await make_user()
    room = await bob.create_room(preset="public_chat")
    (await user.join(room)).expect(200)
    first = await user.post("account/deactivate", {})
    assert first.status == 401, first.text
    (await user.post("account/deactivate", {"auth": {**_auth(user), "session": first.json["session"]}})).expect(200)

    async def left():
        return await bob.membership(room, user.user_id) == "leave"

    # Synapse parts the rooms in a background task after answering; the spec says only that
    # the server leaves them.
    await eventually(left, what="the deactivated user's leave event")


async def test_threepids_without_identity_server(hs, user):
    """A server may support no 3PIDs; it must still answer these endpoints with Matrix errors."""
    assert (await user.get("account/3pid")).expect(200) == {"threepids": []}
    body = {"client_secret": "sl-secret", "email": "nobody@example.invalid", "send_attempt": 1}
    r = await hs.request("POST", f"{CS}/register/email/requestToken", json_body=body)
    # Spec: 403 M_THREEPID_DENIED; Synapse without email support answers 400. Either is a refusal.
    assert r.status in (400, 403) and isinstance(r.errcode, str), r.text


async def test_openid_token_is_accepted_by_userinfo(hs, user):
    """Spec: OpenID; the token is checked at the server's federation /openid/userinfo."""
    got = (await user.post(f"user/{quote(user.user_id)}/openid/request_token", {})).expect(200)
    assert got["token_type"] == "Bearer" and isinstance(got["expires_in"], int)
    info = await hs.request("GET", "/_matrix/federation/v1/openid/userinfo",
                            params={"access_token": got["access_token"]})
    assert info.expect(200)["sub"] == user.user_id
    bad = await hs.request("GET", "/_matrix/federation/v1/openid/userinfo", params={"access_token": "nope"})
    bad.expect_error(401, "M_UNKNOWN_TOKEN")


async def test_room_tags(user):
    """SyTest: Can add tag; Can remove tag; Tags appear in an initial v2 /sync."""
    room = await user.create_room()
    base = f"user/{quote(user.user_id)}/rooms/{quote(room)}/tags"
    (await user.put(f"{base}/m.favourite", {"order": 0.5})).expect(200)
    (await user.put(f"{base}/u.work", {})).expect(200)
    assert (await user.get(base)).expect(200)["tags"] == {"m.favourite": {"order": 0.5}, "u.work": {}}
    (await user.request("DELETE", f"{base}/u.work")).expect(200)
    assert (await user.get(base)).expect(200)["tags"] == {"m.favourite": {"order": 0.5}}
    sync = await user.sync()
    events = sync["rooms"]["join"][room]["account_data"]["events"]
    assert {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.5}}}} in events


async def test_account_data_in_incremental_sync(user):
    """SyTest: Latest account data comes down in /sync; room account data too."""
    room = await user.create_room()
    since = (await user.sync())["next_batch"]
    (await user.put(f"user/{quote(user.user_id)}/account_data/org.sytest.a", {"v": 1})).expect(200)
    (await user.put(f"user/{quote(user.user_id)}/rooms/{quote(room)}/account_data/org.sytest.r", {"v": 2})).expect(200)

    def seen(s):
        room_events = s["rooms"]["join"].get(room, {}).get("account_data", {}).get("events", [])
        return ({"type": "org.sytest.a", "content": {"v": 1}} in s["account_data"]["events"]
                and {"type": "org.sytest.r", "content": {"v": 2}} in room_events)

    await user.sync_until(since, seen)
    (await user.put(f"user/{quote(user.user_id)}/account_data/m.push_rules", {})).expect_error(405, "M_BAD_JSON")


async def test_user_directory_hides_strangers(user, make_user):
    stranger = await make_user()
    (await stranger.set_displayname("Hidden Stranger " + stranger.localpart)).expect(200)
    await stranger.create_room(preset="private_chat")
    found = (await user.post("user_directory/search", {"search_term": stranger.localpart})).expect(200)
    assert stranger.user_id not in [r["user_id"] for r in found["results"]]
    room = await user.create_room(preset="private_chat", invite=[stranger.user_id])
    (await stranger.join(room)).expect(200)

    async def listed():
        got = (await user.post("user_directory/search", {"search_term": stranger.localpart})).expect(200)
        return stranger.user_id in [r["user_id"] for r in got["results"]]

    await eventually(listed, what="the new room-mate in the directory")

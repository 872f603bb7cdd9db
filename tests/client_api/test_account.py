"""Devices, password, deactivation, 3PIDs and OpenID tokens (spec: "Device management",
"Account registration and management", "OpenID")."""

from __future__ import annotations

from typing import Any

from tests.helpers import PASSWORD, Matrix, User, assert_error, q


def _auth(user: User, password: str = PASSWORD) -> dict[str, Any]:
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": password}


async def _alive(hs: Matrix, user: User) -> bool:
    r = await hs.raw("GET", "/account/whoami", token=user.token)
    if r.status == 401:
        assert_error(r.json, "M_UNKNOWN_TOKEN")
    return r.status == 200


async def test_password_change_can_keep_the_other_devices(hs: Matrix) -> None:
    alice = await hs.register("alice", device_id="PHONE")
    laptop = await hs.login_user("alice", device_id="LAPTOP")
    await alice.post("/account/password", {"new_password": "n3w", "logout_devices": False, "auth": _auth(alice)})
    assert await _alive(hs, laptop) and await _alive(hs, alice)
    assert (await hs.login("alice", "n3w"))["user_id"] == alice.user_id


async def test_password_change_with_bad_input_changes_nothing(hs: Matrix) -> None:
    alice = await hs.register("alice")
    laptop = await hs.login_user("alice")
    bad = {"new_password": "n3w", "logout_devices": "no", "auth": _auth(alice)}
    assert_error(await alice.post("/account/password", bad, expect=400), "M_BAD_JSON")
    assert_error(await alice.post("/account/password", {"new_password": 5, "auth": _auth(alice)}, expect=400), "M_BAD_JSON")
    assert await _alive(hs, laptop)
    await hs.login("alice", PASSWORD)
    # Without auth: the UIA challenge, and still nothing changed.
    challenge = await alice.post("/account/password", {"new_password": "n3w"}, expect=401)
    assert {"stages": ["m.login.password"]} in challenge["flows"]
    await hs.login("alice", PASSWORD)


async def test_delete_devices_needs_the_password_and_revokes_their_tokens(hs: Matrix) -> None:
    alice = await hs.register("alice", device_id="PHONE")
    laptop = await hs.login_user("alice", device_id="LAPTOP")
    tablet = await hs.login_user("alice", device_id="TABLET")
    challenge = await alice.post("/delete_devices", {"devices": ["LAPTOP", "TABLET"]}, expect=401)
    assert challenge["session"]
    assert await _alive(hs, laptop)
    wrong = {"devices": ["LAPTOP"], "auth": _auth(alice, "wrong")}
    r = await hs.raw("POST", "/delete_devices", wrong, token=alice.token)
    assert r.status in (401, 403)
    assert_error(await alice.post("/delete_devices", {"devices": "LAPTOP"}, expect=400), "M_BAD_JSON")
    assert await _alive(hs, laptop)

    await alice.post("/delete_devices", {"devices": ["LAPTOP", "TABLET", "NEVER-EXISTED"], "auth": _auth(alice)})
    assert not await _alive(hs, laptop) and not await _alive(hs, tablet)
    assert [d["device_id"] for d in (await alice.get("/devices"))["devices"]] == ["PHONE"]


async def test_deleting_an_unknown_device_succeeds(hs: Matrix) -> None:
    alice = await hs.register("alice", device_id="PHONE")
    await hs.call("DELETE", "/devices/GONE", {"auth": _auth(alice)}, token=alice.token)
    assert [d["device_id"] for d in (await alice.get("/devices"))["devices"]] == ["PHONE"]


async def test_deactivation_leaves_rooms_and_rejects_invites(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await bob.create_room(preset="public_chat")
    invited = await bob.create_room(preset="private_chat", invite=[alice.user_id])
    await alice.join(room)
    await alice.post("/account/deactivate", {"auth": _auth(alice)})
    assert (await bob.state(room, "m.room.member", alice.user_id))["membership"] == "leave"
    assert (await bob.state(invited, "m.room.member", alice.user_id))["membership"] == "leave"
    assert not await _alive(hs, alice)
    # Not erased: the profile stays.
    assert (await bob.get(f"/profile/{q(alice.user_id)}"))["displayname"] == "alice"


async def test_deactivation_with_erase_clears_the_profile(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    await alice.put(f"/profile/{q(alice.user_id)}/avatar_url", {"avatar_url": "mxc://hs.test/a"})
    await alice.post("/account/deactivate", {"erase": True, "auth": _auth(alice)})
    profile = await hs.raw("GET", f"/profile/{q(alice.user_id)}", token=bob.token)
    assert "displayname" not in (profile.json or {}) and "avatar_url" not in (profile.json or {})


async def test_deactivation_with_bad_input_changes_nothing(hs: Matrix) -> None:
    alice = await hs.register("alice")
    assert_error(await alice.post("/account/deactivate", {"erase": "yes", "auth": _auth(alice)}, expect=400), "M_BAD_JSON")
    assert await _alive(hs, alice)


async def test_threepid_endpoints_answer_the_spec_errors(hs: Matrix) -> None:
    alice = await hs.register("alice")
    assert await alice.get("/account/3pid") == {"threepids": []}
    email = {"client_secret": "s3cret", "email": "a@example.org", "send_attempt": 1}
    phone = {"client_secret": "s3cret", "country": "GB", "phone_number": "07700900001", "send_attempt": 1}
    for path, body in (("/register/email/requestToken", email), ("/register/msisdn/requestToken", phone),
                       ("/account/3pid/email/requestToken", email)):
        assert_error(await hs.call("POST", path, body, expect=403), "M_THREEPID_DENIED")
    r = await hs.call("POST", "/account/password/email/requestToken", email, expect=400)
    assert_error(r, "M_THREEPID_NOT_FOUND")
    assert_error(await hs.call("POST", "/register/email/requestToken", {**email, "send_attempt": "1"}, expect=400), "M_BAD_JSON")
    session = {"client_secret": "s3cret", "sid": "1"}
    assert_error(await alice.post("/account/3pid/add", session, expect=400), "M_THREEPID_AUTH_FAILED")
    assert_error(await alice.post("/account/3pid", {"three_pid_creds": session}, expect=400), "M_THREEPID_AUTH_FAILED")
    bind = {**session, "id_server": "id.example.org", "id_access_token": "t"}
    assert_error(await alice.post("/account/3pid/bind", bind, expect=400), "M_SERVER_NOT_TRUSTED")
    pid = {"medium": "email", "address": "a@example.org"}
    for path in ("/account/3pid/delete", "/account/3pid/unbind"):
        assert await alice.post(path, pid) == {"id_server_unbind_result": "no-support"}
    assert_error(await alice.post("/account/3pid/delete", {"medium": 1, "address": "x"}, expect=400), "M_BAD_JSON")
    await hs.call("POST", "/account/3pid/add", session, expect=401)
    assert await alice.get("/account/3pid") == {"threepids": []}


async def test_openid_token_is_accepted_by_federation_userinfo(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    got = await alice.post(f"/user/{q(alice.user_id)}/openid/request_token", {})
    assert got["token_type"] == "Bearer" and got["matrix_server_name"] == hs.server_name
    assert got["expires_in"] > 0
    info = await hs.call("GET", "/_matrix/federation/v1/openid/userinfo", params={"access_token": got["access_token"]})
    assert info == {"sub": alice.user_id}
    # Neither token works as the other.
    for token in ("garbage", alice.token):
        r = await hs.call("GET", "/_matrix/federation/v1/openid/userinfo", params={"access_token": token}, expect=401)
        assert_error(r, "M_UNKNOWN_TOKEN")
    assert_error(await hs.call("GET", "/account/whoami", token=got["access_token"], expect=401), "M_UNKNOWN_TOKEN")
    assert_error(await bob.post(f"/user/{q(alice.user_id)}/openid/request_token", {}, expect=403), "M_FORBIDDEN")


async def test_delete_device_completes_uia_with_every_password_stage_shape(hs: Matrix) -> None:
    """The challenge's session, then the password stage as clients send it (identifier with a
    localpart or a user id, the deprecated top-level `user`, or no user at all)."""
    alice = await hs.register("alice", device_id="PHONE")
    stages: list[dict[str, Any]] = [
        {"identifier": {"type": "m.id.user", "user": "alice"}},
        {"identifier": {"type": "m.id.user", "user": alice.user_id}},
        {"user": "alice"},
        {"user": alice.user_id},
        {},
    ]
    for n, who in enumerate(stages):
        other = await hs.login_user("alice", device_id=f"D{n}")
        challenge = await hs.raw("DELETE", f"/devices/D{n}", token=alice.token)
        assert challenge.status == 401 and challenge.json["session"], challenge.text
        auth = {"type": "m.login.password", "password": PASSWORD, "session": challenge.json["session"], **who}
        assert await hs.call("DELETE", f"/devices/D{n}", {"auth": auth}, token=alice.token) == {}
        assert not await _alive(hs, other)
    wrong = {"type": "m.login.password", "user": "alice", "password": "nope"}
    await hs.login_user("alice", device_id="KEEP")
    assert_error(await hs.call("DELETE", "/devices/KEEP", {"auth": wrong}, token=alice.token, expect=403), "M_FORBIDDEN")
    assert sorted(d["device_id"] for d in (await alice.get("/devices"))["devices"]) == ["KEEP", "PHONE"]

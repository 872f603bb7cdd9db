"""Login, whoami, logout, password change, deactivation."""

import secrets

from sltools import CS, rand_localpart


async def test_login_flows(hs):
    """SyTest: GET /login yields a set of flows."""
    j = (await hs.request("GET", f"{CS}/login")).expect(200)
    assert isinstance(j["flows"], list)
    assert all(isinstance(f["type"], str) for f in j["flows"])
    assert "m.login.password" in [f["type"] for f in j["flows"]]


async def _check_login(hs, u, r):
    j = r.expect(200)
    assert j["user_id"] == u.user_id
    assert isinstance(j["access_token"], str) and j["access_token"] != u.access_token
    assert isinstance(j["device_id"], str) and j["device_id"]
    who = (await hs.request("GET", f"{CS}/account/whoami", token=j["access_token"])).expect(200)
    assert who["user_id"] == u.user_id
    assert who["device_id"] == j["device_id"]
    return j


async def test_login_by_localpart(hs, user):
    """SyTest: POST /login can log in as a user."""
    await _check_login(hs, user, await hs.login(user.localpart))


async def test_login_by_full_user_id(hs, user):
    await _check_login(hs, user, await hs.login(user.user_id))


async def test_login_returns_requested_device_id(hs, user):
    """SyTest: POST /login returns the same device_id as that in the request."""
    device = "SLDEV" + secrets.token_hex(3).upper()
    j = await _check_login(hs, user, await hs.login(user.localpart, device_id=device))
    assert j["device_id"] == device


async def test_login_wrong_password_rejected(hs, user):
    """SyTest: POST /login wrong password is rejected."""
    r = await hs.login(user.localpart, password="definitely-not-the-password")
    r.expect_error(403, "M_FORBIDDEN")


async def test_login_unknown_user_rejected(hs):
    """SyTest: POST /login as non-existing user is rejected."""
    r = await hs.login(rand_localpart("ghost"), password="whatever-password")
    r.expect_error(403, "M_FORBIDDEN")


async def test_whoami(user):
    j = (await user.get("account/whoami")).expect(200)
    assert j["user_id"] == user.user_id
    assert j["device_id"] == user.device_id
    assert j.get("is_guest", False) is False


async def test_logout_current_device(hs, user):
    """SyTest: Can logout current device."""
    other = (await hs.login(user.localpart)).expect(200)["access_token"]
    assert (await user.post("logout")).expect(200) == {}
    (await user.get("account/whoami")).expect_error(401, "M_UNKNOWN_TOKEN")
    # Only that device's token is gone.
    (await hs.request("GET", f"{CS}/account/whoami", token=other)).expect(200)


async def test_logout_all_devices(hs, user):
    """SyTest: Can logout all devices."""
    other = (await hs.login(user.localpart)).expect(200)["access_token"]
    assert (await user.post("logout/all")).expect(200) == {}
    (await user.get("account/whoami")).expect_error(401, "M_UNKNOWN_TOKEN")
    r = await hs.request("GET", f"{CS}/account/whoami", token=other)
    r.expect_error(401, "M_UNKNOWN_TOKEN")


async def test_logout_without_token_rejected(hs):
    """SyTest: Request to logout without an access token is rejected."""
    (await hs.request("POST", f"{CS}/logout", json_body={})).expect_error(401, "M_MISSING_TOKEN")


async def _uia(user, path, body):
    """Run a password-protected UIA endpoint: first call gives 401 + session."""
    first = await user.post(path, body)
    assert first.status == 401, first.text
    assert any("m.login.password" in f["stages"] for f in first.json["flows"]), first.json
    body = dict(body)
    body["auth"] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
        "session": first.json["session"],
    }
    return await user.post(path, body)


async def test_change_password(hs, user):
    """SyTest: After changing password, can't log in with old password."""
    new_pw = "sytest-lite-new-" + secrets.token_hex(6)
    r = await _uia(user, "account/password", {"new_password": new_pw, "logout_devices": False})
    r.expect(200)
    (await hs.login(user.localpart, password=user.password)).expect_error(403, "M_FORBIDDEN")
    (await hs.login(user.localpart, password=new_pw)).expect(200)


async def test_deactivate_account(hs, user):
    """SyTest: Can deactivate account."""
    r = await _uia(user, "account/deactivate", {})
    j = r.expect(200)
    assert j.get("id_server_unbind_result", "success") in ("success", "no-support")
    (await user.get("account/whoami")).expect_error(401, "M_UNKNOWN_TOKEN")
    # Spec (v1.x) allows M_USER_DEACTIVATED for a deactivated account's login attempt.
    r = await hs.login(user.localpart)
    r.expect_error(403, ("M_FORBIDDEN", "M_USER_DEACTIVATED"))

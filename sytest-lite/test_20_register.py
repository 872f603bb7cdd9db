"""Registration with the m.login.dummy user-interactive flow."""

from sltools import CS, DEFAULT_PASSWORD, rand_localpart


async def test_register_without_auth_yields_flows_and_session(hs):
    """SyTest: GET /register yields a set of flows (today: a POST without auth gives 401)."""
    r = await hs.request(
        "POST",
        f"{CS}/register",
        json_body={"username": rand_localpart(), "password": DEFAULT_PASSWORD},
    )
    assert r.status == 401, r.text
    j = r.json
    assert isinstance(j["flows"], list) and j["flows"]
    for flow in j["flows"]:
        assert isinstance(flow["stages"], list)
        assert all(isinstance(s, str) for s in flow["stages"])
    assert ["m.login.dummy"] in [f["stages"] for f in j["flows"]], (
        "sytest-lite needs open registration with a dummy-only flow"
    )
    assert isinstance(j["session"], str) and j["session"]
    assert isinstance(j.get("params", {}), dict)


async def test_register_completes_with_session(hs):
    localpart = rand_localpart()
    body = {"username": localpart, "password": DEFAULT_PASSWORD}
    first = await hs.request("POST", f"{CS}/register", json_body=body)
    assert first.status == 401, first.text
    body["auth"] = {"type": "m.login.dummy", "session": first.json["session"]}
    j = (await hs.request("POST", f"{CS}/register", json_body=body)).expect(200)
    assert j["user_id"].startswith(f"@{localpart}:")


async def test_register_creates_user(hs):
    """SyTest: POST /register can create a user."""
    u = await hs.register()
    assert u.user_id == f"@{u.localpart}:{hs.server_name}"
    assert u.access_token and u.device_id
    who = (await u.get("account/whoami")).expect(200)
    assert who["user_id"] == u.user_id


async def test_register_returns_requested_device_id(hs):
    """SyTest: POST /register returns the same device_id as that in the request."""
    u = await hs.register(device_id="SYTESTREGDEV")
    assert u.device_id == "SYTESTREGDEV"
    who = (await u.get("account/whoami")).expect(200)
    assert who["device_id"] == "SYTESTREGDEV"


async def test_register_downcases_capitals(hs):
    """SyTest: POST /register downcases capitals in usernames."""
    localpart = rand_localpart("Caps")
    mixed = "MiXeD" + localpart
    u = await hs.register(localpart=mixed)
    assert u.user_id == f"@{mixed.lower()}:{hs.server_name}"
    # The lower-case name can log in.
    (await hs.login(mixed.lower())).expect(200)


async def test_register_rejects_exclamation_mark(hs):
    """SyTest: POST /register rejects registration of usernames with '!'."""
    r = await hs.request(
        "POST",
        f"{CS}/register",
        json_body={
            "username": rand_localpart() + "!bang",
            "password": DEFAULT_PASSWORD,
            "auth": {"type": "m.login.dummy"},
        },
    )
    r.expect_error(400, "M_INVALID_USERNAME")


async def test_register_taken_name_is_user_in_use(hs):
    u = await hs.register()
    r = await hs.request(
        "POST",
        f"{CS}/register",
        json_body={
            "username": u.localpart,
            "password": DEFAULT_PASSWORD,
            "auth": {"type": "m.login.dummy"},
        },
    )
    if r.status == 401 and "session" in (r.json or {}):
        r = await hs.request(
            "POST",
            f"{CS}/register",
            json_body={
                "username": u.localpart,
                "password": DEFAULT_PASSWORD,
                "auth": {"type": "m.login.dummy", "session": r.json["session"]},
            },
        )
    r.expect_error(400, "M_USER_IN_USE")


async def test_register_available(hs):
    free = rand_localpart()
    j = (await hs.request("GET", f"{CS}/register/available", params={"username": free})).expect(200)
    assert j["available"] is True
    u = await hs.register()
    r = await hs.request("GET", f"{CS}/register/available", params={"username": u.localpart})
    r.expect_error(400, "M_USER_IN_USE")
    r = await hs.request("GET", f"{CS}/register/available", params={"username": "bad!name"})
    r.expect_error(400, "M_INVALID_USERNAME")

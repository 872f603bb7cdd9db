"""Registration: the dummy UIA flow, name rules, inhibit_login and refresh tokens."""

from __future__ import annotations

import pytest

from tests.helpers import PASSWORD, Matrix, assert_error


async def whoami(hs: Matrix, token: str, expect: int = 200) -> dict:
    return await hs.call("GET", "/account/whoami", token=token, expect=expect)


async def test_register_without_auth_gets_a_dummy_challenge_and_creates_nothing(hs: Matrix) -> None:
    challenge = await hs.call("POST", "/register", {"username": "alice", "password": PASSWORD}, expect=401)
    assert challenge["flows"] == [{"stages": ["m.login.dummy"]}]
    assert challenge["params"] == {}
    assert isinstance(challenge["session"], str) and challenge["session"]
    assert await hs.call("GET", "/register/available", params={"username": "alice"}) == {"available": True}


async def test_register_completes_the_dummy_stage_with_its_session(hs: Matrix) -> None:
    body = {"username": "alice", "password": PASSWORD}
    challenge = await hs.call("POST", "/register", body, expect=401)
    got = await hs.call("POST", "/register", {
        **body, "auth": {"type": "m.login.dummy", "session": challenge["session"]},
    })
    assert got["user_id"] == "@alice:hs.test"
    assert got["access_token"] and got["device_id"]
    assert "refresh_token" not in got
    me = await whoami(hs, got["access_token"])
    assert me == {"user_id": "@alice:hs.test", "device_id": got["device_id"], "is_guest": False}


async def test_register_accepts_dummy_auth_without_a_session_on_the_first_request(hs: Matrix) -> None:
    alice = await hs.register("alice")
    assert alice.user_id == "@alice:hs.test"
    assert (await alice.get("/account/whoami"))["user_id"] == alice.user_id


async def test_register_lower_cases_the_username(hs: Matrix) -> None:
    carol = await hs.register("Carol")
    assert carol.user_id == "@carol:hs.test"
    assert (await hs.login("carol"))["user_id"] == "@carol:hs.test"


async def test_register_without_username_generates_one(hs: Matrix) -> None:
    anon = await hs.register(None)
    assert anon.user_id.startswith("@") and anon.user_id.endswith(":hs.test")
    assert (await anon.get("/account/whoami"))["user_id"] == anon.user_id


async def test_register_with_a_taken_username_fails_and_keeps_the_first_account(hs: Matrix) -> None:
    await hs.register("alice", password="first password")
    err = await hs.call("POST", "/register", {
        "username": "alice", "password": "second password", "auth": {"type": "m.login.dummy"},
    }, expect=400)
    assert_error(err, "M_USER_IN_USE")
    assert (await hs.login("alice", "first password"))["user_id"] == "@alice:hs.test"
    assert_error(await hs.login("alice", "second password", expect=403), "M_FORBIDDEN")


async def test_register_rejects_invalid_usernames(hs: Matrix) -> None:
    # A trailing newline once slipped past a `$`-anchored pattern and created the user.
    for bad in ("bad name", "al!ce", "ünïcode", "x" * 300, "alice\n", "al\nice", ":x"):
        err = await hs.call("POST", "/register", {
            "username": bad, "password": PASSWORD, "auth": {"type": "m.login.dummy"},
        }, expect=400)
        assert_error(err, "M_INVALID_USERNAME")
    assert_error(await hs.login("alice", PASSWORD, expect=403), "M_FORBIDDEN")


async def test_register_available(hs: Matrix) -> None:
    assert await hs.call("GET", "/register/available", params={"username": "alice"}) == {"available": True}
    await hs.register("alice")
    taken = await hs.call("GET", "/register/available", params={"username": "alice"}, expect=400)
    assert_error(taken, "M_USER_IN_USE")
    bad = await hs.call("GET", "/register/available", params={"username": "no way"}, expect=400)
    assert_error(bad, "M_INVALID_USERNAME")


async def test_register_with_inhibit_login_returns_no_token_but_the_account_works(hs: Matrix) -> None:
    got = await hs.call("POST", "/register", {
        "username": "bot", "password": PASSWORD, "inhibit_login": True,
        "auth": {"type": "m.login.dummy"},
    })
    assert got["user_id"] == "@bot:hs.test"
    assert "access_token" not in got and "device_id" not in got
    assert (await hs.login("bot"))["user_id"] == "@bot:hs.test"


async def test_register_uses_the_requested_device(hs: Matrix) -> None:
    alice = await hs.register("alice", device_id="PHONE", initial_device_display_name="Alice's phone")
    assert alice.device_id == "PHONE"
    devices = (await alice.get("/devices"))["devices"]
    assert [(d["device_id"], d.get("display_name")) for d in devices] == [("PHONE", "Alice's phone")]


async def test_guest_registration_gives_a_guest(hs: Matrix) -> None:
    """On by default, as in Synapse (tests/client_api/test_guests.py has the rest)."""
    got = await hs.call("POST", "/register", {}, params={"kind": "guest"})
    me = await hs.call("GET", "/account/whoami", token=got["access_token"])
    assert me["user_id"] == got["user_id"] and me["is_guest"] is True


async def test_refresh_token_rotates_and_the_old_access_token_stops_working(hs: Matrix) -> None:
    got = await hs.call("POST", "/register", {
        "username": "alice", "password": PASSWORD, "refresh_token": True,
        "auth": {"type": "m.login.dummy"},
    })
    assert got["refresh_token"]
    assert isinstance(got["expires_in_ms"], int) and got["expires_in_ms"] > 0
    await whoami(hs, got["access_token"])

    fresh = await hs.call("POST", "/refresh", {"refresh_token": got["refresh_token"]})
    assert fresh["access_token"] != got["access_token"]
    assert fresh["refresh_token"] != got["refresh_token"]
    assert fresh["expires_in_ms"] > 0
    me = await whoami(hs, fresh["access_token"])
    assert me["user_id"] == "@alice:hs.test" and me["device_id"] == got["device_id"]

    assert_error(await whoami(hs, got["access_token"], expect=401), "M_UNKNOWN_TOKEN")
    again = await hs.call("POST", "/refresh", {"refresh_token": got["refresh_token"]}, expect=401)
    assert_error(again, "M_UNKNOWN_TOKEN")
    # Reusing a spent refresh token revokes the session (tests/access/test_accounts.py).
    assert_error(await whoami(hs, fresh["access_token"], expect=401), "M_UNKNOWN_TOKEN")


async def test_refresh_with_an_unknown_token_is_refused(hs: Matrix) -> None:
    err = await hs.call("POST", "/refresh", {"refresh_token": "tcr_nonsense"}, expect=401)
    assert_error(err, "M_UNKNOWN_TOKEN")


async def test_login_can_ask_for_a_refresh_token(hs: Matrix) -> None:
    await hs.register("alice")
    got = await hs.login("alice", refresh_token=True)
    assert got["refresh_token"] and got["expires_in_ms"] > 0
    fresh = await hs.call("POST", "/refresh", {"refresh_token": got["refresh_token"]})
    assert (await whoami(hs, fresh["access_token"]))["device_id"] == got["device_id"]


async def test_an_expired_refreshable_token_is_a_soft_logout_and_refresh_recovers(
    hs: Matrix, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import homeserver.services.auth as auth_module

    got = await hs.call("POST", "/register", {
        "username": "alice", "password": PASSWORD, "refresh_token": True,
        "auth": {"type": "m.login.dummy"},
    })
    later = auth_module.now_ms() + got["expires_in_ms"] + 60_000
    monkeypatch.setattr(auth_module, "now_ms", lambda: later)
    err = await whoami(hs, got["access_token"], expect=401)
    assert_error(err, "M_UNKNOWN_TOKEN")
    assert err.get("soft_logout") is True
    monkeypatch.undo()  # back to the real clock (new tokens are issued "now")
    fresh = await hs.call("POST", "/refresh", {"refresh_token": got["refresh_token"]})
    assert (await whoami(hs, fresh["access_token"]))["user_id"] == "@alice:hs.test"

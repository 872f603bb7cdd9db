"""Login, the three ways to present a token, logout and devices."""

from __future__ import annotations

import pytest

from tests.helpers import PASSWORD, Matrix, assert_error


async def whoami(hs: Matrix, **kw: object) -> dict:
    return await hs.call("GET", "/account/whoami", **kw)


async def test_login_flows_offer_password(hs: Matrix) -> None:
    flows = (await hs.call("GET", "/login"))["flows"]
    assert {"type": "m.login.password"} in flows


@pytest.mark.parametrize("identifier", ["alice", "@alice:hs.test", "alice@hs.test", "ALICE"])
async def test_login_accepts_every_form_of_the_user_name(hs: Matrix, identifier: str) -> None:
    await hs.register("alice")
    got = await hs.login(identifier)
    assert got["user_id"] == "@alice:hs.test"
    assert got["device_id"]
    me = await whoami(hs, token=got["access_token"])
    assert me["user_id"] == "@alice:hs.test" and me["device_id"] == got["device_id"]


async def test_login_accepts_the_deprecated_top_level_user(hs: Matrix) -> None:
    await hs.register("alice")
    got = await hs.call("POST", "/login", {"type": "m.login.password", "user": "alice", "password": PASSWORD})
    assert got["user_id"] == "@alice:hs.test"


async def test_login_with_a_wrong_password_or_unknown_user_is_forbidden(hs: Matrix) -> None:
    await hs.register("alice")
    assert_error(await hs.login("alice", "wrong", expect=403), "M_FORBIDDEN")
    assert_error(await hs.login("nobody", PASSWORD, expect=403), "M_FORBIDDEN")
    assert_error(await hs.login("@alice:other.server", PASSWORD, expect=403), "M_FORBIDDEN")


async def test_each_login_gets_its_own_device(hs: Matrix) -> None:
    alice = await hs.register("alice")
    laptop = await hs.login_user("alice")
    assert laptop.device_id != alice.device_id
    devices = {d["device_id"] for d in (await alice.get("/devices"))["devices"]}
    assert devices == {alice.device_id, laptop.device_id}


async def test_login_reusing_a_device_id_invalidates_that_devices_old_token(hs: Matrix) -> None:
    alice = await hs.register("alice", device_id="PHONE")
    other = await hs.login_user("alice", device_id="LAPTOP")
    again = await hs.login_user("alice", device_id="PHONE")
    assert again.device_id == "PHONE"
    assert_error(await whoami(hs, token=alice.token, expect=401), "M_UNKNOWN_TOKEN")
    assert (await again.get("/account/whoami"))["device_id"] == "PHONE"
    assert (await other.get("/account/whoami"))["device_id"] == "LAPTOP"
    devices = sorted(d["device_id"] for d in (await again.get("/devices"))["devices"])
    assert devices == ["LAPTOP", "PHONE"]


async def test_token_in_authorization_bearer_header(hs: Matrix) -> None:
    alice = await hs.register("alice")
    me = await whoami(hs, headers={"Authorization": f"Bearer {alice.token}"})
    assert me["user_id"] == alice.user_id


@pytest.mark.parametrize("form", ["Tricolor{}", "Tricolor {}", "{}", "<{}>"])
async def test_token_in_x_token_header(hs: Matrix, form: str) -> None:
    alice = await hs.register("alice")
    me = await whoami(hs, headers={"x-token": form.format(alice.token)})
    assert me["user_id"] == alice.user_id


async def test_token_in_query_string(hs: Matrix) -> None:
    alice = await hs.register("alice")
    me = await whoami(hs, params={"access_token": alice.token})
    assert me["user_id"] == alice.user_id


async def test_missing_token_is_401_missing_token(hs: Matrix) -> None:
    for method, path in (("GET", "/account/whoami"), ("GET", "/sync"), ("GET", "/joined_rooms")):
        assert_error(await hs.call(method, path, expect=401), "M_MISSING_TOKEN")
    err = await hs.call("POST", "/createRoom", {}, expect=401)
    assert_error(err, "M_MISSING_TOKEN")


async def test_bad_tokens_are_401_unknown_token(hs: Matrix) -> None:
    alice = await hs.register("alice")
    for token in ("garbage", alice.token[:-4] + "AAAA", "Bearer"):
        assert_error(await whoami(hs, token=token, expect=401), "M_UNKNOWN_TOKEN")
    for x_token in ("Tricolor garbage", "garbage"):
        assert_error(await whoami(hs, headers={"x-token": x_token}, expect=401), "M_UNKNOWN_TOKEN")
    assert_error(await whoami(hs, params={"access_token": "garbage"}, expect=401), "M_UNKNOWN_TOKEN")


async def test_logout_revokes_the_token_at_once_and_deletes_the_device(hs: Matrix) -> None:
    alice = await hs.register("alice", device_id="PHONE")
    laptop = await hs.login_user("alice", device_id="LAPTOP")
    await alice.get("/account/whoami")  # the token is live (and cached) before logout
    assert await alice.post("/logout") == {}
    assert_error(await whoami(hs, token=alice.token, expect=401), "M_UNKNOWN_TOKEN")
    assert_error(await whoami(hs, params={"access_token": alice.token}, expect=401), "M_UNKNOWN_TOKEN")
    assert (await laptop.get("/account/whoami"))["device_id"] == "LAPTOP"
    assert [d["device_id"] for d in (await laptop.get("/devices"))["devices"]] == ["LAPTOP"]


async def test_logout_accepts_an_empty_body(hs: Matrix) -> None:
    alice = await hs.register("alice")
    assert await hs.call("POST", "/logout", token=alice.token) == {}
    assert_error(await whoami(hs, token=alice.token, expect=401), "M_UNKNOWN_TOKEN")


async def test_logout_all_revokes_every_token_of_the_user_only(hs: Matrix) -> None:
    alice = await hs.register("alice")
    laptop = await hs.login_user("alice")
    bob = await hs.register("bob")
    for user in (alice, laptop, bob):
        await user.get("/account/whoami")
    assert await laptop.post("/logout/all") == {}
    for user in (alice, laptop):
        assert_error(await whoami(hs, token=user.token, expect=401), "M_UNKNOWN_TOKEN")
    assert (await bob.get("/account/whoami"))["user_id"] == "@bob:hs.test"
    again = await hs.login_user("alice")
    assert (await again.get("/account/whoami"))["user_id"] == "@alice:hs.test"


async def test_whoami(hs: Matrix) -> None:
    alice = await hs.register("alice", device_id="DEV1")
    assert await alice.get("/account/whoami") == {
        "user_id": "@alice:hs.test", "device_id": "DEV1", "is_guest": False,
    }


async def test_devices_list_and_rename(hs: Matrix) -> None:
    alice = await hs.register("alice", device_id="PHONE", initial_device_display_name="Phone")
    await hs.login_user("alice", device_id="LAPTOP", initial_device_display_name="Laptop")
    devices = {d["device_id"]: d for d in (await alice.get("/devices"))["devices"]}
    assert {k: v.get("display_name") for k, v in devices.items()} == {"PHONE": "Phone", "LAPTOP": "Laptop"}
    await alice.put("/devices/LAPTOP", {"display_name": "Work laptop"})
    assert (await alice.get("/devices/LAPTOP"))["display_name"] == "Work laptop"
    assert_error(await alice.get("/devices/NOPE", expect=404), "M_NOT_FOUND")


async def test_devices_of_other_users_are_invisible(hs: Matrix) -> None:
    await hs.register("alice", device_id="ALICEDEV")
    bob = await hs.register("bob", device_id="BOBDEV")
    assert [d["device_id"] for d in (await bob.get("/devices"))["devices"]] == ["BOBDEV"]
    assert_error(await bob.get("/devices/ALICEDEV", expect=404), "M_NOT_FOUND")


async def test_token_in_x_token_header_with_angle_brackets(hs: Matrix) -> None:
    alice = await hs.register("alice")
    me = await whoami(hs, headers={"x-token": f"Tricolor <{alice.token}>"})
    assert me["user_id"] == alice.user_id


async def test_deleting_a_device_needs_the_password_and_revokes_its_token(hs: Matrix) -> None:
    alice = await hs.register("alice", device_id="PHONE")
    laptop = await hs.login_user("alice", device_id="LAPTOP")
    challenge = await alice.delete("/devices/LAPTOP", expect=401)
    assert challenge["flows"] == [{"stages": ["m.login.password"]}] and challenge["session"]
    await laptop.get("/account/whoami")  # still alive after the challenge
    wrong = {"auth": {"type": "m.login.password", "session": challenge["session"],
                      "identifier": {"type": "m.id.user", "user": "alice"}, "password": "nope"}}
    r = await hs.raw("DELETE", "/devices/LAPTOP", wrong, token=alice.token)
    assert r.status in (401, 403), r.text
    await laptop.get("/account/whoami")
    right = {"auth": {**wrong["auth"], "password": PASSWORD}}
    assert await hs.call("DELETE", "/devices/LAPTOP", right, token=alice.token) == {}
    assert_error(await whoami(hs, token=laptop.token, expect=401), "M_UNKNOWN_TOKEN")
    assert [d["device_id"] for d in (await alice.get("/devices"))["devices"]] == ["PHONE"]


async def test_change_password_logs_out_other_devices(hs: Matrix) -> None:
    alice = await hs.register("alice", device_id="PHONE")
    laptop = await hs.login_user("alice", device_id="LAPTOP")
    body = {"new_password": "n3w password",
            "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                     "password": PASSWORD}}
    assert await alice.post("/account/password", body) == {}
    assert (await alice.get("/account/whoami"))["device_id"] == "PHONE"
    assert_error(await whoami(hs, token=laptop.token, expect=401), "M_UNKNOWN_TOKEN")
    assert_error(await hs.login("alice", PASSWORD, expect=403), "M_FORBIDDEN")
    assert (await hs.login("alice", "n3w password"))["user_id"] == alice.user_id

"""Login with an existing session (spec v1.7+ POST /_matrix/client/v1/login/get_token,
MSC3882; login type m.login.token): config-gated, user-interactive auth, single use,
expiry, and the capability and login flow that tell clients."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import attrs

from config.schema import HomeserverConfig, LoginViaExistingSessionConfig
from tests.helpers import PASSWORD, Matrix, assert_error

Start = Callable[[HomeserverConfig], Awaitable[Matrix]]
GET_TOKEN = "/_matrix/client/v1/login/get_token"


async def _enabled(hs_config: HomeserverConfig, start_hs: Start, **settings: object) -> Matrix:
    section = LoginViaExistingSessionConfig(enabled=True, **settings)  # type: ignore[arg-type]
    return await start_hs(attrs.evolve(hs_config, login_via_existing_session=section))


async def test_a_new_device_logs_in_with_a_token_from_a_signed_in_one(
    hs_config: HomeserverConfig, start_hs: Start,
) -> None:
    hs = await _enabled(hs_config, start_hs)
    (alice,) = await hs.users("alice")
    caps = (await alice.get("/capabilities"))["capabilities"]
    assert caps["m.get_login_token"] == {"enabled": True}
    flows = (await hs.call("GET", "/login"))["flows"]
    assert {"type": "m.login.token", "get_login_token": True} in flows

    # User-interactive auth first: a 401 with the password stage, then a wrong password.
    r = await hs.raw("POST", GET_TOKEN, {}, token=alice.token)
    assert r.status == 401 and r.json["flows"] == [{"stages": ["m.login.password"]}]
    session = r.json["session"]
    wrong = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
             "password": "not it", "session": session}
    assert (await hs.raw("POST", GET_TOKEN, {"auth": wrong}, token=alice.token)).status == 403

    auth = {**wrong, "password": PASSWORD}
    got = await hs.call("POST", GET_TOKEN, {"auth": auth}, token=alice.token)
    assert got["expires_in_ms"] == 300_000 and isinstance(got["login_token"], str)

    new = await hs.call("POST", "/login", {"type": "m.login.token", "token": got["login_token"]})
    assert new["user_id"] == alice.user_id and new["device_id"] != alice.device_id
    whoami = await hs.call("GET", "/account/whoami", token=new["access_token"])
    assert whoami == {"user_id": alice.user_id, "device_id": new["device_id"], "is_guest": False}
    devices = {d["device_id"] for d in (await alice.get("/devices"))["devices"]}
    assert devices == {alice.device_id, new["device_id"]}

    # Single use: the same token again is refused, and creates no device.
    again = await hs.call("POST", "/login", {"type": "m.login.token", "token": got["login_token"]}, expect=403)
    assert_error(again, "M_FORBIDDEN")
    assert len((await alice.get("/devices"))["devices"]) == 2
    assert_error(await hs.call("POST", "/login", {"type": "m.login.token", "token": "made-up"}, expect=403),
                 "M_FORBIDDEN")
    assert_error(await hs.call("POST", "/login", {"type": "m.login.token"}, expect=400), "M_MISSING_PARAM")
    assert (await hs.raw("POST", GET_TOKEN, {})).status == 401  # no access token


async def test_two_logins_racing_with_one_token_only_one_wins(hs_config: HomeserverConfig, start_hs: Start) -> None:
    hs = await _enabled(hs_config, start_hs, require_ui_auth=False)
    (alice,) = await hs.users("alice")
    token = (await hs.call("POST", GET_TOKEN, {}, token=alice.token))["login_token"]
    results = await asyncio.gather(*(
        hs.raw("POST", "/login", {"type": "m.login.token", "token": token}) for _ in range(4)
    ))
    assert sorted(r.status for r in results) == [200, 403, 403, 403]


async def test_an_expired_token_is_refused(hs_config: HomeserverConfig, start_hs: Start) -> None:
    hs = await _enabled(hs_config, start_hs, require_ui_auth=False, token_timeout_ms=1)
    (alice,) = await hs.users("alice")
    token = (await hs.call("POST", GET_TOKEN, {}, token=alice.token))["login_token"]
    await asyncio.sleep(0.05)  # time passing beyond the 1 ms lifetime is the point here
    err = await hs.call("POST", "/login", {"type": "m.login.token", "token": token}, expect=403)
    assert_error(err, "M_FORBIDDEN")


async def test_off_by_default_like_synapse(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    assert (await alice.get("/capabilities"))["capabilities"]["m.get_login_token"] == {"enabled": False}
    assert_error(await hs.call("POST", GET_TOKEN, {}, token=alice.token, expect=404), "M_UNRECOGNIZED")
    assert "m.login.token" not in [f["type"] for f in (await hs.call("GET", "/login"))["flows"]]
    assert_error(await hs.call("POST", "/login", {"type": "m.login.token", "token": "x"}, expect=403), "M_FORBIDDEN")

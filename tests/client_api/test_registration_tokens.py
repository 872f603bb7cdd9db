"""Token-authenticated registration (spec "Token-authenticated registration")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import attrs

from config.schema import HomeserverConfig, RegistrationConfig
from storage.engine import create_engine
from storage.stores.registration_tokens import RegistrationToken, RegistrationTokenStore
from tests.helpers import PASSWORD, Matrix

Start = Callable[[HomeserverConfig], Awaitable[Matrix]]
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


async def add_tokens(cfg: HomeserverConfig, *tokens: RegistrationToken) -> None:
    engine = create_engine(cfg.database.url)
    try:
        store = RegistrationTokenStore(engine)
        for token in tokens:
            assert await store.create(token)
    finally:
        await engine.dispose()


def body(name: str, token: str | None = None, session: str | None = None) -> dict[str, object]:
    auth: dict[str, object] = {"type": "m.login.registration_token"}
    if token is not None:
        auth["token"] = token
    if session is not None:
        auth["session"] = session
    return {"username": name, "password": PASSWORD, "auth": auth}


async def test_registration_needs_a_valid_token(hs_config: HomeserverConfig, start_hs: Start) -> None:
    cfg = attrs.evolve(hs_config, registration=RegistrationConfig(requires_token=True))
    await add_tokens(cfg, RegistrationToken("once", uses_allowed=1), RegistrationToken("old", expiry_time=1),
                     RegistrationToken("many"))
    hs = await start_hs(cfg)
    first = await hs.raw("POST", "/register", {"username": "alice", "password": PASSWORD})
    assert first.status == 401 and first.json["flows"] == [{"stages": ["m.login.registration_token"]}]
    dummy = await hs.raw("POST", "/register", {"username": "alice", "password": PASSWORD, "auth": {"type": "m.login.dummy"}})
    assert dummy.status == 401  # the dummy stage is not enough
    for token in ("nope", "old"):
        assert await hs.call("GET", VALIDITY, params={"token": token}) == {"valid": False}
        r = await hs.raw("POST", "/register", body("alice", token, first.json["session"]))
        assert r.status == 401 and r.json["errcode"] == "M_UNAUTHORIZED", r.text
    assert await hs.call("GET", VALIDITY, params={"token": "once"}) == {"valid": True}
    ok = await hs.call("POST", "/register", body("alice", "once", first.json["session"]))
    assert ok["user_id"] == "@alice:hs.test"
    assert await hs.call("GET", VALIDITY, params={"token": "once"}) == {"valid": False}  # used up
    used = await hs.raw("POST", "/register", body("bob", "once"))
    assert used.status == 401 and used.json["errcode"] == "M_UNAUTHORIZED"
    # A username already taken does not spend a use.
    taken = await hs.raw("POST", "/register", body("alice", "many"))
    assert taken.status == 400 and taken.json["errcode"] == "M_USER_IN_USE"
    assert (await hs.call("POST", "/register", body("carol", "many")))["user_id"] == "@carol:hs.test"
    assert (await hs.call("GET", VALIDITY, expect=400))["errcode"] == "M_MISSING_PARAM"


async def test_the_last_use_goes_to_one_registration(hs_config: HomeserverConfig, start_hs: Start) -> None:
    cfg = attrs.evolve(hs_config, registration=RegistrationConfig(requires_token=True))
    await add_tokens(cfg, RegistrationToken("two", uses_allowed=2))
    hs = await start_hs(cfg)
    results = await asyncio.gather(*(hs.raw("POST", "/register", body(f"user{n}", "two")) for n in range(5)))
    assert sorted(r.status for r in results) == [200, 200, 401, 401, 401]


async def test_without_requires_token_the_stage_is_not_offered(hs: Matrix) -> None:
    first = await hs.raw("POST", "/register", {"username": "alice", "password": PASSWORD})
    assert first.json["flows"] == [{"stages": ["m.login.dummy"]}]
    assert await hs.call("GET", VALIDITY, params={"token": "anything"}) == {"valid": False}

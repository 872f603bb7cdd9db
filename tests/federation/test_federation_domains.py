"""federation.domain_whitelist / domain_blacklist: a denied server is refused on the way in
(403 on its signed requests) and never contacted on the way out; others are unaffected.
The victim knows two peer names (evil.test, evil2.test) served by one scripted peer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from config.schema import DatabaseConfig, FederationConfig, HomeserverConfig
from homeserver.core.federation_domains import federation_domain_allowed
from tests.federation.peer import EVIL, EVIL2, EvilPeer
from tests.federation.test_hostile_peer import V1, VICTIM, peer, raw  # noqa: F401  (fixture)
from tests.helpers import Matrix, assert_error, q


def test_allow_and_deny_lists() -> None:
    assert federation_domain_allowed("a.test", None, ())
    assert not federation_domain_allowed("a.test", None, ("a.test",))
    assert not federation_domain_allowed("a.test", (), ())  # empty allow list: nobody
    assert federation_domain_allowed("a.test", ("a.test",), ())
    assert not federation_domain_allowed("b.test", ("a.test",), ())
    assert not federation_domain_allowed("a.test", ("a.test",), ("a.test",))  # deny wins


async def _victim(
    tmp_path: Path, evil: EvilPeer, make_client: Callable[..., Awaitable[TestClient]], **fed: object
) -> Matrix:
    from homeserver.app import create_app

    cfg = HomeserverConfig(
        server_name=VICTIM,
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'victim.db'}", pool_size=5),
        signing_key_path=str(tmp_path / "keys" / "signing.key"),
        token_secret_path=str(tmp_path / "keys" / "token.secret"),
        media_store_path=str(tmp_path / "media"),
        bcrypt_rounds=4,
        federation=FederationConfig(static_map=evil.static_map(), ca_file=evil.ca_cert, **fed),
        ip_range_whitelist=evil.ip_range_whitelist,
    )
    return Matrix(await make_client(await create_app(cfg)), VICTIM)


@pytest.mark.parametrize("fed", [{"domain_blacklist": (EVIL2,)}, {"domain_whitelist": (EVIL,)}])
async def test_denied_server_is_refused_both_ways(
    tmp_path: Path, peer: EvilPeer, aiohttp_client: Callable[..., Awaitable[TestClient]],  # noqa: F811
    fed: dict[str, object],
) -> None:
    victim = await _victim(tmp_path, peer, aiohttp_client, **fed)
    alice = await victim.register("alice")
    room = await alice.create_room(preset="public_chat", room_version="10")
    path = f"{V1}/make_join/{q(room)}/{q('@eve:' + EVIL2)}?ver=10"
    r = await raw(victim, "GET", path, headers={"Authorization": peer.auth("GET", path, VICTIM, origin=EVIL2)})
    assert r.status == 403, r.text
    assert_error(r.json, "M_FORBIDDEN")
    # The allowed name still gets through.
    path = f"{V1}/make_join/{q(room)}/{q('@eve:' + EVIL)}?ver=10"
    r = await raw(victim, "GET", path, headers={"Authorization": peer.auth("GET", path, VICTIM)})
    assert r.status == 200, r.text
    # Outbound: a profile lookup on the denied server fails without contacting it.
    before = [req for req in peer.requests if req[0].startswith(EVIL2)]
    r = await victim.raw("GET", f"/_matrix/client/v3/profile/{q('@eve:' + EVIL2)}", token=alice.token)
    assert r.status >= 400, r.text
    assert [req for req in peer.requests if req[0].startswith(EVIL2)] == before

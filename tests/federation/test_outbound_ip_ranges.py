"""SSRF protection on federation: peers are contacted only at addresses that
ip_range_blacklist / ip_range_whitelist allow, checked on the address connected to —
an IP literal (static_map, delegation) before connecting, a name after DNS resolution.
Loopback is denied by default; test networks opt in with the whitelist.

The victim knows the scripted peer (peer.py) as evil.test; whether it may reach it is
all that differs between the cases. "Never contacted" is what the peer saw: nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from config.schema import DatabaseConfig, FederationConfig, HomeserverConfig
from tests.federation.peer import EVIL, EvilPeer
from tests.helpers import Matrix, q

VICTIM = "victim.test"


async def _victim(
    tmp_path: Path, peer: EvilPeer, make_client: Callable[..., Awaitable[TestClient]], *,
    static_map: dict[str, str], whitelist: tuple[str, ...],
) -> Matrix:
    from homeserver.app import create_app

    cfg = HomeserverConfig(
        server_name=VICTIM,
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'victim.db'}", pool_size=5),
        signing_key_path=str(tmp_path / "keys" / "signing.key"),
        token_secret_path=str(tmp_path / "keys" / "token.secret"),
        media_store_path=str(tmp_path / "media"),
        bcrypt_rounds=4,
        federation=FederationConfig(static_map=static_map, ca_file=peer.ca_cert),
        ip_range_whitelist=whitelist,
    )
    return Matrix(await make_client(await create_app(cfg)), VICTIM)


@pytest.fixture
async def local_peer(tmp_path: Path) -> AsyncIterator[EvilPeer]:
    """The peer on 127.0.0.1, so the name "localhost" reaches it."""
    evil = await EvilPeer(tmp_path, host="127.0.0.1").start()
    yield evil
    await evil.close()


async def _reach(victim: Matrix) -> tuple[int, list[object]]:
    """A profile lookup (signed /query) and a notary key query (unsigned key fetch) of
    evil.test: the status of the first and the keys the second found."""
    alice = await victim.register("alice")
    r = await victim.raw("GET", f"/_matrix/client/v3/profile/{q('@eve:' + EVIL)}", token=alice.token)
    keys = await victim.raw("GET", f"/_matrix/key/v2/query/{EVIL}")
    return r.status, keys.json["server_keys"]


@pytest.mark.parametrize("target", ["literal", "name"])
async def test_a_peer_in_a_denied_range_is_never_contacted(
    tmp_path: Path, local_peer: EvilPeer, aiohttp_client: Callable[..., Awaitable[TestClient]], target: str,
) -> None:
    address = local_peer.address if target == "literal" else f"localhost:{local_peer.port}"
    victim = await _victim(tmp_path, local_peer, aiohttp_client, static_map={EVIL: address}, whitelist=())
    status, keys = await _reach(victim)
    assert status >= 400
    assert keys == []
    assert local_peer.requests == []


@pytest.mark.parametrize("target", ["literal", "name"])
async def test_a_whitelisted_peer_is_reached(
    tmp_path: Path, local_peer: EvilPeer, aiohttp_client: Callable[..., Awaitable[TestClient]], target: str,
) -> None:
    address = local_peer.address if target == "literal" else f"localhost:{local_peer.port}"
    victim = await _victim(
        tmp_path, local_peer, aiohttp_client, static_map={EVIL: address}, whitelist=("127.0.0.1/32",),
    )
    status, keys = await _reach(victim)
    assert [k["server_name"] for k in keys] == [EVIL]  # type: ignore[index]
    assert any(path.startswith("/_matrix/federation/v1/query/profile") for _, _, path in local_peer.requests)
    assert status == 404  # the peer answered (it does not serve profiles): it was reached

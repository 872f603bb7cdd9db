"""Media across two in-process homeservers federating over TLS (server-server API,
"Content Repository"): a user on hs2 downloads what a user on hs1 uploaded, through
hs2's authenticated endpoint; hs2 keeps a copy and serves it while hs1 is down.

hs2, the server that fetches and caches, runs on each test database; hs1 on SQLite.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from PIL import Image

from config.schema import DatabaseConfig, FederationConfig, HomeserverConfig
from config.tls import create_ca, issue_server_cert, server_ssl_context
from tests.helpers import Matrix

AUTHED = "/_matrix/client/v1/media"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def pair(
    tmp_path: Path, db_url: str, aiohttp_client: Callable[..., Awaitable[TestClient]],
) -> dict[str, Matrix]:
    """hs1 and hs2, each on a plain-HTTP test client plus a TLS site for federation."""
    from homeserver.app import create_app

    ca_cert, ca_key = create_ca(str(tmp_path / "ca"))
    ports = {"hs1.test": _free_port(), "hs2.test": _free_port()}
    databases = {"hs1.test": f"sqlite+aiosqlite:///{tmp_path / 'hs1.db'}", "hs2.test": db_url}
    servers = {}
    for name, port in ports.items():
        directory = tmp_path / name
        cert, key = issue_server_cert(
            ca_cert, ca_key, name, str(directory / "tls.crt"), str(directory / "tls.key"),
        )
        cfg = HomeserverConfig(
            server_name=name,
            database=DatabaseConfig(url=databases[name], pool_size=5),
            signing_key_path=str(directory / "signing.key"),
            token_secret_path=str(directory / "token.secret"),
            media_store_path=str(directory / "media"),
            bcrypt_rounds=4,
            federation=FederationConfig(
                static_map={n: f"127.0.0.1:{p}" for n, p in ports.items() if n != name},
                ca_file=ca_cert,
            ),
        )
        client = await aiohttp_client(await create_app(cfg))
        # A second site on the test server's runner: closing the client stops both.
        site = web.TCPSite(client.server.runner, "127.0.0.1", port, ssl_context=server_ssl_context(cert, key))
        await site.start()
        servers[name] = Matrix(client, name)
    return servers


def png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "blue").save(out, "PNG")
    return out.getvalue()


async def test_remote_media_is_fetched_cached_and_served_while_the_origin_is_down(pair: dict[str, Matrix]) -> None:
    hs1, hs2 = pair["hs1.test"], pair["hs2.test"]
    alice, bob = await hs1.register("alice"), await hs2.register("bob")
    picture = png((640, 480))
    up = await hs1.raw_bytes(
        "POST", "/_matrix/media/v3/upload", picture, token=alice.token,
        params={"filename": "holiday.png"}, headers={"Content-Type": "image/png"},
    )
    assert up.status == 200, up.body
    media_id = up.json["content_uri"].removeprefix("mxc://hs1.test/")
    never_fetched = (await hs1.raw_bytes(
        "POST", "/_matrix/media/v3/upload", b"later", token=alice.token,
    )).json["content_uri"].removeprefix("mxc://hs1.test/")

    got = await hs2.raw_bytes("GET", f"{AUTHED}/download/hs1.test/{media_id}", token=bob.token)
    assert got.status == 200, got.body
    assert got.body == picture
    assert got.headers["Content-Type"] == "image/png"
    assert got.headers["Content-Disposition"] == 'inline; filename="holiday.png"'
    assert "sandbox" in got.headers["Content-Security-Policy"]

    thumb = await hs2.raw_bytes(
        "GET", f"{AUTHED}/thumbnail/hs1.test/{media_id}", token=bob.token,
        params={"width": 96, "height": 96, "method": "crop"},
    )
    assert thumb.status == 200, thumb.body
    assert Image.open(io.BytesIO(thumb.body)).size == (96, 96)

    missing = await hs2.raw_bytes("GET", f"{AUTHED}/download/hs1.test/noSuchMedia", token=bob.token)
    assert (missing.status, missing.json["errcode"]) == (404, "M_NOT_FOUND")

    await hs1.client.close()  # hs1 stops: unreachable from now on

    cached = await hs2.raw_bytes("GET", f"{AUTHED}/download/hs1.test/{media_id}", token=bob.token)
    assert (cached.status, cached.body) == (200, picture)
    assert cached.headers["Content-Disposition"] == 'inline; filename="holiday.png"'
    legacy = await hs2.raw_bytes("GET", f"/_matrix/media/v3/download/hs1.test/{media_id}")
    assert (legacy.status, legacy.body) == (200, picture)

    down = await hs2.raw_bytes("GET", f"{AUTHED}/download/hs1.test/{never_fetched}", token=bob.token)
    assert (down.status, down.json["errcode"]) == (502, "M_UNKNOWN")

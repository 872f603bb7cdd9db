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

from config.schema import DatabaseConfig, FederationConfig, HomeserverConfig, LimitsConfig
from config.tls import create_ca, issue_server_cert, server_ssl_context
from federation.outbound.xmatrix import sign_request
from homeserver.core.signing import parse_signing_key
from tests.helpers import BytesResp, Matrix

AUTHED = "/_matrix/client/v1/media"
HS2_MAX_BYTES = 100_000


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
            # hs2 takes smaller files than hs1 serves, to see a remote file that is too big.
            limits=LimitsConfig(max_upload_bytes=HS2_MAX_BYTES if name == "hs2.test" else 10**7),
            federation=FederationConfig(
                static_map={n: f"127.0.0.1:{p}" for n, p in ports.items() if n != name},
                ca_file=ca_cert,
            ),
            ip_range_whitelist=("127.0.0.1/32",),  # the pair is on loopback, denied by default
        )
        client = await aiohttp_client(await create_app(cfg))
        # A second site on the test server's runner: closing the client stops both.
        site = web.TCPSite(client.server.runner, "127.0.0.1", port, ssl_context=server_ssl_context(cert, key))
        await site.start()
        servers[name] = Matrix(client, name)
    return servers


async def as_hs2(tmp_path: Path, hs1: Matrix, path: str) -> BytesResp:
    """GET ``path`` on hs1 as hs2 would: signed with hs2's key (X-Matrix)."""
    key = parse_signing_key((tmp_path / "hs2.test" / "signing.key").read_text())
    auth = sign_request(key, "hs2.test", "hs1.test", "GET", path, None)
    return await hs1.raw_bytes("GET", path, headers={"Authorization": auth})


def multipart(r: BytesResp) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/mixed answer: (headers, body)."""
    kind, _, boundary = r.headers["Content-Type"].partition("; boundary=")
    assert kind == "multipart/mixed", r.headers["Content-Type"]
    chunks = r.body.split(b"--" + boundary.strip('"').encode())
    assert chunks[-1].startswith(b"--")  # the close delimiter
    parts = []
    for chunk in chunks[1:-1]:
        head, _, body = chunk.removeprefix(b"\r\n").removesuffix(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append(({k.lower(): v for k, v in headers.items()}, body))
    return parts


async def test_peers_get_our_media_as_multipart(pair: dict[str, Matrix], tmp_path: Path) -> None:
    hs1 = pair["hs1.test"]
    alice = await hs1.register("alice")
    picture = png((300, 200))
    up = await hs1.raw_bytes(
        "POST", "/_matrix/media/v3/upload", picture, token=alice.token,
        params={"filename": "p.png"}, headers={"Content-Type": "image/png"},
    )
    media_id = up.json["content_uri"].removeprefix("mxc://hs1.test/")

    r = await as_hs2(tmp_path, hs1, f"/_matrix/federation/v1/media/download/{media_id}")
    assert r.status == 200, r.body[:300]
    (meta_headers, meta), (file_headers, data) = multipart(r)
    assert meta_headers["content-type"] == "application/json" and meta == b"{}"
    assert file_headers["content-type"] == "image/png"
    assert file_headers["content-disposition"] == 'inline; filename="p.png"'
    assert data == picture

    r = await as_hs2(
        tmp_path, hs1, f"/_matrix/federation/v1/media/thumbnail/{media_id}?width=32&height=32&method=crop",
    )
    assert r.status == 200, r.body[:300]
    (_, meta), (file_headers, data) = multipart(r)
    assert file_headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(data)).size == (32, 32)

    r = await as_hs2(tmp_path, hs1, "/_matrix/federation/v1/media/download/noSuchMedia")
    assert (r.status, r.json["errcode"]) == (404, "M_NOT_FOUND")
    r = await as_hs2(tmp_path, hs1, f"/_matrix/federation/v1/media/thumbnail/{media_id}?width=32")
    assert (r.status, r.json["errcode"]) == (400, "M_MISSING_PARAM")
    r = await hs1.raw_bytes("GET", f"/_matrix/federation/v1/media/download/{media_id}")
    assert (r.status, r.json["errcode"]) == (401, "M_UNAUTHORIZED")


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

    big = (await hs1.raw_bytes(
        "POST", "/_matrix/media/v3/upload", b"z" * (HS2_MAX_BYTES + 1), token=alice.token,
    )).json["content_uri"].removeprefix("mxc://hs1.test/")
    too_big = await hs2.raw_bytes("GET", f"{AUTHED}/download/hs1.test/{big}", token=bob.token)
    assert (too_big.status, too_big.json["errcode"]) == (502, "M_TOO_LARGE")

    await hs1.client.close()  # hs1 stops: unreachable from now on

    cached = await hs2.raw_bytes("GET", f"{AUTHED}/download/hs1.test/{media_id}", token=bob.token)
    assert (cached.status, cached.body) == (200, picture)
    assert cached.headers["Content-Disposition"] == 'inline; filename="holiday.png"'
    # Fetched after the legacy unauthenticated paths froze (spec v1.11): not served there.
    legacy = await hs2.raw_bytes("GET", f"/_matrix/media/v3/download/hs1.test/{media_id}")
    assert (legacy.status, legacy.json["errcode"]) == (404, "M_NOT_FOUND")

    down = await hs2.raw_bytes("GET", f"{AUTHED}/download/hs1.test/{never_fetched}", token=bob.token)
    assert (down.status, down.json["errcode"]) == (502, "M_UNKNOWN")

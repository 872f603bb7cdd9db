"""Fetching other servers' media against a peer we control (``peer.py``): one download
per file however many clients ask at once, failures remembered briefly, and the
legacy client-API path for servers from before authenticated media (spec v1.11).

The peer is a real TLS aiohttp server counting what it is asked; the victim is the
whole app on each test database.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from PIL import Image

from config.schema import DatabaseConfig, FederationConfig, HomeserverConfig, MediaConfig
from tests.federation.peer import EVIL, EvilPeer
from tests.helpers import Matrix

VICTIM = "victim.test"
AUTHED = "/_matrix/client/v1/media"
FED_DOWNLOAD = "/_matrix/federation/v1/media/download/"
LEGACY_DOWNLOAD = f"/_matrix/media/v3/download/{EVIL}/"


def png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "red").save(out, "PNG")
    return out.getvalue()


def multipart(data: bytes, content_type: str) -> web.Response:
    writer = aiohttp.MultipartWriter("mixed")
    writer.append_json({})
    writer.append(data, {"Content-Type": content_type})
    return web.Response(body=writer)


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[EvilPeer]:
    evil = await EvilPeer(tmp_path).start()
    yield evil
    await evil.close()


@pytest.fixture
def start_victim(
    tmp_path: Path, db_url: str, peer: EvilPeer, aiohttp_client: Callable[..., Awaitable[TestClient]],
) -> Callable[..., Awaitable[Matrix]]:
    async def start(*, whitelist: tuple[str, ...] = (), **media: int) -> Matrix:
        from homeserver.app import create_app

        cfg = HomeserverConfig(
            server_name=VICTIM,
            database=DatabaseConfig(url=db_url, pool_size=5),
            signing_key_path=str(tmp_path / "keys" / "signing.key"),
            token_secret_path=str(tmp_path / "keys" / "token.secret"),
            media_store_path=str(tmp_path / "media"),
            bcrypt_rounds=4,
            rc_enabled=False,  # the test registers users faster than people do
            media=MediaConfig(**media),
            ip_range_whitelist=peer.ip_range_whitelist + whitelist,
            federation=FederationConfig(static_map=peer.static_map(), ca_file=peer.ca_cert),
        )
        return Matrix(await aiohttp_client(await create_app(cfg)), VICTIM)

    return start


async def test_concurrent_downloads_of_one_remote_file_fetch_it_once(
    peer: EvilPeer, start_victim: Callable[..., Awaitable[Matrix]],
) -> None:
    victim = await start_victim()
    users = await victim.users("u1", "u2", "u3", "u4", "u5")
    picture = png((64, 48))
    asked: list[str] = []
    all_asked = asyncio.Event()

    async def download(request: web.Request) -> web.Response:
        asked.append(request.path)
        if len(asked) == len(users):
            all_asked.set()
        # Hold the answer until every client would have asked (bounded): without the
        # single flight, five downloads reach us meanwhile.
        try:
            await asyncio.wait_for(all_asked.wait(), 2.0)
        except TimeoutError:
            pass
        return multipart(picture, "image/png")

    peer.handlers[FED_DOWNLOAD] = download
    got = await asyncio.gather(*(
        victim.raw_bytes("GET", f"{AUTHED}/download/{EVIL}/shared", token=u.token) for u in users
    ))
    assert [(r.status, r.body) for r in got] == [(200, picture)] * len(users)
    assert asked == [FED_DOWNLOAD + "shared"]

    # A thumbnail of it, and the file again: from the cache, the peer is not asked.
    thumb = await victim.raw_bytes(
        "GET", f"{AUTHED}/thumbnail/{EVIL}/shared", token=users[0].token,
        params={"width": 32, "height": 32, "method": "crop"},
    )
    assert thumb.status == 200 and Image.open(io.BytesIO(thumb.body)).size == (32, 32)
    again = await victim.raw_bytes("GET", f"{AUTHED}/download/{EVIL}/shared", token=users[1].token)
    assert (again.status, again.body) == (200, picture)
    assert asked == [FED_DOWNLOAD + "shared"]


async def test_a_failed_fetch_is_remembered_briefly_not_forever(
    peer: EvilPeer, start_victim: Callable[..., Awaitable[Matrix]],
) -> None:
    ttl_ms = 1500
    victim = await start_victim(remote_failure_cache_ms=ttl_ms)
    bob = await victim.register("bob")
    asked: list[str] = []
    ready: list[bytes] = []

    async def download(request: web.Request) -> web.Response:
        asked.append(request.path)
        if ready:
            return multipart(ready[0], "text/plain")
        return web.json_response({"errcode": "M_NOT_FOUND", "error": "not yet"}, status=404)

    peer.handlers[FED_DOWNLOAD] = download
    path = f"{AUTHED}/download/{EVIL}/flaky"
    for _ in range(3):
        r = await victim.raw_bytes("GET", path, token=bob.token)
        assert (r.status, r.json["errcode"]) == (404, "M_NOT_FOUND")
    assert len(asked) == 1  # the failure was answered from memory

    ready.append(b"here now")
    await asyncio.sleep(ttl_ms / 1000 + 0.3)  # past the negative cache's lifetime
    r = await victim.raw_bytes("GET", path, token=bob.token)
    assert (r.status, r.body) == (200, b"here now")
    assert len(asked) == 2


async def test_a_server_without_federation_media_is_asked_on_the_legacy_path(
    peer: EvilPeer, start_victim: Callable[..., Awaitable[Matrix]],
) -> None:
    victim = await start_victim()
    bob = await victim.register("bob")
    picture = png((200, 100))
    legacy_queries: list[dict[str, str]] = []

    async def unrecognized(request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, status=404)

    async def legacy(request: web.Request) -> web.Response:
        legacy_queries.append(dict(request.query))
        if request.path != LEGACY_DOWNLOAD + "old":
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)
        return web.Response(body=picture, headers={
            "Content-Type": "image/png", "Content-Disposition": 'inline; filename="old.png"',
        })

    peer.handlers[FED_DOWNLOAD] = unrecognized
    peer.handlers["/_matrix/media/v3/download/"] = legacy

    r = await victim.raw_bytes("GET", f"{AUTHED}/download/{EVIL}/old", token=bob.token)
    assert (r.status, r.body) == (200, picture), r.body[:300]
    assert r.headers["Content-Disposition"] == 'inline; filename="old.png"'
    assert legacy_queries[0]["allow_remote"] == "false"  # the peer must not fetch elsewhere

    thumb = await victim.raw_bytes(
        "GET", f"{AUTHED}/thumbnail/{EVIL}/old", token=bob.token,
        params={"width": 32, "height": 32, "method": "crop"},
    )
    assert thumb.status == 200 and Image.open(io.BytesIO(thumb.body)).size == (32, 32)

    missing = await victim.raw_bytes("GET", f"{AUTHED}/download/{EVIL}/gone", token=bob.token)
    assert (missing.status, missing.json["errcode"]) == (404, "M_NOT_FOUND")
    assert len(legacy_queries) == 2


@pytest.fixture
async def internal() -> AsyncIterator[tuple[str, list[str]]]:
    """A service on loopback, standing for what lives behind a firewall: its port, and
    the first line of every connection made to it (TLS handshakes included, so any
    connection attempt is seen); it answers plain HTTP."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            seen.append(line.decode("latin-1").strip())
            if line.startswith(b"GET "):
                while (await reader.readline()).strip():
                    pass
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n"
                    b"Connection: close\r\n\r\ninternal secret"
                )
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"{port}", seen
    server.close()
    await server.wait_closed()


def location_part(url: str) -> web.Response:
    writer = aiohttp.MultipartWriter("mixed")
    writer.append_json({})
    writer.append(b"", {"Location": url})
    return web.Response(body=writer)


@pytest.mark.parametrize("how", ["location-part", "redirect"])
async def test_media_redirects_to_internal_addresses_are_refused(
    peer: EvilPeer, start_victim: Callable[..., Awaitable[Matrix]],
    internal: tuple[str, list[str]], how: str,
) -> None:
    victim = await start_victim()
    bob = await victim.register("bob")
    port, seen = internal
    # 127.0.0.1 as a literal, and "localhost", a name that resolves to it (checked at
    # connect time, by the resolver: what DNS rebinding would exploit).
    targets = {
        "lit": f"https://127.0.0.1:{port}/lit", "name": f"https://localhost:{port}/name",
        "plain": f"http://127.0.0.1:{port}/plain",
    }

    async def download(request: web.Request) -> web.StreamResponse:
        url = targets[request.path.rsplit("/", 1)[1]]
        if how == "redirect":
            raise web.HTTPTemporaryRedirect(url)
        return location_part(url)

    peer.handlers[FED_DOWNLOAD] = download
    for media_id in targets:
        r = await victim.raw_bytes("GET", f"{AUTHED}/download/{EVIL}/{media_id}", token=bob.token)
        assert (r.status, r.json["errcode"]) == (502, "M_UNKNOWN"), r.body[:200]
    assert seen == []  # nothing ever connected to the internal service


async def test_whitelisted_addresses_may_be_redirected_to(
    peer: EvilPeer, start_victim: Callable[..., Awaitable[Matrix]],
    internal: tuple[str, list[str]],
) -> None:
    victim = await start_victim(whitelist=("127.0.0.1/32",))
    bob = await victim.register("bob")
    port, seen = internal

    async def download(request: web.Request) -> web.StreamResponse:
        return location_part(f"http://127.0.0.1:{port}/file")

    peer.handlers[FED_DOWNLOAD] = download
    r = await victim.raw_bytes("GET", f"{AUTHED}/download/{EVIL}/allowed", token=bob.token)
    assert (r.status, r.body) == (200, b"internal secret"), r.body[:200]
    assert seen == ["GET /file HTTP/1.1"]

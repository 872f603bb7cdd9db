"""Server discovery decisions, with .well-known served by a local aiohttp server and a fake SRV."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from federation.outbound.resolver import Resolved, ServerResolver, _cache_ttl, split_host_port


class FakeSrv:
    def __init__(self, records: dict[str, list[tuple[str, int]]] | None = None) -> None:
        self.records = records or {}
        self.queries: list[str] = []

    async def __call__(self, name: str) -> list[tuple[str, int]]:
        self.queries.append(name)
        return self.records.get(name, [])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession() as s:
        yield s


WellKnownServer = Callable[[dict[str, Any]], Awaitable[tuple[TestServer, list[str]]]]


@pytest.fixture
def well_known_server(aiohttp_server: Any) -> WellKnownServer:
    """Serve /.well-known/matrix/server for each host in ``answers`` under /<host>/...;
    an answer is (status, body, headers). Records the hosts asked."""

    async def start(answers: dict[str, Any]) -> tuple[TestServer, list[str]]:
        asked: list[str] = []

        async def handler(request: web.Request) -> web.StreamResponse:
            host = request.match_info["host"]
            asked.append(host)
            status, body, headers = answers.get(host, (404, "", {}))
            if status in (301, 302):
                raise web.HTTPFound(body)
            return web.Response(status=status, text=body, headers=headers)

        app = web.Application()
        app.router.add_get("/{host}/.well-known/matrix/server", handler)
        return await aiohttp_server(app), asked

    return start


def _resolver(server: TestServer | None, session: Any, srv: FakeSrv, clock: Clock | None = None,
              static: dict[str, str] | None = None) -> ServerResolver:
    def url(host: str) -> str:
        assert server is not None
        return str(server.make_url(f"/{host}/.well-known/matrix/server"))

    kwargs: dict[str, Any] = {"srv_lookup": srv, "well_known_url": url}
    if clock is not None:
        kwargs["clock"] = clock
    return ServerResolver(static or {}, session, **kwargs)


def test_split_host_port() -> None:
    assert split_host_port("example.org") == ("example.org", None)
    assert split_host_port("example.org:8000") == ("example.org", 8000)
    assert split_host_port("1.2.3.4") == ("1.2.3.4", None)
    assert split_host_port("[::1]:8448") == ("::1", 8448)
    assert split_host_port("[2001:db8::1]") == ("2001:db8::1", None)
    for bad in ("::1", "host:", "host:x", "host:70000", "[::1", ":80", "[::1]x"):
        with pytest.raises(ValueError):
            split_host_port(bad)


def test_cache_ttl() -> None:
    assert _cache_ttl({}) == 24 * 3600
    assert _cache_ttl({"Cache-Control": "public, max-age=600"}) == 600
    assert _cache_ttl({"Cache-Control": "max-age=999999"}) == 48 * 3600
    assert _cache_ttl({"Cache-Control": "no-store"}) == 0


async def test_static_map_wins(session: Any) -> None:
    srv = FakeSrv()
    r = ServerResolver({"hs1": "127.0.0.1:8001", "hs2:8448": "localhost"}, session, srv_lookup=srv)
    assert await r.resolve("hs1") == Resolved("127.0.0.1", 8001, "hs1", "hs1")
    assert await r.resolve("hs2:8448") == Resolved("localhost", 8448, "hs2:8448", "hs2")
    assert srv.queries == []


async def test_ip_literals_and_explicit_ports_skip_discovery(session: Any) -> None:
    srv = FakeSrv()
    r = ServerResolver({}, session, srv_lookup=srv, well_known_url=lambda h: pytest.fail("no well-known"))
    assert await r.resolve("1.2.3.4") == Resolved("1.2.3.4", 8448, "1.2.3.4", "1.2.3.4")
    assert await r.resolve("1.2.3.4:9000") == Resolved("1.2.3.4", 9000, "1.2.3.4:9000", "1.2.3.4")
    v6 = await r.resolve("[::1]:8008")
    assert v6 == Resolved("::1", 8008, "[::1]:8008", "::1")
    assert v6.netloc == "[::1]:8008"
    assert await r.resolve("example.org:8000") == Resolved("example.org", 8000, "example.org:8000", "example.org")
    assert srv.queries == []
    with pytest.raises(ValueError):
        await r.resolve("bad:name:x")


async def test_well_known_delegation_variants(session: Any, well_known_server: WellKnownServer) -> None:
    server, asked = await well_known_server({
        "a.org": (200, '{"m.server": "matrix.a.org:443"}', {}),
        "b.org": (200, '{"m.server": "10.0.0.2"}', {}),
        "c.org": (200, '{"m.server": "matrix.c.org"}', {}),
        "d.org": (200, '{"m.server": "matrix.d.org"}', {}),
        "e.org": (302, "/a.org/.well-known/matrix/server", {}),
    })
    srv = FakeSrv({"_matrix-fed._tcp.matrix.c.org": [("srv.c.org", 8443)]})
    r = _resolver(server, session, srv)
    assert await r.resolve("a.org") == Resolved("matrix.a.org", 443, "matrix.a.org:443", "matrix.a.org")
    assert await r.resolve("b.org") == Resolved("10.0.0.2", 8448, "10.0.0.2", "10.0.0.2")
    # No port: SRV on the delegated name; Host and TLS name are the delegated name.
    assert await r.resolve("c.org") == Resolved("srv.c.org", 8443, "matrix.c.org", "matrix.c.org")
    assert await r.resolve("d.org") == Resolved("matrix.d.org", 8448, "matrix.d.org", "matrix.d.org")
    assert srv.queries[-2:] == ["_matrix-fed._tcp.matrix.d.org", "_matrix._tcp.matrix.d.org"]
    # Redirects are followed.
    assert await r.resolve("e.org") == Resolved("matrix.a.org", 443, "matrix.a.org:443", "matrix.a.org")
    assert asked == ["a.org", "b.org", "c.org", "d.org", "e.org", "a.org"]


@pytest.mark.parametrize("answer", [
    (404, "", {}),
    (200, "not json", {}),
    (200, '{"m.server": 5}', {}),
    (200, '{"m.server": "bad:host:x"}', {}),
    (200, "[]", {}),
    (500, '{"m.server": "x.org"}', {}),
])
async def test_bad_well_known_falls_back_to_srv(
    session: Any, well_known_server: WellKnownServer, answer: Any,
) -> None:
    server, _ = await well_known_server({"x.org": answer})
    srv = FakeSrv({"_matrix._tcp.x.org": [("legacy.x.org", 8000)]})
    r = _resolver(server, session, srv)
    assert await r.resolve("x.org") == Resolved("legacy.x.org", 8000, "x.org", "x.org")
    assert srv.queries == ["_matrix-fed._tcp.x.org", "_matrix._tcp.x.org"]


async def test_srv_fed_preferred_then_default_port(session: Any, well_known_server: WellKnownServer) -> None:
    server, _ = await well_known_server({})
    srv = FakeSrv({
        "_matrix-fed._tcp.x.org": [("fed.x.org", 1111)],
        "_matrix._tcp.x.org": [("legacy.x.org", 2222)],
    })
    r = _resolver(server, session, srv)
    assert await r.resolve("x.org") == Resolved("fed.x.org", 1111, "x.org", "x.org")
    assert await r.resolve("y.org") == Resolved("y.org", 8448, "y.org", "y.org")


async def test_unreachable_well_known_is_no_delegation(session: Any) -> None:
    r = ServerResolver(
        {}, session, srv_lookup=FakeSrv(), well_known_url=lambda h: "http://127.0.0.1:1/.well-known/matrix/server",
    )
    assert await r.resolve("down.org") == Resolved("down.org", 8448, "down.org", "down.org")


async def test_well_known_cache(session: Any, well_known_server: WellKnownServer) -> None:
    server, asked = await well_known_server({
        "ok.org": (200, '{"m.server": "m.ok.org:8448"}', {}),
        "short.org": (200, '{"m.server": "m.short.org:8448"}', {"Cache-Control": "max-age=60"}),
    })
    clock = Clock()
    r = _resolver(server, session, FakeSrv(), clock)
    for _ in range(2):
        for name in ("ok.org", "short.org", "err.org"):
            await r.resolve(name)
    assert asked == ["ok.org", "short.org", "err.org"]
    clock.now += 2 * 3600  # past the result cache, the error TTL and max-age=60; within 24 h
    for name in ("ok.org", "short.org", "err.org"):
        await r.resolve(name)
    assert asked[3:] == ["short.org", "err.org"]
    clock.now += 24 * 3600
    await r.resolve("ok.org")
    assert asked[-1] == "ok.org" and len(asked) == 6


async def test_without_session_there_is_no_well_known() -> None:
    r = ServerResolver({}, None, srv_lookup=FakeSrv())
    assert await r.resolve("x.org") == Resolved("x.org", 8448, "x.org", "x.org")

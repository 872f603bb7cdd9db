"""The key and notary API (federation/inbound/keys.py), and signed requests end to end:
two in-process servers that fetch each other's keys over plain HTTP."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from federation.inbound.app import create_key_app
from federation.inbound.auth import ORIGIN, make_xmatrix_middleware
from federation.inbound.keys import PREFIX, version_routes
from federation.outbound.client import FederationClient
from federation.outbound.keyring import DAY_MS, Keyring, parse_key_response
from federation.outbound.resolver import ServerResolver
from homeserver.core.canonical_json import encode_canonical_json
from homeserver.core.errors import MatrixError
from homeserver.core.signing import (
    SigningKey,
    decode_base64,
    generate_signing_key,
    sign_json,
    verify_json_signature,
)
from homeserver.services.ports import FederationRequestError
from storage.engine import create_engine
from storage.migrate import migrate
from storage.stores.keys import KeyStore

TEST_KEY = SigningKey("1", decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"))
VECTOR_SIGNED = (
    '{"old_verify_keys":{},"server_name":"domain","valid_until_ts":1700000000000,'
    '"verify_keys":{"ed25519:1":{"key":"XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"}}}'
)
VECTOR_SIG = "ewq/uPhfAzmWSa/3PRlr5Q0W59jG75Wtb6mzxIELuVRAxYMHOeMFue6fNXijZkIwLLembQ0+gl7DIkiUGcoUBg"


def test_own_key_response_vector() -> None:
    kr = Keyring("domain", TEST_KEY, {}, None, None)  # type: ignore[arg-type]
    body = kr.own_key_response(1700000000000)
    assert body["signatures"] == {"domain": {"ed25519:1": VECTOR_SIG}}
    unsigned = {k: v for k, v in body.items() if k != "signatures"}
    assert encode_canonical_json(unsigned).decode() == VECTOR_SIGNED


@web.middleware
async def matrix_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Stands in for the lead's error middleware (MatrixError and 404/405 as Matrix JSON)."""
    try:
        return await handler(request)
    except MatrixError as e:
        return web.json_response(e.to_json(), status=e.status)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as e:
        return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "no"}, status=e.status)


async def echo(request: web.Request) -> web.Response:
    raw = await request.read()
    return web.json_response({
        "origin": request[ORIGIN], "raw": request.raw_path,
        "body": await request.json() if raw else None,
    })


@attrs.define
class Server:
    name: str
    key: SigningKey
    keyring: Keyring
    client: FederationClient
    http: TestServer


@attrs.define
class Network:
    servers: dict[str, Server] = attrs.Factory(dict)

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]


@pytest.fixture
async def network(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]], unused_tcp_port_factory: Callable[[], int],
) -> AsyncIterator[Network]:
    """a.test and b.test, each with the key API, X-Matrix auth and an echo route."""
    names = ("a.test", "b.test")
    ports = {n: unused_tcp_port_factory() for n in names}
    static = {n: f"127.0.0.1:{p}" for n, p in ports.items()}
    static["alias.test"] = static["a.test"]  # reaches a.test under another name
    static["down.test"] = "127.0.0.1:1"
    net = Network()
    engines = []
    for name in names:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / name}.db")
        await migrate(engine)
        engines.append(engine)
        key = generate_signing_key(name[0] + "1")
        client = FederationClient(name, key, ServerResolver(static), None, scheme="http")
        await client.start()
        keyring = Keyring(name, key, {}, KeyStore(engine), client, refetch_interval_ms=0)
        federation = web.Application(middlewares=[make_xmatrix_middleware(name, keyring)])
        federation.add_routes(version_routes)
        federation.router.add_route("*", "/v1/echo/{tail:.*}", echo)
        app = web.Application(middlewares=[matrix_errors])
        app.add_subapp("/_matrix/federation", federation)
        app.add_subapp(PREFIX, create_key_app(keyring, 1_048_576))
        http = await aiohttp_server(app, port=ports[name])
        net.servers[name] = Server(name, key, keyring, client, http)
    yield net
    for server in net.servers.values():
        await server.client.close()
    for engine in engines:
        await engine.dispose()


@pytest.fixture
async def a_client(network: Network, aiohttp_client: Callable[..., Awaitable[TestClient]]) -> TestClient:
    return await aiohttp_client(network["a.test"].http)


async def test_key_endpoints_serve_a_self_signed_response(network: Network, a_client: TestClient) -> None:
    a = network["a.test"]
    for path in ("/_matrix/key/v2/server", "/_matrix/key/v2/server/", f"/_matrix/key/v2/server/{a.key.key_id}"):
        resp = await a_client.get(path)
        assert resp.status == 200, path
        assert resp.content_type == "application/json"
        body = await resp.json()
        assert set(body) == {"server_name", "verify_keys", "old_verify_keys", "valid_until_ts", "signatures"}
        assert body["server_name"] == "a.test"
        assert body["verify_keys"] == {a.key.key_id: {"key": a.key.verify_key_base64}}
        verify_json_signature(body, "a.test", a.key.key_id, a.key.verify_key_bytes)
        assert abs(body["valid_until_ts"] - a.keyring._clock() - DAY_MS) < 60_000


async def test_version_and_wrong_methods(a_client: TestClient) -> None:
    resp = await a_client.get("/_matrix/federation/v1/version")
    assert resp.status == 200
    assert await resp.json() == {"server": {"name": "Tricolor", "version": "0.1.0"}}
    for method, path in (("PUT", "/_matrix/key/v2/query"), ("POST", "/_matrix/key/v2/server")):
        resp = await a_client.request(method, path, json={})
        assert resp.status == 405
        assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"


async def test_notary_query_adds_our_signature(network: Network, a_client: TestClient) -> None:
    a, b = network["a.test"], network["b.test"]
    resp = await a_client.post("/_matrix/key/v2/query", json={"server_keys": {
        "b.test": {b.key.key_id: {"minimum_valid_until_ts": 0}},
        "down.test": {},
    }})
    assert resp.status == 200
    (item,) = (await resp.json())["server_keys"]  # down.test is unknown: left out
    assert item["server_name"] == "b.test"
    verify_json_signature(item, "b.test", b.key.key_id, b.key.verify_key_bytes)
    verify_json_signature(item, "a.test", a.key.key_id, a.key.verify_key_bytes)
    parse_key_response("b.test", item)  # still a valid self-signed response

    resp = await a_client.get("/_matrix/key/v2/query/b.test")
    (item,) = (await resp.json())["server_keys"]
    assert set(item["signatures"]) == {"a.test", "b.test"}
    resp = await a_client.get("/_matrix/key/v2/query/down.test")
    assert await resp.json() == {"server_keys": []}
    # Our own keys through the notary API.
    resp = await a_client.get("/_matrix/key/v2/query/a.test?minimum_valid_until_ts=5")
    (item,) = (await resp.json())["server_keys"]
    verify_json_signature(item, "a.test", a.key.key_id, a.key.verify_key_bytes)


async def test_notary_serves_cache_when_remote_is_down(network: Network, a_client: TestClient) -> None:
    b = network["b.test"]
    resp = await a_client.get("/_matrix/key/v2/query/b.test")
    (first,) = (await resp.json())["server_keys"]
    await b.http.close()
    # Asking for validity far in the future forces a refresh attempt, which fails.
    resp = await a_client.get("/_matrix/key/v2/query/b.test?minimum_valid_until_ts=99999999999999")
    (cached,) = (await resp.json())["server_keys"]
    assert cached["valid_until_ts"] == first["valid_until_ts"]
    verify_json_signature(cached, "b.test", b.key.key_id, b.key.verify_key_bytes)


@pytest.mark.parametrize("body", [
    {}, {"server_keys": []}, {"server_keys": {"b.test": []}},
    {"server_keys": {"b.test": {"k": {"minimum_valid_until_ts": "x"}}}}, [1],
])
async def test_notary_query_bad_bodies(a_client: TestClient, body: Any) -> None:
    resp = await a_client.post("/_matrix/key/v2/query", json=body)
    assert resp.status == 400
    resp = await a_client.post("/_matrix/key/v2/query", data=b"{nope")
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_NOT_JSON")


async def test_notary_query_for_names_that_are_no_server_names(a_client: TestClient) -> None:
    """Found by fuzzing: a name the URL parser refuses was a 500; no such server has keys."""
    for name in ("]\U000937a1TV\u00b44", "[::1", "a b", "\u00e9.test"):
        resp = await a_client.get("/_matrix/key/v2/query/" + urllib.parse.quote(name, safe=""))
        assert (resp.status, await resp.json()) == (200, {"server_keys": []}), name
    resp = await a_client.post("/_matrix/key/v2/query", json={"server_keys": {"]x": {}, "[::1": {}}})
    assert (resp.status, await resp.json()) == (200, {"server_keys": []})


# ---- signed requests end to end ----

async def test_signed_get_with_query(network: Network) -> None:
    b = network["b.test"]
    got = await b.client.request(
        "GET", "a.test", "/_matrix/federation/v1/echo/query",
        query={"user_id": "@alice:a.test", "field": ["displayname", "avatar url"]},
    )
    assert got == {
        "origin": "b.test", "body": None,
        "raw": "/_matrix/federation/v1/echo/query?user_id=%40alice%3Aa.test&field=displayname&field=avatar%20url",
    }


async def test_signed_put_with_body(network: Network) -> None:
    b = network["b.test"]
    body = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {"typing": True}}], "n": "é"}
    got = await b.client.request("PUT", "a.test", "/_matrix/federation/v1/echo/send/1%2F2", body=body)
    assert got["body"] == body
    assert got["raw"] == "/_matrix/federation/v1/echo/send/1%2F2"
    got = await b.client.request("POST", "a.test", "/_matrix/federation/v1/echo/empty")
    assert got["body"] == {}


async def test_request_errors(network: Network) -> None:
    b = network["b.test"]
    with pytest.raises(FederationRequestError) as e:
        await b.client.request("GET", "a.test", "/_matrix/federation/v1/nothing_here")
    assert (e.value.status, e.value.errcode) == (404, "M_UNRECOGNIZED")
    assert e.value.body == {"errcode": "M_UNRECOGNIZED", "error": "no"}
    # a.test reached under a name that is not its own: wrong destination.
    with pytest.raises(FederationRequestError) as e:
        await b.client.request("GET", "alias.test", "/_matrix/federation/v1/echo/x")
    assert (e.value.status, e.value.errcode) == (401, "M_UNAUTHORIZED")
    with pytest.raises(FederationRequestError) as e:
        await b.client.request("GET", "down.test", "/_matrix/federation/v1/echo/x", timeout=5)
    assert e.value.status == 0
    with pytest.raises(FederationRequestError) as e:
        await b.client.request("GET", "bad:name:x", "/x")
    assert e.value.status == 0


async def test_unknown_origin_is_unauthorized(network: Network) -> None:
    # A request claiming to come from a server whose keys cannot be fetched.
    stranger = FederationClient(
        "down.test", generate_signing_key("s"),
        ServerResolver({"a.test": f"127.0.0.1:{network['a.test'].http.port}"}), None, scheme="http",
    )
    await stranger.start()
    try:
        with pytest.raises(FederationRequestError) as e:
            await stranger.request("GET", "a.test", "/_matrix/federation/v1/echo/x")
        assert (e.value.status, e.value.errcode) == (401, "M_UNAUTHORIZED")
    finally:
        await stranger.close()


async def test_impostor_key_is_unauthorized(network: Network) -> None:
    # Claims to be b.test but signs with a key b.test never published.
    impostor = FederationClient(
        "b.test", generate_signing_key("b1"),
        ServerResolver({"a.test": f"127.0.0.1:{network['a.test'].http.port}"}), None, scheme="http",
    )
    await impostor.start()
    try:
        with pytest.raises(FederationRequestError) as e:
            await impostor.request("PUT", "a.test", "/_matrix/federation/v1/echo/x", body={"a": 1})
        assert (e.value.status, e.value.errcode) == (401, "M_UNAUTHORIZED")
    finally:
        await impostor.close()


async def test_get_json_unsigned(network: Network) -> None:
    b = network["b.test"]
    body = await b.client.get_json_unsigned("a.test", "/_matrix/key/v2/server")
    assert body["server_name"] == "a.test"
    signed = sign_json({"x": 1}, "a.test", network["a.test"].key)
    await b.keyring.verify_json(signed, "a.test")


async def test_notary_refetches_an_expired_cached_response(network: Network, a_client: TestClient) -> None:
    """Spec "Querying keys through another server": a cached response that no longer meets
    minimum_valid_until_ts is fetched again, and the fresh one is served, with our signature."""
    import time

    b = network["b.test"]
    now = int(time.time() * 1000)
    real_clock = b.keyring._clock
    b.keyring._clock = lambda: now - 2 * DAY_MS  # b publishes a response that expired yesterday
    try:
        resp = await a_client.get("/_matrix/key/v2/query/b.test?minimum_valid_until_ts=0")
        (old,) = (await resp.json())["server_keys"]
        assert old["valid_until_ts"] < now
    finally:
        b.keyring._clock = real_clock
    resp = await a_client.get(f"/_matrix/key/v2/query/b.test?minimum_valid_until_ts={now + 3_600_000}")
    (fresh,) = (await resp.json())["server_keys"]
    assert fresh["valid_until_ts"] >= now + 3_600_000
    verify_json_signature(fresh, "b.test", b.key.key_id, b.key.verify_key_bytes)
    a = network["a.test"]
    verify_json_signature(fresh, "a.test", a.key.key_id, a.key.verify_key_bytes)

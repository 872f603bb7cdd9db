"""X-Matrix signing against the spec's signing test vectors
(https://spec.matrix.org/v1.19/appendices/#signing-details), and header parsing edge cases."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict
from yarl import URL

from federation.inbound.auth import ORIGIN, make_xmatrix_middleware
from federation.outbound.client import build_uri
from federation.outbound.xmatrix import (
    XMatrixAuth,
    format_header,
    parse_xmatrix_header,
    request_json_for_signing,
    sign_request,
)
from homeserver.core.canonical_json import encode_canonical_json
from homeserver.core.errors import SignatureError
from homeserver.core.signing import SigningKey, decode_base64, verify_json_signature
from homeserver.services.ports import FederationRequestError

TEST_KEY = SigningKey("1", decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"))

GET_URI = "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aremote.example&field=displayname"
GET_SIGNED = (
    '{"destination":"remote.example","method":"GET","origin":"domain",'
    '"uri":"/_matrix/federation/v1/query/profile?user_id=%40alice%3Aremote.example&field=displayname"}'
)
GET_SIG = "or3jFTAcrMVk75mEwA8TkB2plYoaWONxNMyAKTPKTWJAXNGYLCqdlKrMV7PWTFSG9igGfVH4c2ELIDW8cyzaDg"

PUT_URI = "/_matrix/federation/v1/send/1700000000000"
PUT_CONTENT = {
    "origin": "domain",
    "origin_server_ts": 1700000000000,
    "pdus": [],
    "edus": [{"edu_type": "m.typing", "content": {"room_id": "!r:domain", "typing": True, "user_id": "@a:domain"}}],
}
PUT_SIGNED = (
    '{"content":{"edus":[{"content":{"room_id":"!r:domain","typing":true,"user_id":"@a:domain"},'
    '"edu_type":"m.typing"}],"origin":"domain","origin_server_ts":1700000000000,"pdus":[]},'
    '"destination":"remote.example","method":"PUT","origin":"domain",'
    '"uri":"/_matrix/federation/v1/send/1700000000000"}'
)
PUT_SIG = "K93JSbl+R3KA3k//N8BdoSsvcyeaC/jV/rCVe6D0ZrbTmTt4FNHTT1s4x5ciSzyIn8QyPBA+OrJRG++g/N/CAQ"


def test_get_vector() -> None:
    obj = request_json_for_signing("GET", GET_URI, "domain", "remote.example")
    assert encode_canonical_json(obj).decode() == GET_SIGNED
    header = sign_request(TEST_KEY, "domain", "remote.example", "GET", GET_URI)
    assert header == (
        f'X-Matrix origin="domain",destination="remote.example",key="ed25519:1",sig="{GET_SIG}"'
    )


def test_put_vector() -> None:
    obj = request_json_for_signing("PUT", PUT_URI, "domain", "remote.example", PUT_CONTENT)
    assert encode_canonical_json(obj).decode() == PUT_SIGNED
    header = sign_request(TEST_KEY, "domain", "remote.example", "put", PUT_URI, PUT_CONTENT)
    assert parse_xmatrix_header(header) == XMatrixAuth("domain", "remote.example", "ed25519:1", PUT_SIG)


def test_empty_body_is_signed_but_none_is_omitted() -> None:
    assert request_json_for_signing("POST", "/x", "a", "b", {})["content"] == {}
    assert "content" not in request_json_for_signing("GET", "/x", "a", "b", None)


def test_build_uri_matches_vector() -> None:
    uri = build_uri(
        "/_matrix/federation/v1/query/profile",
        {"user_id": "@alice:remote.example", "field": "displayname"},
    )
    assert uri == GET_URI
    assert build_uri("/p", {"v": ["$a", "$b"], "limit": "2"}) == "/p?v=%24a&v=%24b&limit=2"
    assert build_uri("/p", {}) == "/p"
    assert build_uri("/p", {"q": "a b"}) == "/p?q=a%20b"


@pytest.mark.parametrize(
    "header",
    [
        'X-Matrix origin="domain",destination="remote.example",key="ed25519:1",sig="abc"',
        'X-Matrix origin=domain,destination=remote.example,key=ed25519:1,sig=abc',
        'X-Matrix   origin="domain" , destination="remote.example",\tkey="ed25519:1" ,sig="abc"',
        'X-Matrix ORIGIN="domain",Destination="remote.example",KEY="ed25519:1",Sig="abc"',
        'x-matrix origin="domain",destination="remote.example",key="ed25519:1",sig="abc"',
        'X-Matrix sig="abc",key="ed25519:1",destination="remote.example",origin="domain",extra="x"',
        'X-Matrix origin="domain",destination="remote.example",key="ed25519:1",sig="abc",',
    ],
)
def test_parse_tolerant(header: str) -> None:
    assert parse_xmatrix_header(header) == XMatrixAuth("domain", "remote.example", "ed25519:1", "abc")


def test_parse_ports_escapes_and_missing_destination() -> None:
    auth = parse_xmatrix_header('X-Matrix origin=hs1:8448,key="ed25519:a_b",sig="x\\"y,z"')
    assert auth == XMatrixAuth("hs1:8448", None, "ed25519:a_b", 'x"y,z')
    assert parse_xmatrix_header('X-Matrix origin="[::1]:8448",key="k",sig="s"').origin == "[::1]:8448"


def test_format_roundtrip_with_quotes() -> None:
    auth = XMatrixAuth('we"ird', "d\\x", "ed25519:1", "s")
    assert parse_xmatrix_header(format_header(auth)) == auth


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer abc",
        'X-Matrixorigin="domain",key="k",sig="s"',
        "X-Matrix",
        'X-Matrix key="ed25519:1",sig="abc"',
        'X-Matrix origin="domain",sig="abc"',
        'X-Matrix origin="domain",key="ed25519:1"',
        'X-Matrix origin="domain",key="ed25519:1",sig=""',
        'X-Matrix origin="domain",key="ed25519:1",sig="abc',
        'X-Matrix origin="domain" junk,key="ed25519:1",sig="abc"',
        'X-Matrix origin,key="ed25519:1",sig="abc"',
    ],
)
def test_parse_rejects(header: str) -> None:
    with pytest.raises(ValueError):
        parse_xmatrix_header(header)


# ---- inbound middleware (federation/inbound/auth.py) with a stand-in keyring ----

class FakeKeyring:
    """Knows TEST_KEY for "domain"; ``fail`` makes every check raise it (e.g. key fetch trouble)."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[dict[str, Any], str, int | None]] = []

    async def verify_json(self, obj: Mapping[str, Any], server_name: str, at_ts: int | None = None) -> None:
        self.calls.append((dict(obj), server_name, at_ts))
        if self.fail is not None:
            raise self.fail
        if server_name != "domain" or TEST_KEY.key_id not in obj["signatures"]["domain"]:
            raise SignatureError("unknown key")
        verify_json_signature(dict(obj), server_name, TEST_KEY.key_id, TEST_KEY.verify_key_bytes)

    async def verify_event_signatures(self, room_version: str, pdu: Mapping[str, Any]) -> None:
        raise NotImplementedError


async def _handler(request: web.Request) -> web.Response:
    raw = await request.read()
    return web.json_response({"origin": request.get(ORIGIN), "raw": raw.decode()})


@pytest.fixture
def make_client(aiohttp_client: Any) -> Any:
    async def make(keyring: FakeKeyring) -> TestClient:
        app = web.Application(middlewares=[make_xmatrix_middleware("remote.example", keyring)])
        app.router.add_route("*", "/{tail:.*}", _handler)
        return await aiohttp_client(app)

    return make


async def _send(client: TestClient, method: str, uri: str, auth: str | list[str] | None,
                body: bytes | None = None) -> tuple[int, Any]:
    headers = CIMultiDict()
    for value in [auth] if isinstance(auth, str) else auth or []:
        headers.add("Authorization", value)
    if body is not None:
        headers["Content-Type"] = "application/json"
    url = URL(str(client.make_url("")).rstrip("/") + uri, encoded=True)
    async with client.session.request(method, url, headers=headers, data=body) as resp:
        return resp.status, await resp.json()


async def test_middleware_accepts_the_spec_vectors(make_client: Any) -> None:
    keyring = FakeKeyring()
    client = await make_client(keyring)
    header = sign_request(TEST_KEY, "domain", "remote.example", "GET", GET_URI)
    status, body = await _send(client, "GET", GET_URI, header)
    assert (status, body["origin"]) == (200, "domain")
    assert keyring.calls[0][2] is None  # request auth: current keys only
    raw = json.dumps(PUT_CONTENT, indent=2).encode()  # any formatting: the parsed body is signed
    header = sign_request(TEST_KEY, "domain", "remote.example", "PUT", PUT_URI, PUT_CONTENT)
    assert header.endswith(f'sig="{PUT_SIG}"')
    status, body = await _send(client, "PUT", PUT_URI, header, raw)
    assert (status, body) == (200, {"origin": "domain", "raw": raw.decode()})  # body still readable


async def test_middleware_rejections(make_client: Any) -> None:
    client = await make_client(FakeKeyring())
    uri = "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aremote.example"
    good = sign_request(TEST_KEY, "domain", "remote.example", "GET", uri)

    async def expect(status: int, errcode: str, auth: Any, method: str = "GET", target: str = uri,
                     body: bytes | None = None) -> None:
        got_status, got = await _send(client, method, target, auth, body)
        assert (got_status, got["errcode"]) == (status, errcode), got
        assert got["error"]

    await expect(401, "M_UNAUTHORIZED", None)
    await expect(401, "M_UNAUTHORIZED", "Bearer abc")
    await expect(401, "M_UNAUTHORIZED", 'X-Matrix origin="domain"')
    await expect(401, "M_UNAUTHORIZED", good.replace("sig=\"", "sig=\"AAAA"))
    # The same signature does not cover another uri (query decoded) or method.
    await expect(401, "M_UNAUTHORIZED", good, target=uri.replace("%40", "@"))
    await expect(401, "M_UNAUTHORIZED", good, method="DELETE")
    await expect(401, "M_UNAUTHORIZED", good, method="PUT", body=b"{}")
    await expect(401, "M_UNAUTHORIZED", [good, good.replace('origin="domain"', 'origin="other"')])
    await expect(401, "M_UNAUTHORIZED", sign_request(TEST_KEY, "other", "remote.example", "GET", uri))
    await expect(401, "M_UNAUTHORIZED", sign_request(TEST_KEY, "domain", "elsewhere", "GET", uri))
    put = sign_request(TEST_KEY, "domain", "remote.example", "PUT", uri, {})
    await expect(400, "M_NOT_JSON", put, method="PUT", body=b"{nope")


async def test_middleware_missing_destination_means_us(make_client: Any) -> None:
    client = await make_client(FakeKeyring())
    header = sign_request(TEST_KEY, "domain", "remote.example", "GET", "/_matrix/federation/v1/x")
    legacy = header.replace(',destination="remote.example"', "")
    status, body = await _send(client, "GET", "/_matrix/federation/v1/x", legacy)
    assert (status, body["origin"]) == (200, "domain")


async def test_key_fetch_failure_is_401(make_client: Any) -> None:
    uri = "/_matrix/federation/v1/x"
    header = sign_request(TEST_KEY, "domain", "remote.example", "GET", uri)
    for fail in (SignatureError("no keys"), FederationRequestError(0, "M_UNKNOWN", "down")):
        client = await make_client(FakeKeyring(fail))
        status, body = await _send(client, "GET", uri, header)
        assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")


async def test_paths_without_auth(make_client: Any) -> None:
    keyring = FakeKeyring()
    client = await make_client(keyring)
    for uri in ("/_matrix/federation/v1/version", "/_matrix/key/v2/server", "/_matrix/client/versions",
                "/_matrix/federation/v1/openid/userinfo?access_token=x"):
        status, body = await _send(client, "GET", uri, None)
        assert (status, body["origin"]) == (200, None), uri
    status, _ = await _send(client, "GET", "/_matrix/federation/v1/versionx", None)
    assert status == 401
    assert keyring.calls == []

"""Keyring against in-process key servers (plain HTTP on 127.0.0.1), and the KeyStore on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from federation.outbound.client import FederationClient
from federation.outbound.keyring import KeyResponseError, Keyring, parse_key_response
from federation.outbound.resolver import ServerResolver
from homeserver.core.errors import SignatureError
from homeserver.core.events import hash_and_sign_pdu
from homeserver.core.records import ServerKey
from homeserver.core.redaction import redact_pdu
from homeserver.core.signing import SigningKey, encode_base64, generate_signing_key, sign_json
from storage.engine import create_engine
from storage.migrate import migrate
from storage.stores.keys import KeyStore

NOW = 1_700_000_000_000
HOUR = 3600 * 1000
DAY = 24 * HOUR
US, REMOTE, NOTARY = "us.test", "remote.test", "notary.test"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> KeyStore:
    return KeyStore(engine)


def key_response(
    server: str, key: SigningKey, valid_until: int, *, old: dict[str, tuple[SigningKey, int]] | None = None,
    signer: SigningKey | None = None,
) -> dict[str, Any]:
    body = {
        "server_name": server,
        "verify_keys": {key.key_id: {"key": key.verify_key_base64}},
        "old_verify_keys": {
            kid: {"key": k.verify_key_base64, "expired_ts": ts} for kid, (k, ts) in (old or {}).items()
        },
        "valid_until_ts": valid_until,
    }
    signed = sign_json(body, server, signer or key)
    if signer is not None and signer.key_id != key.key_id:
        signed["signatures"][server] = {key.key_id: signed["signatures"][server].pop(signer.key_id)}
    return signed


@attrs.define
class FakeServer:
    """A homeserver that only answers the key APIs, with canned answers."""

    key: SigningKey
    response: dict[str, Any] | None = None  # /_matrix/key/v2/server; None = 404
    query_answer: list[dict[str, Any]] = attrs.Factory(list)  # notary POST answer
    key_requests: int = 0
    query_requests: list[Any] = attrs.Factory(list)
    delay: float = 0.0

    def app(self) -> web.Application:
        async def server_keys(request: web.Request) -> web.Response:
            self.key_requests += 1
            await asyncio.sleep(self.delay)
            if self.response is None:
                return web.json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)
            return web.json_response(self.response)

        async def query(request: web.Request) -> web.Response:
            assert request.headers["Authorization"].startswith("X-Matrix ")
            self.query_requests.append(await request.json())
            return web.json_response({"server_keys": self.query_answer})

        app = web.Application()
        app.router.add_get("/_matrix/key/v2/server", server_keys)
        app.router.add_post("/_matrix/key/v2/query", query)
        return app


@attrs.define
class Net:
    us_key: SigningKey
    remote: FakeServer
    notary: FakeServer
    static: dict[str, str]
    store: KeyStore
    clients: list[FederationClient] = attrs.Factory(list)

    async def keyring(self, notaries: tuple[str, ...] = (), **kw: Any) -> Keyring:
        client = FederationClient(US, self.us_key, ServerResolver(self.static), None, scheme="http")
        await client.start()
        self.clients.append(client)
        kw.setdefault("clock", lambda: NOW)
        return Keyring(US, self.us_key, {}, self.store, client, notaries, **kw)


@pytest.fixture
async def net(aiohttp_server: Any, store: KeyStore) -> AsyncIterator[Net]:
    remote = FakeServer(generate_signing_key("r1"))
    notary = FakeServer(generate_signing_key("n1"))
    notary.response = key_response(NOTARY, notary.key, NOW + DAY)
    remote_srv = await aiohttp_server(remote.app())
    notary_srv = await aiohttp_server(notary.app())
    static = {
        REMOTE: f"127.0.0.1:{remote_srv.port}",
        NOTARY: f"127.0.0.1:{notary_srv.port}",
        "down.test": "127.0.0.1:1",
    }
    n = Net(generate_signing_key("u1"), remote, notary, static, store)
    yield n
    for c in n.clients:
        await c.close()


# ---- KeyStore ----

async def test_key_store_roundtrip(store: KeyStore) -> None:
    k1 = ServerKey("a.test", "ed25519:1", b"\x01" * 32, NOW + DAY, None, NOW)
    k2 = ServerKey("a.test", "ed25519:0", b"\x02" * 32, NOW - DAY, NOW - DAY, NOW)
    await store.store_keys([k1, k2])
    assert await store.get_keys("a.test") == {"ed25519:1": k1, "ed25519:0": k2}
    k1b = attrs.evolve(k1, valid_until_ts=NOW + 2 * DAY)
    await store.store_keys([k1b])
    assert (await store.get_keys("a.test"))["ed25519:1"] == k1b
    assert await store.get_keys("b.test") == {}
    assert await store.get_key_response("a.test") is None
    await store.store_key_response("a.test", {"server_name": "a.test", "x": [1, "é"]}, NOW)
    await store.store_key_response("a.test", {"server_name": "a.test", "x": [2]}, NOW + 1)
    assert await store.get_key_response("a.test") == {"server_name": "a.test", "x": [2]}


# ---- parsing ----

def test_parse_key_response_checks() -> None:
    key, other = generate_signing_key("a"), generate_signing_key("b")
    good = key_response(REMOTE, key, NOW)
    parsed = parse_key_response(REMOTE, good)
    assert parsed.verify_keys == {key.key_id: key.verify_key_bytes}
    assert parsed.raw == good
    with pytest.raises(KeyResponseError):
        parse_key_response("other.test", good)
    with pytest.raises(KeyResponseError):
        parse_key_response(REMOTE, key_response(REMOTE, key, NOW, signer=other))
    with pytest.raises(KeyResponseError):
        parse_key_response(REMOTE, {**good, "valid_until_ts": NOW + 1})  # signature no longer matches
    no_ts = sign_json({k: v for k, v in good.items() if k not in ("signatures", "valid_until_ts")}, REMOTE, key)
    with pytest.raises(KeyResponseError):
        parse_key_response(REMOTE, no_ts)
    # Notary signatures are stripped from what gets stored.
    notarised = sign_json(good, NOTARY, other)
    assert parse_key_response(REMOTE, notarised).raw == good


# ---- fetching ----

async def test_fetch_then_cache(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + DAY)
    kr = await net.keyring()
    kid = net.remote.key.key_id
    assert await kr.get_verify_key(REMOTE, kid) == net.remote.key.verify_key_bytes
    assert await kr.get_verify_key(REMOTE, kid, NOW + HOUR) == net.remote.key.verify_key_bytes
    assert net.remote.key_requests == 1
    # A fresh keyring (a restart) finds it in the database.
    kr2 = await net.keyring()
    assert await kr2.get_verify_key(REMOTE, kid) == net.remote.key.verify_key_bytes
    assert net.remote.key_requests == 1
    assert await net.store.get_key_response(REMOTE) == net.remote.response


async def test_concurrent_lookups_share_one_fetch(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + DAY)
    net.remote.delay = 0.05
    kr = await net.keyring()
    keys = await asyncio.gather(*(kr.get_verify_key(REMOTE, net.remote.key.key_id) for _ in range(5)))
    assert set(keys) == {net.remote.key.verify_key_bytes}
    assert net.remote.key_requests == 1


async def test_bad_self_signature_rejected(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + DAY, signer=generate_signing_key("x"))
    kr = await net.keyring()
    with pytest.raises(SignatureError):
        await kr.get_verify_key(REMOTE, net.remote.key.key_id)
    assert await net.store.get_keys(REMOTE) == {}


async def test_unknown_key_and_unreachable_server(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + DAY)
    kr = await net.keyring()
    with pytest.raises(SignatureError):
        await kr.get_verify_key(REMOTE, "ed25519:nope")
    with pytest.raises(SignatureError):
        await kr.get_verify_key("down.test", "ed25519:a")
    with pytest.raises(SignatureError):
        await kr.get_verify_key(REMOTE, "curve25519:x")


async def test_refetch_is_rate_limited_per_server(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + DAY)
    now = [NOW]
    kr = await net.keyring(clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(SignatureError):
            await kr.get_verify_key(REMOTE, "ed25519:random")
    assert net.remote.key_requests == 1
    now[0] += 61_000
    new_key = generate_signing_key("r2")
    net.remote.response = key_response(REMOTE, new_key, NOW + DAY)
    assert await kr.get_verify_key(REMOTE, new_key.key_id) == new_key.verify_key_bytes
    assert net.remote.key_requests == 2


async def test_key_validity_for_events(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + HOUR)
    kr = await net.keyring()
    obj = sign_json({"a": 1}, REMOTE, net.remote.key)
    await kr.verify_json(obj, REMOTE, NOW + HOUR)  # valid_until_ts >= origin_server_ts
    with pytest.raises(SignatureError):
        await kr.verify_json(obj, REMOTE, NOW + HOUR + 1)  # event after the key expired
    assert net.remote.key_requests == 1  # the retry was rate limited


async def test_validity_capped_at_seven_days(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + 30 * DAY)
    kr = await net.keyring()
    obj = sign_json({"a": 1}, REMOTE, net.remote.key)
    await kr.verify_json(obj, REMOTE, NOW + 6 * DAY)
    with pytest.raises(SignatureError):
        await kr.verify_json(obj, REMOTE, NOW + 8 * DAY)
    assert (await net.store.get_keys(REMOTE))[net.remote.key.key_id].valid_until_ts == NOW + 7 * DAY


async def test_expired_key_not_valid_for_requests(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW - 1)
    kr = await net.keyring()
    obj = sign_json({"a": 1}, REMOTE, net.remote.key)
    with pytest.raises(SignatureError):
        await kr.verify_json(obj, REMOTE)
    await kr.verify_json(obj, REMOTE, NOW - 10)  # an event from before is fine


async def test_old_verify_keys(net: Net) -> None:
    old = generate_signing_key("old")
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + DAY, old={old.key_id: (old, NOW - HOUR)})
    kr = await net.keyring()
    obj = sign_json({"a": 1}, REMOTE, old)
    await kr.verify_json(obj, REMOTE, NOW - 2 * HOUR)
    with pytest.raises(SignatureError):
        await kr.verify_json(obj, REMOTE, NOW - HOUR)  # at expired_ts: no longer
    with pytest.raises(SignatureError):
        await kr.verify_json(obj, REMOTE)  # never for requests
    assert net.remote.key_requests == 1


async def test_verify_json_needs_a_good_signature(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + DAY)
    kr = await net.keyring()
    with pytest.raises(SignatureError):
        await kr.verify_json({"a": 1}, REMOTE)  # unsigned
    forged = sign_json({"a": 1}, REMOTE, net.remote.key)
    forged["a"] = 2
    with pytest.raises(SignatureError):
        await kr.verify_json(forged, REMOTE)
    # An extra signature under an unknown key id is skipped, not fatal.
    obj = sign_json({"a": 1}, REMOTE, net.remote.key)
    obj["signatures"][REMOTE]["ed25519:gone"] = obj["signatures"][REMOTE][net.remote.key.key_id]
    await kr.verify_json(obj, REMOTE)


async def test_own_keys_answered_locally(net: Net) -> None:
    old = generate_signing_key("old")
    client = FederationClient(US, net.us_key, ServerResolver({}), None, scheme="http")
    kr = Keyring(US, net.us_key, {old.key_id: (old, NOW)}, net.store, client, clock=lambda: NOW)
    assert await kr.get_verify_key(US, net.us_key.key_id) == net.us_key.verify_key_bytes
    assert await kr.get_verify_key(US, old.key_id, NOW - 1) == old.verify_key_bytes
    with pytest.raises(SignatureError):
        await kr.get_verify_key(US, old.key_id)
    with pytest.raises(SignatureError):
        await kr.get_verify_key(US, old.key_id, NOW)


# ---- notaries ----

async def test_notary_fallback(net: Net) -> None:
    remote_resp = key_response(REMOTE, net.remote.key, NOW + DAY)
    net.notary.query_answer = [sign_json(remote_resp, NOTARY, net.notary.key)]
    kr = await net.keyring(notaries=(NOTARY,))
    kid = net.remote.key.key_id
    assert await kr.get_verify_key(REMOTE, kid) == net.remote.key.verify_key_bytes
    assert net.remote.key_requests == 1  # tried directly first (404)
    assert net.notary.query_requests == [
        {"server_keys": {REMOTE: {kid: {"minimum_valid_until_ts": NOW}}}}
    ]
    assert net.notary.key_requests == 1  # the notary's own key, to check its signature
    assert await net.store.get_key_response(REMOTE) == remote_resp


async def test_notary_answer_needs_notary_signature(net: Net) -> None:
    remote_resp = key_response(REMOTE, net.remote.key, NOW + DAY)
    net.notary.query_answer = [
        sign_json(remote_resp, NOTARY, generate_signing_key(net.notary.key.version)),  # wrong key
    ]
    kr = await net.keyring(notaries=(NOTARY,))
    with pytest.raises(SignatureError):
        await kr.get_verify_key(REMOTE, net.remote.key.key_id)


async def test_notary_answer_needs_self_signature(net: Net) -> None:
    forged = key_response(REMOTE, net.remote.key, NOW + DAY, signer=net.notary.key)
    net.notary.query_answer = [sign_json(forged, NOTARY, net.notary.key)]
    kr = await net.keyring(notaries=(NOTARY,))
    with pytest.raises(SignatureError):
        await kr.get_verify_key(REMOTE, net.remote.key.key_id)


# ---- events ----

def _pdu(sender: str, **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.member", "room_id": "!r:remote.test", "sender": sender, "state_key": sender,
        "content": {"membership": "join", **content}, "origin_server_ts": NOW, "depth": 3,
        "prev_events": ["$p"], "auth_events": ["$a"],
    }


async def test_verify_event_signatures(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + DAY)
    kr = await net.keyring()
    pdu = hash_and_sign_pdu("10", _pdu("@bob:remote.test", displayname="Bob"), REMOTE, net.remote.key)
    await kr.verify_event_signatures("10", pdu)
    # The signature covers the redacted form: non-protected content may change...
    await kr.verify_event_signatures("10", {**pdu, "content": {**pdu["content"], "displayname": "X"}})
    # ...protected fields may not.
    with pytest.raises(SignatureError):
        await kr.verify_event_signatures("10", {**pdu, "depth": 4})
    # Signed by the wrong server.
    with pytest.raises(SignatureError):
        await kr.verify_event_signatures("10", {**pdu, "sender": "@eve:down.test", "state_key": "@eve:down.test"})


async def test_restricted_join_needs_authorising_server(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + DAY)
    kr = await net.keyring()
    pdu = hash_and_sign_pdu(
        "10", _pdu("@bob:remote.test", join_authorised_via_users_server="@alice:us.test"), REMOTE, net.remote.key,
    )
    with pytest.raises(SignatureError):
        await kr.verify_event_signatures("10", pdu)
    ours = sign_json(redact_pdu("10", pdu), US, net.us_key)["signatures"][US]
    co_signed = {**pdu, "signatures": {**pdu["signatures"], US: ours}}
    await kr.verify_event_signatures("10", co_signed)


def test_own_key_response_shape() -> None:
    old = generate_signing_key("old")
    kr = Keyring(US, generate_signing_key("u1"), {old.key_id: (old.verify_key_bytes, NOW)},
                 None, None, clock=lambda: NOW)  # type: ignore[arg-type]
    body = kr.own_key_response()
    assert body["valid_until_ts"] == NOW + DAY
    assert body["old_verify_keys"] == {old.key_id: {"key": encode_base64(old.verify_key_bytes), "expired_ts": NOW}}
    parsed = parse_key_response(US, body)
    assert list(parsed.old_verify_keys) == [old.key_id]


async def test_close_cancels_inflight_fetches(net: Net) -> None:
    net.remote.response = key_response(REMOTE, net.remote.key, NOW + DAY)
    net.remote.delay = 1
    kr = await net.keyring()
    lookup = asyncio.create_task(kr.get_verify_key(REMOTE, net.remote.key.key_id))
    await asyncio.sleep(0.05)
    await kr.close()
    with pytest.raises(asyncio.CancelledError):
        await lookup

"""The transport seam: HttpsTransport's reading of real HTTP answers, and the sender's
reaction to each outcome through a fake in-memory Transport (the seam under test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from federation.outbound.client import FederationClient
from federation.outbound.resolver import ServerResolver
from federation.outbound.sender import FederationSender
from federation.outbound.transport import (
    Delivered,
    DeliveryResult,
    HttpsTransport,
    Refused,
    Retry,
    Transaction,
    TransportRouter,
)
from homeserver.core.signing import generate_signing_key
from homeserver.services.clock import now_ms
from storage.engine import create_engine
from storage.migrate import migrate
from storage.stores.outbox import OutboxStore

ME = "me.test"
PEER = "peer.test"
OTHER = "other.test"
DOWN = "down.test"


def pdu(n: int) -> dict[str, Any]:
    return {"type": "m.room.message", "room_id": "!r:me.test", "sender": "@a:me.test",
            "content": {"n": n}, "origin_server_ts": 1}


def txn(txn_id: str = "t-1", destination: str = PEER) -> Transaction:
    return Transaction(
        origin=ME, destination=destination, txn_id=txn_id, origin_server_ts=1234,
        pdus=[pdu(0)], edus=[{"edu_type": "m.typing", "content": {"typing": True}}],
    )


# -- HttpsTransport against a real HTTP server ----------------------------------------------


@attrs.define
class Peer:
    """A local aiohttp server playing the peer: answers PUT /send with what the test says."""

    status: int = 200
    text: str = '{"pdus": {}}'
    received: list[tuple[str, str, Any]] = attrs.Factory(list)  # (txn id, X-Matrix?, body)

    async def send(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.received.append((request.match_info["txn_id"], auth.split(" ")[0], await request.json()))
        return web.Response(status=self.status, text=self.text, content_type="application/json")


@pytest.fixture
async def peer_and_transport(
    aiohttp_server: Callable[..., Awaitable[TestServer]], unused_tcp_port_factory: Callable[[], int],
) -> AsyncIterator[tuple[Peer, HttpsTransport]]:
    peer = Peer()
    app = web.Application()
    app.router.add_put("/_matrix/federation/v1/send/{txn_id}", peer.send)
    server = await aiohttp_server(app)
    static = {PEER: f"127.0.0.1:{server.port}", DOWN: f"127.0.0.1:{unused_tcp_port_factory()}"}
    client = FederationClient(ME, generate_signing_key("k1"), ServerResolver(static), None, scheme="http")
    await client.start()
    yield peer, HttpsTransport(client, timeout=10)
    await client.close()


async def test_https_sends_the_transaction_signed(
    peer_and_transport: tuple[Peer, HttpsTransport],
) -> None:
    peer, transport = peer_and_transport
    peer.text = '{"pdus": {"$ok": {}, "$bad": {"error": "not allowed"}}}'
    result = await transport.deliver(txn("abc-7"))
    assert result == Delivered(pdu_errors={"$bad": "not allowed"})
    assert peer.received == [("abc-7", "X-Matrix", {
        "origin": ME, "origin_server_ts": 1234, "pdus": [pdu(0)],
        "edus": [{"edu_type": "m.typing", "content": {"typing": True}}],
    })]


@pytest.mark.parametrize(
    ("status", "text", "expected"),
    [
        (200, "{}", Delivered()),
        (200, "this is not JSON", Retry),
        (500, '{"errcode": "M_UNKNOWN"}', Retry),
        (502, "", Retry),
        (503, "<html>busy</html>", Retry),
        (408, "", Retry),
        (429, '{"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 2500}', Retry),
        (400, '{"errcode": "M_BAD_JSON", "error": "nope"}', Refused),
        (401, '{"errcode": "M_UNAUTHORIZED"}', Refused),
        (403, '{"errcode": "M_FORBIDDEN"}', Refused),
        (404, '{"errcode": "M_UNRECOGNIZED"}', Refused),
    ],
)
async def test_https_classifies_the_answer(
    peer_and_transport: tuple[Peer, HttpsTransport], status: int, text: str, expected: Any,
) -> None:
    peer, transport = peer_and_transport
    peer.status, peer.text = status, text
    result = await transport.deliver(txn())
    if isinstance(expected, type):
        assert isinstance(result, expected), result
    else:
        assert result == expected
    assert len(peer.received) == 1


async def test_https_passes_on_retry_after_only_for_429(
    peer_and_transport: tuple[Peer, HttpsTransport],
) -> None:
    peer, transport = peer_and_transport
    peer.status, peer.text = 429, '{"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 2500}'
    limited = await transport.deliver(txn())
    assert isinstance(limited, Retry) and limited.after_ms == 2500
    peer.text = '{"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": "soon"}'
    assert await transport.deliver(txn()) == Retry(limited.reason, None)
    peer.status, peer.text = 503, '{"retry_after_ms": 2500}'
    busy = await transport.deliver(txn())
    assert isinstance(busy, Retry) and busy.after_ms is None


async def test_https_unreachable_peer_is_retried(
    peer_and_transport: tuple[Peer, HttpsTransport],
) -> None:
    _, transport = peer_and_transport
    assert isinstance(await transport.deliver(txn(destination=DOWN)), Retry)
    assert isinstance(await transport.deliver(txn(destination="bad name!")), Retry)


# -- the sender through a fake Transport ----------------------------------------------------


class FakeTransport:
    """In memory: records every transaction; answers from a script, then Delivered()."""

    def __init__(self) -> None:
        self.sent: list[Transaction] = []
        self.script: list[DeliveryResult | Exception] = []

    async def deliver(self, txn: Transaction) -> DeliveryResult:
        self.sent.append(txn)
        if not self.script:
            return Delivered()
        outcome = self.script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def pdus(self) -> list[list[int]]:
        return [[p["content"]["n"] for p in t.pdus] for t in self.sent]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    await migrate(eng)
    yield eng
    await eng.dispose()


@pytest.fixture
async def make_sender(engine: AsyncEngine) -> AsyncIterator[Callable[..., FederationSender]]:
    senders: list[FederationSender] = []

    def make(transport: Any, **kw: Any) -> FederationSender:
        kw.setdefault("backoff_initial_ms", 5)
        kw.setdefault("backoff_max_ms", 20)
        sender = FederationSender(ME, transport, OutboxStore(engine), **kw)
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        await sender.stop()


async def idle(sender: FederationSender, destination: str = PEER) -> None:
    for _ in range(2000):
        if destination not in sender.active_destinations():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{destination} still has a worker")


async def test_delivered_with_pdu_errors_is_done(
    make_sender: Callable[..., FederationSender],
) -> None:
    transport = FakeTransport()
    transport.script = [Delivered(pdu_errors={"$x": "not allowed"})]
    sender = make_sender(transport)
    await sender.send_pdu([PEER], pdu(0))
    await idle(sender)
    assert transport.pdus() == [[0]]
    assert transport.sent[0].origin == ME and transport.sent[0].destination == PEER
    assert await sender.pending_count(PEER) == 0


async def test_retry_resends_the_same_transaction_until_delivered(
    engine: AsyncEngine, make_sender: Callable[..., FederationSender],
) -> None:
    transport = FakeTransport()
    transport.script = [Retry("unreachable"), Retry("busy"), OSError("a transport bug")]
    sender = make_sender(transport)
    await sender.send_pdu([PEER], pdu(0))
    sender.send_edu([PEER], "m.typing", {"room_id": "!r", "user_id": "@a:me.test", "typing": True})
    await idle(sender)
    assert len(transport.sent) == 4
    assert len({t.txn_id for t in transport.sent}) == 1  # same body, same txnId
    assert all(t == transport.sent[0] for t in transport.sent)
    assert len(transport.sent[0].edus) == 1
    state = await OutboxStore(engine).get_retry(PEER)
    assert state is not None and state.failure_count == 0  # reset by the delivery
    assert await sender.pending_count(PEER) == 0


async def test_retry_after_from_the_peer_lengthens_the_backoff_up_to_the_maximum(
    engine: AsyncEngine, make_sender: Callable[..., FederationSender],
) -> None:
    now = 1_000_000
    transport = FakeTransport()
    transport.script = [Retry("rate limited", after_ms=30_000)]
    sender = make_sender(transport, clock=lambda: now, backoff_max_ms=60_000)
    await sender.send_pdu([PEER], pdu(0))
    store = OutboxStore(engine)
    for _ in range(400):
        state = await store.get_retry(PEER)
        if state is not None and state.failure_count == 1:
            break
        await asyncio.sleep(0.005)
    assert state is not None and state.retry_after_ts >= now + 30_000
    assert PEER in sender.active_destinations()  # waiting, not given up
    transport.script = [Retry("rate limited", after_ms=10**9)]
    sender.retry_now(PEER)
    for _ in range(400):
        state = await store.get_retry(PEER)
        if state is not None and state.failure_count == 2:
            break
        await asyncio.sleep(0.005)
    assert state is not None and now + 30_000 <= state.retry_after_ts <= now + 60_000
    sender.retry_now(PEER)
    await idle(sender)
    assert transport.pdus() == [[0], [0], [0]]
    assert await sender.pending_count(PEER) == 0


async def test_refused_drops_edus_renames_and_finally_gives_up(
    make_sender: Callable[..., FederationSender],
) -> None:
    transport = FakeTransport()
    transport.script = [Refused("403 M_FORBIDDEN")] * 3
    sender = make_sender(transport, max_rejections=3)
    await sender.send_pdu([PEER], pdu(0))
    # No await in between: the worker has not run yet, so its first batch carries both.
    sender.send_edu([PEER], "m.typing", {"room_id": "!r", "user_id": "@a:me.test", "typing": True})
    await idle(sender)
    assert transport.pdus() == [[0], [0], [0]]
    assert [len(t.edus) for t in transport.sent] == [1, 0, 0]  # EDUs dropped at the first refusal
    assert len({t.txn_id for t in transport.sent}) == 3  # a new txnId for each new body
    assert await sender.pending_count(PEER) == 0  # given up

    await sender.send_pdu([PEER], pdu(1))  # the queue moved on
    await idle(sender)
    assert transport.pdus()[-1] == [1]


async def test_router_picks_the_transport_per_destination(
    make_sender: Callable[..., FederationSender],
) -> None:
    https, other = FakeTransport(), FakeTransport()
    sender = make_sender(TransportRouter(default=https, overrides={OTHER: other}))
    await sender.send_pdu([PEER, OTHER], pdu(0))
    await idle(sender, PEER)
    await idle(sender, OTHER)
    assert [t.destination for t in https.sent] == [PEER]
    assert [t.destination for t in other.sent] == [OTHER]


# -- hostile peers on the real sender: slow, garbage, gigabytes (issue 18 fault drills) -----


@attrs.define
class HostilePeers:
    """Peers that never answer, answer garbage, or stream without end; one good peer."""

    streamed: int = 0  # bytes the endless peer managed to write
    good: list[Any] = attrs.Factory(list)

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.json_response({})

    async def garbage(self, request: web.Request) -> web.Response:
        return web.Response(body=bytes(range(256)) * 64, content_type="application/json")

    async def endless(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        chunk = b'{"pdus": {' + b" " * (64 * 1024)
        try:
            while self.streamed < 4 * 1024**3:  # "gigabytes", if anyone kept reading
                await resp.write(chunk)
                self.streamed += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the reader hung up: what we want
        return resp

    async def ok(self, request: web.Request) -> web.Response:
        self.good.append(await request.json())
        return web.json_response({"pdus": {}})


async def test_hostile_peers_back_off_alone_and_reads_are_bounded(
    aiohttp_server: Callable[..., Awaitable[TestServer]], engine: AsyncEngine,
    make_sender: Callable[..., FederationSender],
) -> None:
    from federation.outbound.transport.https import SEND_RESPONSE_MAX_BYTES

    peers = HostilePeers()
    route = "/_matrix/federation/v1/send/{txn_id}"
    servers = {}
    for name, handler in [("slow.test", peers.slow), ("garbage.test", peers.garbage),
                          ("endless.test", peers.endless), (PEER, peers.ok)]:
        app = web.Application()
        app.router.add_put(route, handler)
        servers[name] = await aiohttp_server(app)
    static = {name: f"127.0.0.1:{server.port}" for name, server in servers.items()}
    client = FederationClient(ME, generate_signing_key("k1"), ServerResolver(static), None, scheme="http")
    await client.start()
    try:
        # A 2 s timeout stands for the 60 s of production; backoff kept short but real.
        sender = make_sender(HttpsTransport(client, timeout=2), backoff_initial_ms=60_000,
                             backoff_max_ms=60_000)
        bad = ["slow.test", "garbage.test", "endless.test"]
        for n in range(5):
            await sender.send_pdu([*bad, PEER], pdu(n))
        # The good peer gets everything, in order, while the others fail.
        for _ in range(2000):
            if sum(len(t["pdus"]) for t in peers.good) == 5:
                break
            await asyncio.sleep(0.01)
        assert [p["content"]["n"] for t in peers.good for p in t["pdus"]] == [0, 1, 2, 3, 4]
        store = OutboxStore(engine)
        for name in bad:
            for _ in range(1000):  # each failed once (the slow one after its timeout)
                state = await store.get_retry(name)
                if state is not None and state.failure_count >= 1:
                    break
                await asyncio.sleep(0.01)
            assert state is not None and state.failure_count == 1, name
            assert state.retry_after_ts > now_ms() + 30_000, name  # backing off, not hammering
            assert await sender.pending_count(name) == 5, name  # kept for later, nothing dropped
            assert name in sender.active_destinations()
        # The endless body was cut off near the cap, not read for gigabytes.
        assert peers.streamed < SEND_RESPONSE_MAX_BYTES + 16 * 1024 * 1024, peers.streamed
    finally:
        await client.close()

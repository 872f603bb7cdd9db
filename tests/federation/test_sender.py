"""FederationSender + OutboxStore: batching, EDUs, retries, restarts, refusals, wake/retry_now."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from federation.outbound.sender import FederationSender
from federation.outbound.transport import HttpsTransport
from homeserver.core.records import RetryState
from homeserver.services.ports import FederationRequestError, FederationSenderPort
from storage.engine import create_engine
from storage.migrate import migrate
from storage.stores.outbox import OutboxStore

ME = "me.test"
PEER = "peer.test"
OTHER = "other.test"


class FakeClient:
    """In-process FederationClientPort: records /send calls; fails on demand."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []
        self.failures: dict[str, list[Exception | None]] = {}  # next outcomes; None: succeed
        self.always_fail: dict[str, Exception] = {}
        self.gate: asyncio.Event | None = None  # when set up, requests wait for it
        self.response: dict[str, Any] = {"pdus": {}}
        self.on_call: Callable[[], Awaitable[None]] | None = None

    def fail(self, destination: str, *statuses: int) -> None:
        """Outcomes of the next calls to `destination`: 200 succeeds, anything else raises."""
        self.failures.setdefault(destination, []).extend(
            None if s == 200 else FederationRequestError(s, "M_UNKNOWN", f"status {s}")
            for s in statuses
        )

    async def request(
        self, method: str, destination: str, path: str, *,
        query: Mapping[str, str | list[str]] | None = None, body: Any = None,
        timeout: float = 30.0, max_bytes: int | None = None,
    ) -> Any:
        self.calls.append((method, destination, path, body))
        if self.on_call is not None:
            await self.on_call()
        if self.gate is not None:
            await self.gate.wait()
        if destination in self.always_fail:
            raise self.always_fail[destination]
        pending = self.failures.get(destination)
        error = pending.pop(0) if pending else None
        if error is not None:
            raise error
        return self.response

    def sent(self, destination: str) -> list[dict[str, Any]]:
        return [body for _, dest, _, body in self.calls if dest == destination]

    def delivered_pdus(self, destination: str) -> list[int]:
        """`n` of every PDU in the order of the calls (failed attempts included)."""
        return [p["content"]["n"] for body in self.sent(destination) for p in body["pdus"]]


def pdu(n: int) -> dict[str, Any]:
    return {"type": "m.room.message", "room_id": "!r:me.test", "sender": "@a:me.test",
            "content": {"n": n}, "origin_server_ts": 1}


async def until(cond: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def idle(sender: FederationSender, destination: str = PEER) -> None:
    await until(lambda: destination not in sender.active_destinations())


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    await migrate(eng)
    yield eng
    await eng.dispose()


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
async def make_sender(
    engine: AsyncEngine,
) -> AsyncIterator[Callable[..., FederationSender]]:
    senders: list[FederationSender] = []

    def make(client: FakeClient, **kw: Any) -> FederationSender:
        kw.setdefault("backoff_initial_ms", 5)
        kw.setdefault("backoff_max_ms", 20)
        s = FederationSender(ME, HttpsTransport(client), OutboxStore(engine), **kw)
        senders.append(s)
        return s

    yield make
    for s in senders:
        await s.stop()


# -- store ---------------------------------------------------------------------------------


async def test_store_roundtrip(db_url: str) -> None:
    """On SQLite and MariaDB (the `db_url` fixture of tests/conftest.py)."""
    engine = create_engine(db_url)
    try:
        await migrate(engine)
        await _store_roundtrip(OutboxStore(engine))
    finally:
        await engine.dispose()


async def _store_roundtrip(store: OutboxStore) -> None:
    await store.append([PEER, OTHER], '{"n":1}', 10)
    await store.append([PEER], '{"n":2}', 11)
    assert await store.pending_destinations() == [OTHER, PEER]
    batch = await store.next_batch(PEER, 10)
    assert [p for _, p in batch] == [{"n": 1}, {"n": 2}]
    await store.delete(PEER, [batch[0][0]])
    assert await store.pending_count(PEER) == 1
    assert await store.pending_count(OTHER) == 1
    assert await store.get_retry(PEER) is None
    await store.set_retry(PEER, RetryState(2, 99, None))
    await store.set_retry(PEER, RetryState(3, 100, 5))
    assert await store.get_retry(PEER) == RetryState(3, 100, 5)
    assert await store.failing_destinations() == {PEER: RetryState(3, 100, 5)}


# -- sending -------------------------------------------------------------------------------


def test_implements_the_port_exactly() -> None:
    for name in ("send_pdu", "send_edu", "wake"):
        port, impl = getattr(FederationSenderPort, name), getattr(FederationSender, name)
        assert inspect.signature(impl) == inspect.signature(port), name
        assert inspect.iscoroutinefunction(impl) == inspect.iscoroutinefunction(port), name



async def test_batches_of_50_in_order_after_catch_up(
    engine: AsyncEngine, client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    store = OutboxStore(engine)
    for n in range(120):
        await store.append([PEER], f'{{"content":{{"n":{n}}}}}', 0)
    sender = make_sender(client)
    await sender.start()
    await idle(sender)
    bodies = client.sent(PEER)
    assert [len(b["pdus"]) for b in bodies] == [50, 50, 20]
    assert client.delivered_pdus(PEER) == list(range(120))
    method, _, path, body = client.calls[0]
    assert method == "PUT" and path.startswith("/_matrix/federation/v1/send/")
    assert body["origin"] == ME and isinstance(body["origin_server_ts"], int)
    assert len({c[2] for c in client.calls}) == 3  # distinct txnIds
    assert await sender.pending_count(PEER) == 0


async def test_live_sends_are_durable_batched_and_exactly_once(
    engine: AsyncEngine, client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    client.gate = asyncio.Event()  # hold the first transaction so the rest pile up
    sender = make_sender(client)
    for n in range(120):
        await sender.send_pdu([PEER, OTHER], pdu(n))
    # Durable on return: the rows are in the database before anything was acknowledged.
    assert await OutboxStore(engine).pending_count(PEER) == 120
    client.gate.set()
    await idle(sender, PEER)
    await idle(sender, OTHER)
    for dest in (PEER, OTHER):
        assert client.delivered_pdus(dest) == list(range(120))
        assert all(len(b["pdus"]) <= 50 for b in client.sent(dest))
        assert await sender.pending_count(dest) == 0
    assert client.sent(PEER)[0]["pdus"][0] == pdu(0)  # the exact object


async def test_never_sends_to_ourselves(
    client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    sender = make_sender(client)
    await sender.send_pdu([ME, PEER, PEER], pdu(1))
    sender.send_edu([ME], "m.typing", {"room_id": "!r", "user_id": "@a:me.test", "typing": True})
    await idle(sender)
    assert {c[1] for c in client.calls} == {PEER}
    assert client.delivered_pdus(PEER) == [1]
    assert await sender.pending_count(ME) == 0
    assert sender.pending_edu_count(ME) == 0
    await sender.send_pdu([ME], pdu(2))
    assert ME not in sender.active_destinations()


async def test_edus_ride_along_at_most_100_and_coalesce(
    client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    client.gate = asyncio.Event()
    sender = make_sender(client)
    await sender.send_pdu([PEER], pdu(0))  # in flight, held by the gate
    await until(lambda: client.calls)
    for i in range(150):
        sender.send_edu([PEER], "m.direct_to_device", {"message_id": str(i)})
    for typing in (True, False):
        sender.send_edu([PEER], "m.typing", {"room_id": "!r", "user_id": "@a:me.test",
                                             "typing": typing})
    for user, event in (("@a:me.test", "$1"), ("@b:me.test", "$2"), ("@a:me.test", "$3")):
        sender.send_edu([PEER], "m.receipt", {"!r": {"m.read": {user: {"event_ids": [event]}}}})
    await sender.send_pdu([PEER], pdu(1))
    client.gate.set()
    await idle(sender)

    bodies = client.sent(PEER)
    assert all(len(b["edus"]) <= 100 for b in bodies)
    edus = [e for b in bodies for e in b["edus"]]
    to_device = [e["content"]["message_id"] for e in edus if e["edu_type"] == "m.direct_to_device"]
    assert to_device == [str(i) for i in range(150)]
    typing = [e["content"] for e in edus if e["edu_type"] == "m.typing"]
    assert typing == [{"room_id": "!r", "user_id": "@a:me.test", "typing": False}]
    receipts = [e["content"] for e in edus if e["edu_type"] == "m.receipt"]
    assert receipts == [{"!r": {"m.read": {"@a:me.test": {"event_ids": ["$3"]},
                                           "@b:me.test": {"event_ids": ["$2"]}}}}]
    assert bodies[1]["pdus"] == [pdu(1)] and len(bodies[1]["edus"]) == 100
    assert client.delivered_pdus(PEER) == [0, 1]


async def test_retry_with_backoff_then_delivers_once_in_order(
    engine: AsyncEngine, client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    client.fail(PEER, 0, 502, 429)
    seen: list[RetryState | None] = []

    async def snapshot() -> None:  # the stored retry state as each attempt starts
        seen.append(await OutboxStore(engine).get_retry(PEER))

    client.on_call = snapshot
    sender = make_sender(client)
    for n in range(3):
        await sender.send_pdu([PEER], pdu(n))
    sender.send_edu([PEER], "m.typing", {"room_id": "!r", "user_id": "@a:me.test", "typing": True})
    await idle(sender)
    # The backoff is persisted: failure 1, 2, 3 before the 2nd, 3rd, 4th attempts.
    assert [s.failure_count if s else None for s in seen[1:4]] == [1, 2, 3]
    assert all(s is not None and s.retry_after_ts > 0 for s in seen[1:4])

    attempts = client.calls[:4]
    assert len({path for _, _, path, _ in attempts}) == 1  # same txnId for the same batch
    assert all(body == attempts[0][3] for *_, body in attempts)
    delivered = client.calls[3:]  # the successful attempt and whatever followed
    assert [p["content"]["n"] for *_, b in delivered for p in b["pdus"]] == [0, 1, 2]
    assert sum(len(b["edus"]) for *_, b in delivered) == 1
    state = await OutboxStore(engine).get_retry(PEER)
    assert state is not None and state.failure_count == 0 and state.last_success_ts
    assert await sender.pending_count(PEER) == 0


async def test_restart_resends_what_was_not_acknowledged(
    engine: AsyncEngine, make_sender: Callable[..., FederationSender],
) -> None:
    down = FakeClient()
    down.always_fail[PEER] = FederationRequestError(0, "M_UNKNOWN", "connection refused")
    first = make_sender(down)
    for n in range(60):
        await first.send_pdu([PEER], pdu(n))
    await until(lambda: down.calls)
    await first.stop()  # "crash": nothing was acknowledged
    assert not first.active_destinations()

    up = FakeClient()
    second = make_sender(up)
    await second.start()
    await idle(second)
    assert up.delivered_pdus(PEER) == list(range(60))
    assert await second.pending_count(PEER) == 0


async def test_persisted_backoff_survives_restart_and_retry_now_skips_it(
    engine: AsyncEngine, client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    client.fail(PEER, 503)
    first = make_sender(client, backoff_initial_ms=60_000, backoff_max_ms=60_000)
    await first.send_pdu([PEER], pdu(0))
    await until(lambda: client.calls)
    await asyncio.sleep(0.05)
    assert len(client.calls) == 1  # waiting out a minute of backoff
    first.retry_now(PEER)
    await idle(first)
    assert len(client.calls) == 2 and client.delivered_pdus(PEER) == [0, 0]

    # Back off again, then restart: the new sender honours the stored backoff.
    client.fail(PEER, 503)
    await first.send_pdu([PEER], pdu(1))
    store = OutboxStore(engine)
    for _ in range(400):  # until the failure (and its minute of backoff) is stored
        state = await store.get_retry(PEER)
        if state is not None and state.failure_count == 1:
            break
        await asyncio.sleep(0.005)
    assert len(client.calls) == 3
    await first.stop()
    second = make_sender(client, backoff_initial_ms=60_000, backoff_max_ms=60_000)
    await second.start()
    assert PEER in second.active_destinations()
    await asyncio.sleep(0.05)
    assert len(client.calls) == 3
    second.retry_now(PEER)
    await idle(second)
    assert len(client.calls) == 4 and client.sent(PEER)[-1]["pdus"] == [pdu(1)]


async def test_refused_transaction_drops_edus_then_gives_up_on_pdus(
    client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    client.gate = asyncio.Event()
    sender = make_sender(client, max_pdus=2, max_rejections=3)
    await sender.send_pdu([PEER], pdu(0))  # held: the next three PDUs queue behind it
    await until(lambda: client.calls)
    sender.send_edu([PEER], "m.typing", {"room_id": "!r", "user_id": "@a:me.test", "typing": True})
    for n in (1, 2, 3):
        await sender.send_pdu([PEER], pdu(n))
    client.fail(PEER, 400, 400, 400)  # the held batch is refused three times
    client.gate.set()
    await idle(sender)

    bodies = client.sent(PEER)
    paths = [c[2] for c in client.calls]
    # [0] refused thrice (then dropped), then [1, 2] + the typing EDU, then [3].
    assert [[p["content"]["n"] for p in b["pdus"]] for b in bodies] == [[0], [0], [0], [1, 2], [3]]
    assert len(set(paths[:3])) == 3  # a refused batch is resent under a new txnId
    assert bodies[3]["edus"][0]["edu_type"] == "m.typing"
    assert await sender.pending_count(PEER) == 0


async def test_refusal_drops_edus_but_keeps_pdus(
    client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    client.gate = asyncio.Event()
    sender = make_sender(client)
    await sender.send_pdu([PEER], pdu(0))
    await until(lambda: client.calls)
    sender.send_edu([PEER], "m.typing", {"room_id": "!r", "user_id": "@a:me.test", "typing": True})
    await sender.send_pdu([PEER], pdu(1))
    client.fail(PEER, 0, 200, 403)  # held attempt: unreachable; the one with the EDU: refused
    client.gate.set()
    await idle(sender)
    bodies = client.sent(PEER)
    assert [([p["content"]["n"] for p in b["pdus"]], len(b["edus"])) for b in bodies] == [
        ([0], 0), ([0], 0), ([1], 1), ([1], 0),
    ]
    assert client.calls[2][2] != client.calls[3][2]
    assert await sender.pending_count(PEER) == 0


async def test_per_pdu_errors_count_as_delivered(
    client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    client.response = {"pdus": {"$x": {"error": "not allowed"}}}
    sender = make_sender(client)
    await sender.send_pdu([PEER], pdu(0))
    await idle(sender)
    assert len(client.calls) == 1
    assert await sender.pending_count(PEER) == 0


async def test_stop_cancels_in_flight_cleanly(
    client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    client.gate = asyncio.Event()  # never opened
    sender = make_sender(client)
    await sender.send_pdu([PEER, OTHER], pdu(0))
    await until(lambda: len(client.calls) == 2)
    await asyncio.wait_for(sender.stop(), 1)
    assert not sender.active_destinations()
    assert await sender.pending_count(PEER) == 1  # kept for the next start
    await sender.send_pdu([PEER], pdu(1))  # still durable after stop, just not sent
    assert await sender.pending_count(PEER) == 2 and not sender.active_destinations()


async def test_wake_delivers_rows_committed_elsewhere_but_respects_backoff(
    engine: AsyncEngine, client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    sender = make_sender(client, backoff_initial_ms=60_000, backoff_max_ms=60_000)
    await sender.start()
    store = OutboxStore(engine)  # what the event persister does, in its own transaction
    await store.append([PEER], '{"content":{"n":0}}', 0)
    sender.wake([PEER, ME])
    await idle(sender)
    assert client.delivered_pdus(PEER) == [0]
    assert ME not in sender.active_destinations()

    client.fail(PEER, 503)
    await store.append([PEER], '{"content":{"n":1}}', 0)
    sender.wake(PEER)  # a bare name works too
    await until(lambda: len(client.calls) == 2)
    await store.append([PEER], '{"content":{"n":2}}', 0)
    sender.wake([PEER])  # new rows do not cut the minute of backoff short
    await asyncio.sleep(0.05)
    assert len(client.calls) == 2
    sender.retry_now(PEER)
    await idle(sender)
    assert client.delivered_pdus(PEER) == [0, 1, 1, 2]
    assert await sender.pending_count(PEER) == 0


async def test_durable_edus_survive_a_peer_outage_and_a_restart(
    make_sender: Callable[..., FederationSender],
) -> None:
    """To-device messages (m.direct_to_device) are kept until acknowledged, unlike typing."""
    down = FakeClient()
    down.always_fail[PEER] = FederationRequestError(0, "M_UNKNOWN", "connection refused")
    first = make_sender(down)
    await first.send_durable_edu([PEER], "m.direct_to_device", {"message_id": "m1"})
    first.send_edu([PEER], "m.typing", {"room_id": "!r:me.test", "user_id": "@a:me.test", "typing": True})
    await until(lambda: down.calls)
    await first.stop()

    up = FakeClient()
    second = make_sender(up)
    await second.start()
    await idle(second)
    edus = [e for body in up.sent(PEER) for e in body["edus"]]
    assert edus == [{"edu_type": "m.direct_to_device", "content": {"message_id": "m1"}}]
    third = make_sender(FakeClient())
    await third.start()
    assert not third.active_destinations()  # acknowledged: nothing left to resend


# -- catch-up that scales ------------------------------------------------------------------


def room_pdu(room: str, n: int, *, member: str | None = None) -> dict[str, Any]:
    if member is not None:
        return {"type": "m.room.member", "room_id": room, "sender": member, "state_key": member,
                "content": {"membership": "join", "n": n}, "origin_server_ts": 1}
    return {"type": "m.room.message", "room_id": room, "sender": "@a:me.test",
            "content": {"n": n}, "origin_server_ts": 1}


async def test_catch_up_after_a_long_outage_sends_the_newest_per_room_and_all_state(
    client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    """1,000 PDUs in three rooms queued while the peer is down: once it is back it gets one
    transaction with the newest event of each room and every membership, not 20 transactions
    of history (it fetches that with /get_missing_events, as for any gap)."""
    client.always_fail[PEER] = FederationRequestError(0, "M_UNKNOWN", "connection refused")
    client.gate = asyncio.Event()  # hold the first attempt until everything is queued
    sender = make_sender(client)
    rooms = ["!a:me.test", "!b:me.test", "!c:me.test"]
    members = {}
    for n in range(1000):
        room = rooms[n % 3]
        if n in (10, 500):
            members[n] = room
            await sender.send_pdu([PEER], room_pdu(room, n, member=f"@u{n}:me.test"))
        else:
            await sender.send_pdu([PEER], room_pdu(room, n))
    client.gate.set()
    await until(lambda: sender.collapsed_pdus > 0, timeout=30)
    assert await sender.pending_count(PEER) == 5  # newest of 3 rooms + 2 memberships

    del client.always_fail[PEER]
    before = len(client.calls)
    sender.retry_now(PEER)
    await idle(sender)
    sent = [body for _, dest, _, body in client.calls[before:] if dest == PEER]
    assert len(sent) <= 2  # the retry in flight at the switch, then the collapsed queue
    delivered = [p["content"]["n"] for p in sent[-1]["pdus"]]
    assert delivered == [10, 500, 997, 998, 999]  # oldest first: memberships, then each room's newest
    assert sender.collapsed_pdus == 995
    assert await sender.pending_count(PEER) == 0


async def test_a_short_outage_loses_nothing(
    client: FakeClient, make_sender: Callable[..., FederationSender],
) -> None:
    """Below the backlog threshold nothing is collapsed: every PDU arrives, in order."""
    client.fail(PEER, 0, 0, 0, 0)
    sender = make_sender(client)
    for n in range(80):
        await sender.send_pdu([PEER], pdu(n))
    await idle(sender)
    assert sender.collapsed_pdus == 0
    delivered = [p["content"]["n"] for body in client.sent(PEER)[4:] for p in body["pdus"]]
    assert delivered == list(range(80))


async def test_stale_typing_is_dropped_not_sent_late(make_sender: Callable[..., FederationSender]) -> None:
    now = [1_000_000]
    down = FakeClient()
    down.gate = asyncio.Event()
    sender = make_sender(down, clock=lambda: now[0])
    sender.send_edu([PEER], "m.receipt", {"!r:me.test": {"m.read": {"@a:me.test": {"event_ids": ["$e"]}}}})
    await until(lambda: down.calls)  # the first transaction (the receipt) is held
    sender.send_edu([PEER], "m.typing", {"room_id": "!r:me.test", "user_id": "@a:me.test", "typing": True})
    sender.send_edu([PEER], "m.typing", {"room_id": "!r:me.test", "user_id": "@b:me.test", "typing": True})
    now[0] += 31_000  # the typing notifications outlive their use while the peer is slow
    sender.send_edu([PEER], "m.typing", {"room_id": "!r:me.test", "user_id": "@b:me.test", "typing": False})
    down.gate.set()
    await idle(sender)
    edus = [e for body in down.sent(PEER) for e in body["edus"]]
    assert [e["edu_type"] for e in edus] == ["m.receipt", "m.typing"]
    assert edus[1]["content"]["user_id"] == "@b:me.test" and edus[1]["content"]["typing"] is False
    assert sender.expired_edus == 1


class HoldingTransport:
    """A transport whose way to the peer is backlogged until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.attempts: list[list[int]] = []
        self.delivered: list[list[int]] = []

    async def deliver(self, txn: Any) -> Any:
        from federation.outbound.transport.base import Delivered, Held

        ns = [p["content"]["n"] for p in txn.pdus]
        self.attempts.append(ns)
        if not self.release.is_set():
            return Held("backlogged", 5)
        self.delivered.append(ns)
        return Delivered()


async def test_held_transactions_wait_in_the_outbox_and_leave_in_full_batches(engine: AsyncEngine) -> None:
    transport = HoldingTransport()
    sender = FederationSender(ME, transport, OutboxStore(engine), backoff_initial_ms=5, backoff_max_ms=20)
    try:
        for n in range(120):
            await sender.send_pdu([PEER], pdu(n))
        await until(lambda: sender.held >= 3)
        transport.release.set()
        await idle(sender)
    finally:
        await sender.stop()
    # Once released: full transactions of 50, in order, each PDU once.
    assert transport.delivered == [list(range(50)), list(range(50, 100)), list(range(100, 120))]
    state = sender.retry_state(PEER)
    assert state is not None and state.failure_count == 0  # holding is not failing: no backoff
    assert sender.collapsed_pdus == 0

"""Observability of a real server process: /metrics on its own listener moving with real
traffic, request ids in responses and log lines (text and JSON), /health and /ready
against real MariaDB and Redis, and the RabbitMQ event bus read by a real consumer queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest

from tests.integration.conftest import RunningServer, _free_port, start_real_server
from tests.integration.matrix_http import MatrixUser, eventually, q

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    return _free_port()


@contextlib.contextmanager
def observed_server(
    tmp: Path, database: str, extra_yaml: str = "", env: dict[str, str] | None = None,
) -> Iterator[tuple[RunningServer, str]]:
    port = _free_port()
    listener = f'  - host: "127.0.0.1"\n    port: {port}\n    resources: [metrics]\n'
    with start_real_server(tmp, database, extra_yaml, extra_listeners_yaml=listener, extra_env=env) as server:
        yield server, f"http://127.0.0.1:{port}"


def _log_text(path: Path) -> str:
    return path.read_text(errors="replace")


def _log_lines(path: Path) -> list[str]:
    return _log_text(path).splitlines()


def parse_metrics(text: str) -> dict[str, float]:
    """`name{labels}` -> value for every sample of a Prometheus text page."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def sample(metrics: dict[str, float], metric: str, **labels: str) -> float:
    """The sum of `metric`'s samples whose labels include `labels` (0 when none)."""
    total = 0.0
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base != metric:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(have.get(k) == v for k, v in labels.items()):
            total += value
    return total


async def scrape(session: aiohttp.ClientSession, metrics_url: str) -> dict[str, float]:
    async with session.get(f"{metrics_url}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=")
        return parse_metrics(await r.text())


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    env = {"TRICOLOR_REDIS_URL": REDIS_URL}
    with observed_server(tmp_path_factory.mktemp("observed"), request.param, env=env) as pair:
        yield pair


async def test_metrics_move_with_real_traffic(server: tuple[RunningServer, str], session: aiohttp.ClientSession) -> None:
    hs, metrics_url = server
    before = await scrape(session, metrics_url)
    alice = await MatrixUser(session, hs.base_url).register("alice")
    bob = await MatrixUser(session, hs.base_url).register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.call("POST", f"/join/{q(room)}", {})
    await bob.sync()

    # bob long-polls; the gauge shows him waiting, alice's message wakes him.
    poll = asyncio.create_task(bob.sync(timeout=20_000))

    async def waiting() -> bool:
        nonlocal poll
        if poll.done():  # answered by an earlier change (presence, the join): wait again
            await poll
            poll = asyncio.create_task(bob.sync(timeout=20_000))
            return False
        return sample(await scrape(session, metrics_url), "tricolor_sync_waiters") >= 1

    await eventually(waiting)
    for i in range(3):
        await alice.send(room, f"hello {i}")
    woken = await asyncio.wait_for(poll, 20)
    assert room in woken["rooms"]["join"]
    await alice.call("GET", f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": "10"})

    after = await scrape(session, metrics_url)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("synapse_http_server_requests_received_total", method="PUT", servlet="client_api.rooms.send") == 3
    assert moved("synapse_http_server_response_time_seconds_count", method="PUT", servlet="client_api.rooms.send", code="200") == 3
    assert moved("synapse_http_server_requests_received_total", method="GET", servlet="client_api.sync.sync") >= 2
    assert moved("synapse_http_server_responses_total", method="POST", code="200") >= 4  # 2 registers, create, join
    # create room (several events), bob's join, three messages
    assert moved("synapse_storage_events_persisted_events_total") >= 8
    assert moved("synapse_notifier_users_woken_by_stream_total", stream="events") >= 1
    assert sample(after, "tricolor_ws_connections") == 0
    assert sample(after, "process_resident_memory_bytes") > 10_000_000
    assert sample(after, "synapse_util_caches_cache_total", name="get_event_cache") > 0
    assert sample(after, "synapse_util_caches_cache_hits_total", name="access_tokens") > 0
    # unknown paths are one label, not one per path
    async with session.get(f"{hs.base_url}/_matrix/client/v3/nope/{secrets.token_hex(4)}") as r:
        assert r.status == 404
    later = await scrape(session, metrics_url)
    assert sample(later, "synapse_http_server_requests_received_total", method="GET", servlet="unmatched") >= 1


async def test_metrics_are_only_on_the_metrics_listener(
    server: tuple[RunningServer, str], session: aiohttp.ClientSession,
) -> None:
    hs, metrics_url = server
    async with session.get(f"{hs.base_url}/metrics") as r:
        assert r.status == 404
        assert (await r.json())["errcode"] == "M_UNRECOGNIZED"
    async with session.get(f"{metrics_url}/_matrix/client/versions") as r:
        assert r.status == 404


async def test_request_id_in_the_response_and_the_log(
    server: tuple[RunningServer, str], session: aiohttp.ClientSession,
) -> None:
    hs, _ = server
    ids = set()
    for _ in range(2):
        async with session.get(f"{hs.base_url}/_matrix/client/versions") as r:
            assert r.status == 200
            ids.add(r.headers["X-Request-Id"])
    assert len(ids) == 2  # one per request
    async with session.get(f"{hs.base_url}/_matrix/client/v3/account/whoami") as r:
        assert r.status == 401  # errors carry it too
        error_id = r.headers["X-Request-Id"]

    async def logged() -> bool:
        text = _log_text(hs.log_path)
        return all(f"[{rid}]" in text for rid in (*ids, error_id))

    await eventually(logged)
    line = next(ln for ln in _log_lines(hs.log_path) if f"[{error_id}]" in ln)
    assert "GET /_matrix/client/v3/account/whoami 401" in line


async def test_health_and_ready(server: tuple[RunningServer, str], session: aiohttp.ClientSession) -> None:
    hs, metrics_url = server
    for base in (hs.base_url, metrics_url):
        async with session.get(f"{base}/health") as r:
            assert (r.status, await r.json()) == (200, {"status": "ok"})
    async with session.get(f"{hs.base_url}/ready") as r:
        assert r.status == 200
        assert await r.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


async def test_ready_names_what_is_down(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """Redis and the broker configured but not there: alive, not ready, each named; the
    server still answers clients (rate limits need Redis, so they are off here)."""
    env = {
        "TRICOLOR_REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0",
        "TRICOLOR_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{_closed_port()}/",
        "TRICOLOR_RC_ENABLED": "false",
    }
    with observed_server(tmp_path, "sqlite", "event_bus:\n  enabled: true\n", env) as (hs, metrics_url):
        async with session.get(f"{hs.base_url}/health") as r:
            assert r.status == 200
        async with session.get(f"{hs.base_url}/ready") as r:
            assert r.status == 503
            assert await r.json() == {"status": "unavailable", "checks": {
                "database": "ok", "redis": "down", "rabbitmq": "down", "event_bus": "down",
            }}
        # The send path does not wait for the missing broker: sends succeed, the bus buffers.
        alice = await MatrixUser(session, hs.base_url).register("alice")
        room = await alice.create_room()
        for i in range(3):
            await alice.send(room, f"m{i}")
        metrics = await scrape(session, metrics_url)
        assert sample(metrics, "tricolor_event_bus_up") == 0
        assert sample(metrics, "tricolor_event_bus_buffered") >= 4
        assert sample(metrics, "tricolor_event_bus_published_total") == 0


async def test_json_logs(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    with observed_server(tmp_path, "sqlite", "log_format: json\n") as (hs, _):
        async with session.get(f"{hs.base_url}/_matrix/client/versions") as r:
            rid = r.headers["X-Request-Id"]

        async def access_line() -> dict[str, Any] | None:
            records = [json.loads(ln) for ln in _log_lines(hs.log_path) if ln.startswith("{")]
            return next((rec for rec in records if rec["request_id"] == rid), None)

        record = await eventually(access_line)
        assert record["logger"] == "tricolor.access"
        assert record["http"]["path"] == "/_matrix/client/versions"
        assert record["http"]["status"] == 200
        assert record["http"]["servlet"].endswith(".versions")
        # Every line the server wrote is JSON (start-up lines included).
        lines = [ln for ln in _log_lines(hs.log_path) if ln.strip()]
        assert all(json.loads(ln)["level"] for ln in lines)


def _rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        return False
    return True


async def test_event_bus_delivers_to_a_consumer_group_queue(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    if not _rabbitmq_up():
        if os.environ.get("CI"):
            pytest.fail("RabbitMQ is required in CI (.ci/run starts it)")
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    exchange = f"tricolor.events.t{secrets.token_hex(4)}"  # this test's own exchange
    extra = (
        f"event_bus:\n  enabled: true\n  exchange: {exchange}\n"
        "  consumer_groups:\n    analytics: ['room.#', 'client.#']\n    mentions: ['user.#']\n"
    )
    conn = await aio_pika.connect(RABBITMQ_URL)
    try:
        with observed_server(tmp_path, "sqlite", extra, {"TRICOLOR_RABBITMQ_URL": RABBITMQ_URL}) as (hs, metrics_url):
            channel = await conn.channel()
            alice = await MatrixUser(session, hs.base_url).register("alice")
            bob = await MatrixUser(session, hs.base_url).register("bob")
            room = await alice.create_room(preset="public_chat")
            await bob.call("POST", f"/join/{q(room)}", {})
            sent = [await alice.send(room, f"bus {i}") for i in range(5)]
            async with session.post(
                f"{hs.base_url}/_tricolor/client/v1/events",
                json={"type": "org.example.click", "content": {"x": 1}},
                headers={"Authorization": f"Bearer {alice.token}"},
            ) as r:
                assert r.status == 200, await r.text()

            analytics = await channel.get_queue(f"{exchange}.analytics")
            got: list[aio_pika.abc.AbstractIncomingMessage] = []

            async def drained_analytics() -> bool:
                while (m := await analytics.get(fail=False, no_ack=True)) is not None:
                    got.append(m)
                return any(m.routing_key.startswith("client.") for m in got)

            await eventually(drained_analytics)
            bodies = [json.loads(m.body) for m in got if m.routing_key.startswith("room.")]
            messages = [b for b in bodies if b["type"] == "m.room.message"]
            assert [b["event_id"] for b in messages] == sent  # all, once, in order
            assert [b["content"]["body"] for b in messages] == [f"bus {i}" for i in range(5)]
            first = next(m for m in got if m.routing_key.startswith("room."))
            assert first.routing_key == f"room.{room}.m.room.create"
            assert all(m.message_id == json.loads(m.body)["event_id"] for m in got if m.routing_key.startswith("room."))
            positions = [b["stream_position"] for b in bodies]
            assert positions == sorted(positions)
            click = next(json.loads(m.body) for m in got if m.routing_key.startswith("client."))
            assert got[-1].routing_key == f"client.{alice.user_id}.org.example.click"
            assert (click["user_id"], click["content"]) == (alice.user_id, {"x": 1})

            mentions = await channel.get_queue(f"{exchange}.mentions")
            keys: list[str] = []

            async def drained_mentions() -> bool:
                while (m := await mentions.get(fail=False, no_ack=True)) is not None:
                    keys.append(m.routing_key)
                return keys.count(f"user.{alice.user_id}") >= 5 and f"user.{bob.user_id}" in keys

            await eventually(drained_mentions)
            assert not any(k.startswith(("room.", "client.")) for k in keys)

            metrics = await scrape(session, metrics_url)
            assert sample(metrics, "tricolor_event_bus_up") == 1
            assert sample(metrics, "tricolor_event_bus_published_total") >= len(got) + len(keys)
            async with session.get(f"{hs.base_url}/ready") as r:
                assert (await r.json())["checks"]["event_bus"] == "ok"
    finally:
        channel = await conn.channel()
        for group in ("analytics", "mentions"):
            await channel.queue_delete(f"{exchange}.{group}")
        await channel.exchange_delete(exchange)
        await conn.close()

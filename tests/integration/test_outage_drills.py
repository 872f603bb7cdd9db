"""Fault drills: the database or Redis dies under load and comes back.

MariaDB (a mariadbd of the test's own, killed with SIGKILL and started again on the same
data directory): requests during the outage fail fast with a Matrix error, the
homeserver's pool recovers by itself once the database is back (no restart of the
homeserver), and nothing that was acknowledged is lost; retries with the same txn ids
make no duplicates.

Redis (a redis-server of the test's own, holding the shared rate-limit buckets): while
it is away chat goes on, rate limits fall back to each process's own buckets (still
enforced), and the shared buckets are used again once it is back. Presence and typing
are answered throughout (today they are kept in process; Redis only holds rate limits).

RabbitMQ outages (HTTPS fallback, resume) are drilled in test_amqp_federation.py
(``amqp_drills``), not here.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.drills import Client, DrillServer, OwnMariaDB, OwnRedis, until

pytestmark = pytest.mark.fault_drills

SENDERS = 3
FAIL_FAST = 12.0  # seconds: a request during an outage is answered within this, not hung


async def _mariadb_outage(server: DrillServer, db: OwnMariaDB) -> None:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        owner = await Client(session, server).register("owner")
        room = (await owner.ok("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        senders = [await Client(session, server).register(f"m{i}") for i in range(SENDERS)]
        for s in senders:
            await s.ok("POST", f"/join/{room}", {})

        acked: dict[str, str] = {}
        failures: list[tuple[int, Any, float]] = []
        phase = {"outage": False, "stop": False}

        async def keep_sending(i: int, s: Client) -> None:
            n = 0
            while not phase["stop"]:
                txn = f"m{i}-{n}"
                started = time.monotonic()
                status, data = await s.send(room, txn, txn)
                took = time.monotonic() - started
                if status == 200:
                    acked[txn] = data["event_id"]
                    n += 1
                else:
                    failures.append((status, data, took))
                    await asyncio.sleep(0.05)  # a client's retry pause; then the same txn again

        tasks = [asyncio.create_task(keep_sending(i, s)) for i, s in enumerate(senders)]
        await until(lambda: asyncio.sleep(0, len(acked) >= 30))
        await asyncio.to_thread(db.kill)
        phase["outage"] = True
        # Each sender has been told, with a Matrix error, that its message did not go.
        await until(lambda: asyncio.sleep(0, len(failures) >= 2 * SENDERS), within=60)
        status, data = await owner.request("GET", "/sync", params={"timeout": "0"})
        assert status >= 500 and data["errcode"], (status, data)
        acked_in_outage = len(acked)
        await asyncio.to_thread(db.start)
        # The pool recovers by itself: sends succeed again without restarting the homeserver.
        await until(lambda: asyncio.sleep(0, len(acked) >= acked_in_outage + 30), within=90)
        phase["stop"] = True
        await asyncio.gather(*tasks)

        for status, data, took in failures:
            assert isinstance(data, dict) and isinstance(data.get("errcode"), str), (status, data)
            assert status == 503 and data["errcode"] == "M_UNKNOWN", (status, data)
            assert took < FAIL_FAST, f"a request during the outage hung for {took:.1f}s"

        timeline = await owner.timeline(room)
        served = {e["content"]["body"]: e["event_id"] for e in timeline}
        lost = {t: e for t, e in acked.items() if served.get(t) != e}
        assert not lost, f"acknowledged and lost: {lost}"
        bodies = [e["content"]["body"] for e in timeline]
        assert len(bodies) == len(set(bodies)), "a retried message appears twice"
        assert [e["event_id"] for e in await senders[0].timeline(room)] == [e["event_id"] for e in timeline]


def test_mariadb_killed_and_restarted_under_load(tmp_path: Path) -> None:
    db = OwnMariaDB(tmp_path / "mariadb")
    db.workdir.mkdir()
    server = DrillServer(tmp_path / "hs", database_url=db.url)
    server.workdir.mkdir()
    try:
        db.install()
        server.generate()
        server.start()
        asyncio.run(_mariadb_outage(server, db))
        assert server.proc is not None and server.proc.poll() is None, "the homeserver died"
    finally:
        server.ensure_stopped()
        db.ensure_stopped()


def _redis_keys(redis: OwnRedis) -> list[str]:
    done = subprocess.run(["redis-cli", "-p", str(redis.port), "--scan", "--pattern", "tricolor:rl:*"],
                          capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.split()


async def _redis_outage(server: DrillServer, redis: OwnRedis) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        alice = await Client(session, server).register("alice")
        bob = await Client(session, server).register("bob")
        room = (await alice.ok("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        await bob.ok("POST", f"/join/{room}", {})
        await alice.ok("PUT", f"/rooms/{room}/send/m.room.message/before", {"msgtype": "m.text", "body": "before"})
        assert _redis_keys(redis), "the rate-limit buckets are not in Redis: the drill tests nothing"

        await asyncio.to_thread(redis.kill)
        # Chat goes on without Redis: sends (rate-limited actions), reads and sync answer.
        for n in range(5):
            started = time.monotonic()
            status, data = await alice.send(room, f"r-{n}", f"during outage {n}")
            assert status == 200, data
            assert time.monotonic() - started < FAIL_FAST
        status, data = await bob.request("GET", "/sync", params={"timeout": "0"})
        assert status == 200 and room in data["rooms"]["join"], data
        status, data = await alice.request("PUT", f"/rooms/{room}/typing/{alice.user_id}",
                                           {"typing": True, "timeout": 30000})
        assert status == 200, data
        status, data = await alice.request("PUT", f"/presence/{alice.user_id}/status", {"presence": "online"})
        assert status == 200, data
        # Limits degrade to this process's buckets, they do not vanish: room creation
        # (burst 2 in this drill's config) is refused once the local bucket is empty.
        statuses = [(await bob.request("POST", "/createRoom", {}))[0] for _ in range(3)]
        assert statuses == [200, 200, 429], statuses
        assert "rate limits are per process" in server.log()

        await asyncio.to_thread(redis.start)
        # Shared buckets come back: a send lands in Redis again.
        await alice.ok("PUT", f"/rooms/{room}/send/m.room.message/after", {"msgtype": "m.text", "body": "after"})
        assert _redis_keys(redis)
        bodies = [e["content"]["body"] for e in await bob.timeline(room)]
        assert bodies == ["before", *(f"during outage {n}" for n in range(5)), "after"]


def test_redis_killed_and_restarted_chat_continues(tmp_path: Path) -> None:
    redis = OwnRedis(tmp_path)
    server = DrillServer(tmp_path / "hs")
    server.workdir.mkdir()
    try:
        redis.start()
        server.generate()
        text = server.config.read_text()
        # The generated redis section ends with `url: null`: point it at this test's Redis.
        start = text.index("\nredis:\n")
        at = text.index("  url: null\n", start)
        text = text[:at] + f"  url: {redis.url}\n" + text[at + len("  url: null\n"):]
        # Rate limits on, roomy for messages, tight for room creation.
        text = text.replace("rc_enabled: false", "rc_enabled: true")
        text = text.replace("rc_message: {per_second: 0.2, burst_count: 10}",
                            "rc_message: {per_second: 100, burst_count: 1000}")
        text = text.replace("rc_room_creation: {per_second: 0.05, burst_count: 10}",
                            "rc_room_creation: {per_second: 0.001, burst_count: 2}")
        server.config.write_text(text)
        server.start()
        asyncio.run(_redis_outage(server, redis))
    finally:
        server.ensure_stopped()
        redis.ensure_stopped()

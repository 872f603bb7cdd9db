"""Workers (docs/workers.md): throughput and /sync wake-up with 1, 2 and 4 worker
processes of one server on MariaDB and Redis, the CPU an idle worker spends while
others carry 40 events/s, and RSS per worker. Prints one JSON object.

    ../.venv/bin/python workers_bench.py [--workers 1 2 4] [--redis redis://127.0.0.1:6379/0]
        [--mysql mysql+asyncmy://root@127.0.0.1:3306]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp
import asyncmy  # type: ignore[import-untyped]
from harness import ROOT, Client, free_port, percentile, rss_mb, wait_healthy


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def make_database(server: str) -> str:
    name = "tri_bench_" + secrets.token_hex(4)
    conn = await asyncmy.connect(host="127.0.0.1", port=3306, user="root")
    async with conn.cursor() as cur:
        await cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    conn.close()
    return f"{server}/{name}"


async def drop_database(url: str) -> None:
    conn = await asyncmy.connect(host="127.0.0.1", port=3306, user="root")
    async with conn.cursor() as cur:
        await cur.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]}")
    conn.close()


async def run_workers(n: int, db_url: str, redis_url: str, tmp: str) -> tuple[list[str], list[subprocess.Popen[bytes]]]:
    cfg = os.path.join(tmp, "hs.yaml")
    subprocess.run(
        [sys.executable, "-m", "homeserver", "generate-config", "--server-name", f"bench{n}.test",
         "--port", "8008", "--database-url", db_url, "-o", cfg], check=True, cwd=ROOT, capture_output=True,
    )
    subprocess.run([sys.executable, "-m", "homeserver", "migrate", "-c", cfg], check=True, cwd=ROOT,
                   capture_output=True)
    bases, procs = [], []
    for i in range(n):
        port = free_port()
        env = dict(os.environ, TRICOLOR_BCRYPT_ROUNDS="4", TRICOLOR_LOG_LEVEL="WARNING", TRICOLOR_PORT=str(port),
                   TRICOLOR_REDIS_URL=redis_url, TRICOLOR_RC_ENABLED="false")
        log = open(os.path.join(tmp, f"w{i}.log"), "w")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "homeserver", "run", "-c", cfg, "--worker-name", f"w{i}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        ))
        bases.append(f"http://127.0.0.1:{port}")
    for base in bases:
        await wait_healthy(base, timeout=60)
    return bases, procs


async def on(session: aiohttp.ClientSession, base: str, user: Client) -> Client:
    c = Client(session, base)
    c.token, c.user_id = user.token, user.user_id
    return c


async def measure(n: int, db_server: str, redis_url: str, senders: int, per_sender: int, wakeups: int) -> dict[str, Any]:
    db_url = await make_database(db_server)
    with tempfile.TemporaryDirectory(prefix="tricolor-workers-") as tmp:
        bases, procs = await run_workers(n, db_url, redis_url, tmp)
        try:
            async with aiohttp.ClientSession() as s:
                # Throughput: each sender its own room, talking to worker i % n.
                users = [await Client(s, bases[i % n]).register("s") for i in range(senders)]
                rooms = [await u.req("POST", "/createRoom", {}) for u in users]

                async def burst(u: Client, room: str) -> None:
                    for k in range(per_sender):
                        await u.send(room, f"m{k}")

                t0 = time.perf_counter()
                await asyncio.gather(*(burst(u, r["room_id"]) for u, r in zip(users, rooms, strict=True)))
                elapsed = time.perf_counter() - t0

                # Wake-up: a long-poll on the first worker, the send on the last one.
                alice = await Client(s, bases[-1]).register("a")
                bob = await Client(s, bases[0]).register("b")
                room = (await alice.req("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
                await (await on(s, bases[-1], bob)).req("POST", f"/join/{room}", {})
                since = (await bob.sync())["next_batch"]
                lat: list[float] = []
                for i in range(wakeups):
                    poll = asyncio.create_task(bob.sync(since, timeout=30_000))
                    await asyncio.sleep(0.05)  # the poll is parked
                    t = time.perf_counter()
                    await alice.send(room, f"w{i}")
                    got = await poll
                    lat.append((time.perf_counter() - t) * 1000)
                    since = got["next_batch"]

                # An idle worker (no clients) while the others carry 40 events/s for 10 s.
                idle: float | None = None
                if n > 1:
                    idle_pid = procs[0].pid
                    sender = await on(s, bases[-1], alice)
                    before = cpu_seconds(idle_pid)
                    t = time.perf_counter()
                    for i in range(400):
                        await sender.send(room, f"steady {i}")
                        await asyncio.sleep(max(0.0, t + (i + 1) / 40 - time.perf_counter()))
                    idle = (cpu_seconds(idle_pid) - before) / (time.perf_counter() - t) * 100
            return {
                "workers": n,
                "sends_per_s": round(senders * per_sender / elapsed, 1),
                "wakeup_ms_p50": round(percentile(lat, 50), 2),
                "wakeup_ms_p95": round(percentile(lat, 95), 2),
                "idle_worker_cpu_percent_at_40_events_s": None if idle is None else round(idle, 2),
                "rss_mb_per_worker": [round(rss_mb(p.pid), 1) for p in procs],
            }
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
            await drop_database(db_url)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--mysql", default="mysql+asyncmy://root@127.0.0.1:3306")
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--messages", type=int, default=50, help="per sender")
    ap.add_argument("--wakeups", type=int, default=30)
    args = ap.parse_args()
    results = [await measure(n, args.mysql, args.redis, args.senders, args.messages, args.wakeups) for n in args.workers]
    print(json.dumps({"bench": "workers", "runs": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

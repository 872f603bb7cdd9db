"""Client-API benchmark: send latency, throughput, /sync fan-out, memory. Prints JSON.

    .venv/bin/python bench/client_bench.py                 # starts its own Tricolor (SQLite)
    .venv/bin/python bench/client_bench.py --url URL       # any homeserver (e.g. Synapse) already running
    .venv/bin/python bench/client_bench.py --pid PID ...   # also report that process's RSS
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp
from harness import Client, percentile, rss_mb, tricolor


async def measure(base: str, pid: int | None, n_send: int, concurrency: int, waiters: int) -> dict[str, Any]:
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        alice = await Client(s, base).register("alice")
        room = (await alice.req("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]

        # 1. sequential send latency
        lat = []
        for i in range(n_send):
            t = time.perf_counter()
            await alice.send(room, f"latency {i}")
            lat.append((time.perf_counter() - t) * 1000)

        # 2. throughput: `concurrency` users sending into their own rooms at once
        senders = [await Client(s, base).register("tp") for _ in range(concurrency)]
        rooms = [(await c.req("POST", "/createRoom", {}))["room_id"] for c in senders]
        per = max(1, n_send // concurrency)

        async def blast(c: Client, r: str) -> None:
            for i in range(per):
                await c.send(r, f"tp {i}")

        t0 = time.perf_counter()
        await asyncio.gather(*(blast(c, r) for c, r in zip(senders, rooms, strict=True)))
        elapsed = time.perf_counter() - t0
        throughput = per * concurrency / elapsed

        # 3. fan-out: `waiters` members long-polling, one message wakes them all
        members = [await Client(s, base).register("w") for _ in range(waiters)]
        for m in members:
            await m.req("POST", f"/join/{room}", {})
        tokens = [(await m.sync())["next_batch"] for m in members]
        done: list[float] = []

        async def wait(m: Client, since: str) -> None:
            while True:
                resp = await m.sync(since, timeout=30000)
                joined = resp.get("rooms", {}).get("join", {})  # Synapse omits empty sections
                if room in joined and any(
                    e.get("content", {}).get("body") == "fan-out" for e in joined[room]["timeline"]["events"]
                ):
                    done.append(time.perf_counter())
                    return
                since = resp["next_batch"]

        tasks = [asyncio.create_task(wait(m, t)) for m, t in zip(members, tokens, strict=True)]
        await asyncio.sleep(1.0)  # let every waiter park
        t_send = time.perf_counter()
        await alice.send(room, "fan-out")
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        fan = [(t - t_send) * 1000 for t in done]

        out: dict[str, Any] = {
            "server": base,
            "send_latency_ms": {"p50": round(percentile(lat, 50), 2), "p95": round(percentile(lat, 95), 2), "n": n_send},
            "send_throughput_per_s": round(throughput, 1),
            "throughput_concurrency": concurrency,
            "sync_fanout_ms": {"waiters": waiters, "all_woken": round(max(fan), 2), "p50": round(percentile(fan, 50), 2)},
        }
        if pid:
            out["rss_mb"] = round(rss_mb(pid), 1)
        return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--sends", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--waiters", type=int, default=100)
    ap.add_argument("--database-url")
    a = ap.parse_args()
    if a.url:
        result = await measure(a.url, a.pid, a.sends, a.concurrency, a.waiters)
    else:
        async with tricolor(database_url=a.database_url) as (base, pid):
            result = await measure(base, pid, a.sends, a.concurrency, a.waiters)
        result["server"] = "tricolor (" + ("sqlite" if not a.database_url else "mysql") + ")"
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    asyncio.run(main())

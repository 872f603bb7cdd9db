"""Initial /sync of heavy accounts: N users each joined to the same R public rooms with
M messages per room; 10 users' initial syncs at once, and one after another, with
timeline limit 1 and 20, lazy-loaded members. Distinct users per pass, so no response
cache helps. Prints JSON.

    ../.venv/bin/python initial_sync_bench.py [--rooms 100] [--users 41] [--messages 10]
        [--limits 1 20] [--url URL --pid PID]   (a running server, e.g. Synapse, instead of starting Tricolor)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import aiohttp
from harness import Client, percentile, rss_mb, tricolor


def sync_filter(limit: int) -> str:
    return json.dumps({"room": {"timeline": {"limit": limit}, "state": {"lazy_load_members": True}}})


async def populate(session: aiohttp.ClientSession, base: str, users: int, rooms: int, messages: int) -> list[Client]:
    clients = [await Client(session, base).register("is") for _ in range(users)]
    owner = clients[0]
    room_ids = []
    for i in range(rooms):
        room_ids.append((await owner.req("POST", "/createRoom", {"preset": "public_chat", "name": f"r{i}"}))["room_id"])
    sem = asyncio.Semaphore(8)

    async def join(c: Client, room: str) -> None:
        async with sem:
            await c.req("POST", f"/join/{room}", {})

    await asyncio.gather(*(join(c, r) for c in clients[1:] for r in room_ids))

    async def talk(room: str) -> None:
        async with sem:
            for m in range(messages):
                await clients[1 + m % (len(clients) - 1)].send(room, f"message {m}")

    await asyncio.gather(*(talk(r) for r in room_ids))
    return clients


async def initial(c: Client, limit: int) -> tuple[float, int]:
    t = time.perf_counter()
    async with c.s.get(c.base + "/_matrix/client/v3/sync", params={"filter": sync_filter(limit)},
                       headers={"Authorization": f"Bearer {c.token}"}) as r:
        body = await r.read()
        assert r.status == 200, body[:200]
    return (time.perf_counter() - t) * 1000, len(body)


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of the server process (robust on a loaded machine)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    clients: list[Client], rooms: int, pid: int | None, limits: tuple[int, ...] | list[int] = (1, 20),
) -> dict[str, Any]:
    pool = clients[1:]
    out: dict[str, Any] = {}
    for limit in limits:
        concurrent, pool = pool[:10], pool[10:]
        t, cpu = time.perf_counter(), cpu_s(pid)
        results = await asyncio.gather(*(initial(c, limit) for c in concurrent))
        wall = time.perf_counter() - t
        cpu_concurrent = cpu_s(pid) - cpu
        sequential, pool = pool[:10], pool[10:]
        cpu = cpu_s(pid)
        one_by_one = [(await initial(c, limit))[0] for c in sequential]
        cpu_sequential = cpu_s(pid) - cpu
        out[f"timeline_{limit}"] = {
            "concurrent_10_wall_s": round(wall, 3),
            "server_cpu_ms_per_initial_sync": round((cpu_concurrent + cpu_sequential) * 1000 / 20, 1),
            "sequential_p50_ms": round(percentile(one_by_one, 50), 1),
            "sequential_p95_ms": round(percentile(one_by_one, 95), 1),
            "response_kb": round(results[0][1] / 1024, 1),
            "ms_per_room_sequential": round(percentile(one_by_one, 50) / rooms, 2),
        }
    return out


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rooms", type=int, default=100)
    p.add_argument("--users", type=int, default=41)
    p.add_argument("--messages", type=int, default=10)
    p.add_argument("--url")
    p.add_argument("--pid", type=int, help="the --url server's process, for its CPU time")
    p.add_argument("--limits", type=int, nargs="+", default=[1, 20],
                   help="timeline limits measured (each takes 20 users)")
    a = p.parse_args()
    assert a.users >= 1 + 20 * len(a.limits), "2 passes of 10 distinct users per limit plus the rooms' creator"
    result: dict[str, Any] = {"rooms": a.rooms, "users": a.users, "messages_per_room": a.messages}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as s:
        if a.url:
            t = time.perf_counter()
            clients = await populate(s, a.url, a.users, a.rooms, a.messages)
            result["populate_s"] = round(time.perf_counter() - t, 1)
            result.update(await measure(clients, a.rooms, a.pid, a.limits))
        else:
            async with tricolor() as (base, pid):
                t = time.perf_counter()
                clients = await populate(s, base, a.users, a.rooms, a.messages)
                result["populate_s"] = round(time.perf_counter() - t, 1)
                result.update(await measure(clients, a.rooms, pid, a.limits))
                result["rss_mb"] = round(rss_mb(pid), 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

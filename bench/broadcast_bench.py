"""Broadcast benchmark: an admin broadcasts a server notice to N users (default 10,000);
measures how long the background job takes and what it does to other traffic (the send
latency of a user chatting meanwhile). Prints JSON.

    .venv/bin/python bench/broadcast_bench.py                  # 10,000 users, SQLite
    .venv/bin/python bench/broadcast_bench.py --users 1000 --database-url mysql+asyncmy://root@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import sys
import tempfile
import time
import urllib.parse
from typing import Any

import aiohttp
import yaml
from harness import Client, free_port, percentile, rss_mb, tricolor

A = "/_synapse/admin"


async def make_admin(s: aiohttp.ClientSession, base: str, secret: str) -> Client:
    async with s.get(f"{base}{A}/v1/register") as r:
        nonce = (await r.json())["nonce"]
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(b"\x00".join([nonce.encode(), b"benchadmin", b"pw-bench-1", b"admin"]))
    body = {"nonce": nonce, "username": "benchadmin", "password": "pw-bench-1", "admin": True, "mac": mac.hexdigest()}
    async with s.post(f"{base}{A}/v1/register", json=body) as r:
        got = await r.json()
    c = Client(s, base)
    c.token, c.user_id = got["access_token"], got["user_id"]
    return c


async def admin_call(c: Client, method: str, path: str, body: Any = None) -> Any:
    async with c.s.request(method, f"{c.base}{path}", json=body,
                           headers={"Authorization": f"Bearer {c.token}"}) as r:
        data = await r.json()
        assert r.status < 300, f"{method} {path}: {r.status} {data}"
        return data


async def measure(base: str, pid: int, secret: str, server_name: str, users: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        admin = await make_admin(s, base, secret)
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(32)

        async def create(i: int) -> None:
            uid = urllib.parse.quote(f"@b{i:06d}:{server_name}", safe="")
            async with sem:
                await admin_call(admin, "PUT", f"{A}/v2/users/{uid}", {"displayname": f"B {i}"})

        await asyncio.gather(*(create(i) for i in range(users)))
        created_s = time.perf_counter() - t0

        chatter = await Client(s, base).register("chat")
        room = (await chatter.req("POST", "/createRoom", {}))["room_id"]
        latencies: list[float] = []
        stop = asyncio.Event()

        async def chat() -> None:
            i = 0
            while not stop.is_set():
                t = time.perf_counter()
                await chatter.send(room, f"meanwhile {i}")
                latencies.append((time.perf_counter() - t) * 1000)
                i += 1
                await asyncio.sleep(0.05)

        content = {"msgtype": "m.text", "body": "Maintenance tonight at 22:00"}
        t1 = time.perf_counter()
        started = await admin_call(admin, "POST", "/_tricolor/admin/v1/broadcast", {"content": content})
        chatting = asyncio.create_task(chat())
        peak_rss = 0.0
        while True:
            progress = await admin_call(admin, "GET", f"/_tricolor/admin/v1/broadcast/{started['broadcast_id']}")
            peak_rss = max(peak_rss, rss_mb(pid))
            if progress["status"] == "complete":
                break
            await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - t1
        stop.set()
        await chatting
        return {
            "users": users, "create_users_s": round(created_s, 1),
            "broadcast_s": round(elapsed, 1), "notices_per_s": round(progress["sent"] / elapsed, 1),
            "sent": progress["sent"], "failed": progress["failed"],
            "chat_sends_during_broadcast": len(latencies),
            "chat_send_p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "chat_send_p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
            "peak_rss_mb": round(peak_rss, 1),
        }


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--database-url")
    args = p.parse_args()
    os.environ["TRICOLOR_RC_ENABLED"] = "false"  # the bench creates users faster than any person
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tricolor-broadcast-") as d:
        async with tricolor(port=port, workdir=d, database_url=args.database_url) as (base, pid):
            cfg = yaml.safe_load(open(os.path.join(d, f"hs-{port}.yaml")))
            result = await measure(base, pid, cfg["registration"]["shared_secret"], cfg["server_name"], args.users)
    result["database"] = "mysql" if args.database_url else "sqlite"
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    asyncio.run(main())

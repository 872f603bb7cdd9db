"""Cross-server latency: a message sent on hs1 until a long-polling client on hs2
sees it (two Tricolor servers over TLS, started with `testnet up`). Prints JSON.

    .venv/bin/python bench/federation_bench.py [--messages 50]
    .venv/bin/python bench/federation_bench.py --hs1 URL --hs2 URL --hs2-name NAME   # any pair
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp
from harness import ROOT, Client, percentile


async def measure(hs1: str, hs2: str, hs1_name: str, n: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        alice = await Client(s, hs1).register("alice")
        bob = await Client(s, hs2).register("bob")
        room = (await alice.req("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        await bob.req("POST", f"/join/{room}", {}, params={"server_name": hs1_name})
        since = (await bob.sync())["next_batch"]
        lat: list[float] = []
        for i in range(n):
            text = f"ping {i}"
            waiter = asyncio.create_task(_wait_for(bob, since, room, text))
            await asyncio.sleep(0.05)  # let the long-poll park
            t0 = time.perf_counter()
            await alice.send(room, text)
            since = await waiter
            lat.append((time.perf_counter() - t0) * 1000)
        return {
            "cross_server_ms": {"p50": round(percentile(lat, 50), 2), "p95": round(percentile(lat, 95), 2),
                                "max": round(max(lat), 2), "n": n},
        }


async def _wait_for(user: Client, since: str, room: str, text: str) -> str:
    while True:
        resp = await user.sync(since, timeout=30000)
        since = resp["next_batch"]
        events = resp.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])
        if any(e.get("content", {}).get("body") == text for e in events):
            return since


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--hs1")
    ap.add_argument("--hs2")
    ap.add_argument("--hs1-name", default="hs1.test")
    a = ap.parse_args()
    if a.hs1 and a.hs2:
        result = await measure(a.hs1, a.hs2, a.hs1_name, a.messages)
        result["servers"] = [a.hs1, a.hs2]
    else:
        with tempfile.TemporaryDirectory(prefix="tricolor-fedbench-") as tmp:
            net = os.path.join(tmp, "net")
            base = 33000 + (os.getpid() % 500) * 10
            up = subprocess.run(
                [sys.executable, "-m", "homeserver", "testnet", "up", "--servers", "2", "--dir", net,
                 "--base-port", str(base), "--fast-passwords"],
                cwd=ROOT, capture_output=True, text=True, check=True,
            )
            info = json.loads(up.stdout)
            try:
                urls = [srv["client_url"] for srv in info["servers"]]
                result = await measure(urls[0], urls[1], "hs1.test", a.messages)
                result["servers"] = "two Tricolor servers (testnet, SQLite, TLS federation)"
            finally:
                subprocess.run([sys.executable, "-m", "homeserver", "testnet", "down", "--dir", net],
                               cwd=ROOT, capture_output=True)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    asyncio.run(main())

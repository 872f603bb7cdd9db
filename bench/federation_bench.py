"""Cross-server latency: a message sent on hs1 until a long-polling client on hs2
sees it (two Tricolor servers over TLS, started with `testnet up`). Prints JSON.

    .venv/bin/python bench/federation_bench.py [--messages 50]
    .venv/bin/python bench/federation_bench.py --hs1 URL --hs2 URL --hs2-name NAME   # any pair
    .venv/bin/python bench/federation_bench.py --transport both [--burst 1000 --outage 60]

``--transport https|amqp|both`` runs the latency measurement on a network of that transport
(amqp: each server its own RabbitMQ node, transactions through shovels), then, with
``--burst N``, the time for N messages sent back to back to be seen on hs2 (throughput), and
with ``--outage S``, hs2's homeserver stopped, N messages sent, S seconds waited, hs2 started:
the time from its start until all N are seen (catch-up).
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


def _free_block(size: int) -> int:
    """``size`` consecutive free ports below Linux's ephemeral range (32768+), where an
    outgoing connection of any process could take one between our check and our bind."""
    import socket

    for base in range(20000 + (os.getpid() % 1000) * 8, 32000, size):
        probes = []
        try:
            for port in range(base, base + size):
                probe = socket.socket()
                probes.append(probe)
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no free ports in 20000-31999")


CATCH_UP_LIMIT = 600.0  # seconds; a bench never waits forever


async def burst_and_catch_up(
    hs1: str, hs2: str, hs1_name: str, n: int, outage: float, net: str,
) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        alice = await Client(s, hs1).register("burst")
        bob = await Client(s, hs2).register("burst")
        room = (await alice.req("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        await bob.req("POST", f"/join/{room}", {}, params={"server_name": hs1_name})
        since = (await bob.sync())["next_batch"]
        t0 = time.perf_counter()
        for i in range(n):
            await alice.send(room, f"burst {i}")
        since = await _wait_count(bob, since, room, "burst ", n)
        took = time.perf_counter() - t0
        out: dict[str, Any] = {"burst": {"messages": n, "seconds": round(took, 2), "per_s": round(n / took, 1)}}
        if outage <= 0:
            return out
        _testnet("stop", "hs2.test", "--dir", net)
        stopped = time.perf_counter()
        for i in range(n):
            await alice.send(room, f"queued {i}")
        await asyncio.sleep(max(0.0, outage - (time.perf_counter() - stopped)))
        t1 = time.perf_counter()
        _testnet("start", "hs2.test", "--dir", net)
        try:
            await asyncio.wait_for(_wait_count(bob, since, room, "queued ", n), CATCH_UP_LIMIT)
            took_s: float | str = round(time.perf_counter() - t1, 2)
        except TimeoutError:
            took_s = f"more than {CATCH_UP_LIMIT:g}"
        out["catch_up"] = {"outage_s": outage, "queued": n, "seconds_after_start": took_s}
        return out


def _testnet(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "homeserver", "testnet", *args],
                          cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    return dict(json.loads(done.stdout))


async def _wait_count(user: Client, since: str, room: str, prefix: str, n: int) -> str:
    """Until ``n`` messages starting with ``prefix`` are in the room on the user's server:
    woken by /sync, counted with /messages (a woken /sync may give a limited timeline)."""
    while True:
        resp = await user.sync(since, timeout=5000)
        since = resp["next_batch"]
        chunk = await user.req("GET", f"/rooms/{room}/messages", params={"dir": "b", "limit": str(n + 100)})
        seen = {e.get("content", {}).get("body", "") for e in chunk["chunk"]}
        if sum(1 for b in seen if b.startswith(prefix)) >= n:
            return since


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
    ap.add_argument("--transport", choices=("https", "amqp", "both"))
    ap.add_argument("--burst", type=int, default=0, help="messages in the burst / the outage backlog")
    ap.add_argument("--outage", type=float, default=0, help="seconds hs2 is down (needs --burst)")
    a = ap.parse_args()
    if a.transport:
        result = {}
        for transport in ("https", "amqp") if a.transport == "both" else (a.transport,):
            result[transport] = await _on_network(transport, a.messages, a.burst, a.outage)
        if "https" in result and "amqp" in result:
            result["amqp_minus_https_p50_ms"] = round(
                result["amqp"]["cross_server_ms"]["p50"] - result["https"]["cross_server_ms"]["p50"], 2)
    elif a.hs1 and a.hs2:
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


async def _on_network(transport: str, messages: int, burst: int, outage: float) -> dict[str, Any]:
    # /tmp, traversable: RabbitMQ nodes run as user rabbitmq and keep their data under --dir.
    tmp = tempfile.mkdtemp(prefix="tricolor-fedbench-", dir="/tmp")
    os.chmod(tmp, 0o755)
    net = os.path.join(tmp, "net")
    base = _free_block(4)
    info = _testnet("up", "--servers", "2", "--dir", net, "--base-port", str(base), "--fast-passwords",
                    "--transport", transport)
    try:
        urls = [srv["client_url"] for srv in info["servers"]]
        result = await measure(urls[0], urls[1], "hs1.test", messages)
        if burst:
            result |= await burst_and_catch_up(urls[0], urls[1], "hs1.test", burst, outage, net)
        result["servers"] = f"two Tricolor servers (testnet --transport {transport}, SQLite)"
        return result
    finally:
        subprocess.run([sys.executable, "-m", "homeserver", "testnet", "down", "--dir", net],
                       cwd=ROOT, capture_output=True, timeout=300)
        subprocess.run(["rm", "-rf", tmp], check=False)


if __name__ == "__main__":
    asyncio.run(main())

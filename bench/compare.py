"""Tricolor against Synapse in one run, same machine, same client script; prints one JSON object.

    .venv/bin/python bench/compare.py                      # every figure, SQLite on both
    .venv/bin/python bench/compare.py --only client        # just the client-API figures
    .venv/bin/python bench/compare.py --quick              # small sizes, to check the harness

Starts a throwaway Tricolor (``harness.tricolor``) and a throwaway Synapse
(``sytest-lite/synapse/start.sh``, its venv from ``$SYNAPSE_VENV`` or ``.cache/synapse-venv``),
both with every rate limit off or raised, and runs the same measurements against each:
``client_bench`` (send latency, throughput with 20 senders, /sync fan-out, RSS),
``initial_sync_bench`` (heavy accounts) and ``federation_bench`` (a Tricolor ``testnet``
pair against a Synapse ``pair.sh`` pair, both TLS on loopback). Every figure comes with
its ratio and the issue's target, oriented so that a larger ratio is better for Tricolor
(Synapse's time over ours; our throughput over Synapse's; RSS as ours over Synapse's, where
smaller is better). Runs are bounded in time and touch only loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import client_bench
import federation_bench
import initial_sync_bench
from harness import ROOT, free_port, rss_mb, tricolor, wait_healthy

SYNAPSE_SCRIPTS = os.path.join(ROOT, "sytest-lite", "synapse")


@contextlib.asynccontextmanager
async def synapse() -> AsyncIterator[tuple[str, int]]:
    """A fresh single Synapse on SQLite with raised rate limits; yields (base_url, pid)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="synapse-bench-") as d:
        subprocess.run([os.path.join(SYNAPSE_SCRIPTS, "start.sh"), str(port), d], check=True,
                       capture_output=True, timeout=600)
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_healthy(base, timeout=120)
            with open(os.path.join(d, "homeserver.pid")) as f:
                yield base, int(f.read().strip())
        finally:
            subprocess.run([os.path.join(SYNAPSE_SCRIPTS, "stop.sh"), str(port), d], capture_output=True,
                           timeout=120)


@contextlib.contextmanager
def tricolor_pair() -> Any:
    """Two Tricolor servers federating over TLS (testnet); yields (hs1, hs2, hs1_name)."""
    with tempfile.TemporaryDirectory(prefix="tricolor-cmp-") as tmp:
        net = os.path.join(tmp, "net")
        base = federation_bench._free_block(4)
        info = federation_bench._testnet("up", "--servers", "2", "--dir", net, "--base-port", str(base),
                                         "--fast-passwords")
        try:
            urls = [srv["client_url"] for srv in info["servers"]]
            yield urls[0], urls[1], "hs1.test"
        finally:
            subprocess.run([sys.executable, "-m", "homeserver", "testnet", "down", "--dir", net],
                           cwd=ROOT, capture_output=True, timeout=300)


@contextlib.contextmanager
def synapse_pair() -> Any:
    """Two Synapses federating over TLS (pair.sh); yields (hs1, hs2, hs1_name)."""
    with tempfile.TemporaryDirectory(prefix="synapse-pair-bench-") as d:
        base = federation_bench._free_block(4)
        script = os.path.join(SYNAPSE_SCRIPTS, "pair.sh")
        subprocess.run([script, "up", d, str(base)], check=True, capture_output=True, timeout=900)
        try:
            yield f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 2}", f"127.0.0.1:{base + 1}"
        finally:
            subprocess.run([script, "down", d, str(base), "--wipe"], capture_output=True, timeout=300)


async def client_figures(base: str, pid: int, a: argparse.Namespace) -> dict[str, Any]:
    idle = rss_mb(pid)
    out = await client_bench.measure(base, pid, a.sends, a.concurrency, a.waiters)
    out["idle_rss_mb"] = round(idle, 1)
    return out


async def initial_sync_figures(base: str, pid: int, a: argparse.Namespace) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as s:
        t = time.perf_counter()
        clients = await initial_sync_bench.populate(s, base, 41, a.rooms, a.room_messages)
        out: dict[str, Any] = {"rooms": a.rooms, "populate_s": round(time.perf_counter() - t, 1)}
        out.update(await initial_sync_bench.measure(clients, a.rooms, pid))
        return out


def ratio(ours: float, theirs: float, *, higher_is_better: bool) -> float | None:
    if not ours or not theirs:
        return None
    return round(ours / theirs if higher_is_better else theirs / ours, 2)


def verdicts(t: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    """Each figure, Synapse's, the ratio (larger is better for Tricolor except RSS) and the target."""
    rows: dict[str, Any] = {}

    def row(name: str, path: list[str], target: float, higher_is_better: bool = False,
            smaller_ratio_wins: bool = False) -> None:
        ours, theirs = t, s
        for key in path:
            ours = ours.get(key, {}) if isinstance(ours, dict) else None
            theirs = theirs.get(key, {}) if isinstance(theirs, dict) else None
        if not isinstance(ours, int | float) or not isinstance(theirs, int | float):
            return
        if smaller_ratio_wins:  # memory: ours over theirs, target is a ceiling
            r = round(ours / theirs, 2) if theirs else None
            met = r is not None and r <= target
        else:
            r = ratio(ours, theirs, higher_is_better=higher_is_better)
            met = r is not None and r >= target
        rows[name] = {"tricolor": ours, "synapse": theirs, "ratio": r, "target": target, "met": met}

    row("send_latency_p50_ms", ["client", "send_latency_ms", "p50"], 10)
    row("send_latency_p95_ms", ["client", "send_latency_ms", "p95"], 10)
    row("send_throughput_per_s", ["client", "send_throughput_per_s"], 10, higher_is_better=True)
    row("fanout_all_woken_ms", ["client", "sync_fanout_ms", "all_woken"], 100)
    row("fanout_p50_ms", ["client", "sync_fanout_ms", "p50"], 100)
    row("idle_rss_mb", ["client", "idle_rss_mb"], 0.5, smaller_ratio_wins=True)
    row("rss_after_client_bench_mb", ["client", "rss_mb"], 0.5, smaller_ratio_wins=True)
    for limit in (1, 20):
        row(f"initial_sync_t{limit}_concurrent_10_s", ["initial_sync", f"timeline_{limit}", "concurrent_10_wall_s"], 10)
        row(f"initial_sync_t{limit}_sequential_p50_ms", ["initial_sync", f"timeline_{limit}", "sequential_p50_ms"], 10)
    row("cross_server_p50_ms", ["federation", "cross_server_ms", "p50"], 5)
    row("cross_server_p95_ms", ["federation", "cross_server_ms", "p95"], 5)
    return rows


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("client", "initial_sync", "federation"), action="append")
    ap.add_argument("--quick", action="store_true", help="small sizes: checks the harness, not the servers")
    ap.add_argument("--sends", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--waiters", type=int, default=100)
    ap.add_argument("--rooms", type=int, default=100)
    ap.add_argument("--room-messages", type=int, default=10)
    ap.add_argument("--fed-messages", type=int, default=30)
    a = ap.parse_args()
    if a.quick:
        a.sends, a.concurrency, a.waiters, a.rooms, a.room_messages, a.fed_messages = 40, 5, 10, 5, 2, 5
    parts = a.only or ["client", "initial_sync", "federation"]
    os.environ["TRICOLOR_RC_ENABLED"] = "false"  # Synapse runs with ratelimits.yaml: same footing

    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start",
        "database": "sqlite (both)",
    }
    figures: dict[str, dict[str, Any]] = {"tricolor": {}, "synapse": {}}
    # One fresh server per part, so a part's figures never carry another part's data.
    for part in ("client", "initial_sync"):
        if part not in parts:
            continue
        measure = client_figures if part == "client" else initial_sync_figures
        async with tricolor() as (base, pid):
            figures["tricolor"][part] = await measure(base, pid, a)
        async with synapse() as (base, pid):
            figures["synapse"][part] = await measure(base, pid, a)
    if "federation" in parts:
        with tricolor_pair() as (hs1, hs2, name):
            figures["tricolor"]["federation"] = await federation_bench.measure(hs1, hs2, name, a.fed_messages)
        with synapse_pair() as (hs1, hs2, name):
            figures["synapse"]["federation"] = await federation_bench.measure(hs1, hs2, name, a.fed_messages)
    result["figures"] = figures
    result["ratios"] = verdicts(figures["tricolor"], figures["synapse"])
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    asyncio.run(main())

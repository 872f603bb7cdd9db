"""WebSocket push, measured (docs/websocket.md). Loopback only; every connection count and
loop is bounded. Prints JSON.

    ../.venv/bin/python ws_bench.py [--sockets 1000 10000] [--messages 30] [--receivers 100]

For each socket count N: N idle sockets are opened (devices of 100 users), then
- push latency, send -> frame received, p50/p95/p99: one message per second (bounded
  by --messages) to a room holding 10 receiver sockets, then to one holding --receivers
  (receivers are extra users with one socket each, so exactly they get the message);
- memory per idle socket (server RSS delta / N) and server CPU per 1,000 idle sockets
  over a window in which each socket sends its heartbeat `ping` once;
- a reconnect storm: all N sockets dropped without a close handshake, messages sent
  meanwhile, all reconnecting at once; time until every socket has resumed, and whether
  the sampled receivers got every message exactly once.
Then long-poll /sync vs WebSocket for the same receivers and messages: latency, server
CPU and bytes on the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from harness import Client, disable_rate_limits, free_port, percentile, rss_mb, wait_healthy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WS = "/_matrix/client/unstable/org.tricolor.ws/connect"
HEARTBEAT_WINDOW_S = 10
WAVE = 1000  # sockets opened together
ARRIVAL = asyncio.Event()  # set whenever any receiver got a message (3.10+: no loop binding)


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> int:
    """`ulimit -n` to the hard limit, for this process and the server it starts."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tricolor-ws-bench-") as d:
        cfg = os.path.join(d, "hs.yaml")
        subprocess.run([sys.executable, "-m", "homeserver", "generate-config", "--server-name",
                        f"localhost:{port}", "--port", str(port), "-o", cfg], check=True, cwd=ROOT,
                       capture_output=True)
        with open(cfg, "a") as f:  # sockets stay idle for a while here; the storm needs room
            f.write("\nwebsocket:\n  dead_after_ms: 900000\n  max_unacked: 1000\n")
        disable_rate_limits(cfg)
        env = dict(os.environ, TRICOLOR_BCRYPT_ROUNDS="4", TRICOLOR_LOG_LEVEL="WARNING")
        log = open(os.path.join(d, "hs.log"), "w")
        proc = subprocess.Popen([sys.executable, "-m", "homeserver", "run", "-c", cfg], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_healthy(base)
            yield base, proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


class Sock:
    """One device's socket: frames are parsed as they come; bodies seen are timestamped."""

    def __init__(self, token: str, since: str | None = None) -> None:
        self.token = token
        self.since = since  # an idle client reconnecting with its token: no initial sync
        self.ready = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.seen: dict[str, float] = {}  # message body -> arrival time
        self.counts: dict[str, int] = {}
        self.last_batch: str | None = None
        self.bytes = 0
        self.synced = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def open(self, session: aiohttp.ClientSession, base: str) -> None:
        self.synced.clear()
        self.ready.clear()
        self.ws = await session.ws_connect(base + WS, autoping=True, max_msg_size=0)
        hello = {"op": "auth", "access_token": self.token}
        if self.since:
            hello["since"] = self.since
            self.since = None  # later connections resume from the acknowledged position
        await self.ws.send_str(json.dumps(hello))
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            self.bytes += len(msg.data)
            now = time.perf_counter()
            frame = json.loads(msg.data)
            if frame.get("op") == "ready":
                self.ready.set()
            if frame.get("op") != "sync":
                continue
            for section in frame["rooms"]["join"].values():
                for e in section["timeline"]["events"]:
                    body = e["content"].get("body")
                    if e["type"] == "m.room.message" and isinstance(body, str):
                        self.seen.setdefault(body, now)
                        self.counts[body] = self.counts.get(body, 0) + 1
                        ARRIVAL.set()
            self.last_batch = frame["next_batch"]
            await self.ws.send_str(json.dumps({"op": "ack", "next_batch": frame["next_batch"]}))
            self.synced.set()

    async def ping(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.send_str('{"op":"ping"}')


async def wait_all(events: list[asyncio.Event], timeout: float) -> int:
    """Wait (bounded) for every event; how many were set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout)
    return sum(e.is_set() for e in events)


async def bounded(coros: list[Any], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def login(session: aiohttp.ClientSession, base: str, user: str) -> str:
    """A new device; retried (at most 5 tries) when SQLite is busy on a loaded machine."""
    for attempt in range(5):
        async with session.post(base + "/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": "bench-pw",
        }) as r:
            body = await r.json()
        if r.status == 200:
            return body["access_token"]
        await asyncio.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"login of {user} failed: {r.status} {body}")


async def latency_run(sender: Client, room: str, receivers: list[Sock], messages: int, tag: str) -> dict[str, Any]:
    lat: list[float] = []
    for i in range(messages):
        body = f"{tag}-{i}-{secrets.token_hex(3)}"
        t = time.perf_counter()
        await sender.send(room, body)
        deadline = time.monotonic() + 10
        while True:  # woken by each frame's arrival, bounded by the deadline
            ARRIVAL.clear()
            remaining = deadline - time.monotonic()
            if all(body in r.seen for r in receivers) or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ARRIVAL.wait(), remaining)
        lat += [(r.seen[body] - t) * 1000 for r in receivers if body in r.seen]
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - t)))  # one message per second
    return {"receivers": len(receivers), "messages": messages, "p50_ms": round(percentile(lat, 50), 1),
            "p95_ms": round(percentile(lat, 95), 1), "p99_ms": round(percentile(lat, 99), 1),
            "delivered": len(lat), "expected": messages * len(receivers)}


async def scenario(n: int, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"sockets": n}
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    async with server() as (base, pid), aiohttp.ClientSession(connector=conn) as s:
        users = [await Client(s, base).register("ws") for _ in range(min(100, n))]
        sender = await Client(s, base).register("sender")
        per_user = -(-n // len(users))
        t = time.perf_counter()
        tokens = await bounded([login(s, base, u.user_id) for u in users for _ in range(per_user)], 8)
        tokens = tokens[:n]
        out["logins_s"] = round(time.perf_counter() - t, 1)
        since = (await users[0].sync())["next_batch"]  # idle devices: nothing new since
        socks = [Sock(tok, since) for tok in tokens]
        rss0 = rss_mb(pid)
        t = time.perf_counter()
        # In waves of WAVE: each wave's sockets are all ready before the next opens (as
        # clients arrive over time). All at once, 10,000 handshakes queue behind each other
        # on the shared cores and the bench's bound ran out before the last was ready.
        ready = 0
        for start in range(0, n, WAVE):
            wave = socks[start:start + WAVE]
            await bounded([x.open(s, base) for x in wave], 200)
            got = await wait_all([x.ready for x in wave], 300)
            ready += got
            if got < len(wave):  # bounded: report how far it got instead of waiting on
                out["connect_all_s"] = round(time.perf_counter() - t, 1)
                out["ready_within_bound"] = ready
                return out
        out["connect_all_s"] = round(time.perf_counter() - t, 1)
        await asyncio.sleep(2)
        out["rss_per_idle_socket_kb"] = round((rss_mb(pid) - rss0) * 1024 / n, 1)
        out["server_rss_mb"] = round(rss_mb(pid), 1)

        # idle CPU: each socket pings once within the window (the heartbeat)
        cpu0 = cpu_s(pid)
        start = time.perf_counter()
        step = HEARTBEAT_WINDOW_S / len(socks)
        for i, x in enumerate(socks):
            await x.ping()
            delay = start + (i + 1) * step - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        out["server_cpu_ms_per_s_per_1000_idle"] = round(
            (cpu_s(pid) - cpu0) * 1000 / HEARTBEAT_WINDOW_S / (n / 1000), 1)

        # latency: receivers are users of their own (one socket each), so a message reaches
        # exactly them while the N idle sockets stay open
        recv_users = [await Client(s, base).register("rx") for _ in range(args.receivers)]
        recv_socks = [Sock(u.token) for u in recv_users]
        await bounded([x.open(s, base) for x in recv_socks], 50)
        await asyncio.wait_for(asyncio.gather(*(x.synced.wait() for x in recv_socks)), 120)
        for size in (10, args.receivers):
            room = (await sender.req("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
            await bounded([u.req("POST", f"/join/{room}", {}) for u in recv_users[:size]], 8)
            receivers = recv_socks[:size]
            await asyncio.sleep(1)
            out[f"push_latency_{size}_receivers"] = await latency_run(sender, room, receivers, args.messages, f"l{size}")
        socks = socks + recv_socks

        # reconnect storm: drop all without a close handshake, send meanwhile, reconnect
        storm_room = room
        sample = receivers
        for x in socks:
            if x.ws is not None:
                x.ws._response.connection.transport.abort()  # type: ignore[union-attr]
        await asyncio.sleep(1)
        missed = [f"storm-{i}" for i in range(5)]
        for body in missed:
            await sender.send(storm_room, body)
        t = time.perf_counter()
        await bounded([x.open(s, base) for x in socks], 500)
        await asyncio.wait_for(asyncio.gather(*(x.ready.wait() for x in socks)), 600)
        await asyncio.wait_for(asyncio.gather(*(x.synced.wait() for x in sample)), 120)
        out["reconnect_storm"] = {
            "resumed_s": round(time.perf_counter() - t, 1),
            "sample_receivers": len(sample),
            "all_missed_received": all(all(b in x.seen for b in missed) for x in sample),
            "duplicates": sum(max(0, c - 1) for x in sample for c in x.counts.values()),
        }
        for x in socks:
            if x.ws is not None:
                await x.ws.close()
    return out


async def compare(args: argparse.Namespace) -> dict[str, Any]:
    """The same receivers and messages through long-poll /sync and through WebSocket."""
    out: dict[str, Any] = {}
    conn = aiohttp.TCPConnector(limit=0)  # every long-poll holds a connection
    async with server() as (base, pid), aiohttp.ClientSession(connector=conn) as s:
        sender = await Client(s, base).register("sender")
        users = [await Client(s, base).register("cmp") for _ in range(args.receivers)]
        room = (await sender.req("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        await bounded([u.req("POST", f"/join/{room}", {}) for u in users], 8)

        # long-poll: each receiver loops /sync?since&timeout=30000
        seen: list[dict[str, float]] = [{} for _ in users]
        wire = [0]
        stop = asyncio.Event()

        async def poll(i: int, u: Client) -> None:
            since = (await u.sync())["next_batch"]
            while not stop.is_set():
                async with s.get(base + "/_matrix/client/v3/sync", params={"since": since, "timeout": "30000"},
                                 headers={"Authorization": f"Bearer {u.token}"}) as r:
                    raw = await r.read()
                    wire[0] += len(raw) + sum(len(k) + len(v) + 4 for k, v in r.raw_headers)
                now = time.perf_counter()
                data = json.loads(raw)
                since = data["next_batch"]
                for e in data["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", []):
                    seen[i].setdefault(e["content"].get("body", ""), now)
                    ARRIVAL.set()

        pollers = [asyncio.get_running_loop().create_task(poll(i, u)) for i, u in enumerate(users)]
        await asyncio.sleep(2)
        fake = [Sock("") for _ in users]
        for f, d in zip(fake, seen, strict=True):
            f.seen = d
        cpu0 = cpu_s(pid)
        out["long_poll"] = await latency_run(sender, room, fake, args.messages, "lp")
        out["long_poll"]["server_cpu_ms_per_message"] = round((cpu_s(pid) - cpu0) * 1000 / args.messages, 1)
        out["long_poll"]["bytes_on_wire_per_delivery"] = round(wire[0] / max(1, out["long_poll"]["delivered"]))
        stop.set()
        for p in pollers:
            p.cancel()

        socks = [Sock(u.token) for u in users]
        await bounded([x.open(s, base) for x in socks], 100)
        await asyncio.gather(*(x.synced.wait() for x in socks))
        for x in socks:
            x.bytes = 0
        cpu0 = cpu_s(pid)
        out["websocket"] = await latency_run(sender, room, socks, args.messages, "ws")
        out["websocket"]["server_cpu_ms_per_message"] = round((cpu_s(pid) - cpu0) * 1000 / args.messages, 1)
        # frames only (each ~2-14 bytes of WebSocket framing per frame not counted) + acks sent
        out["websocket"]["bytes_on_wire_per_delivery"] = round(sum(x.bytes for x in socks) / max(1, out["websocket"]["delivered"]))
        for x in socks:
            assert x.ws is not None
            await x.ws.close()
    return out


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sockets", type=int, nargs="*", default=[1000, 10000])
    p.add_argument("--messages", type=int, default=30)
    p.add_argument("--receivers", type=int, default=100)
    p.add_argument("--skip-compare", action="store_true")
    args = p.parse_args()
    result: dict[str, Any] = {"fd_limit": raise_fd_limit(), "runs": []}
    for n in args.sockets:
        assert n <= 12_000, "bounded: at most 12,000 sockets"
        result["runs"].append(await scenario(n, args))
        print(json.dumps(result["runs"][-1]), file=sys.stderr)
    if not args.skip_compare:
        result["long_poll_vs_websocket"] = await compare(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

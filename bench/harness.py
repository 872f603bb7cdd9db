"""Shared bench plumbing: start a throwaway Tricolor server, talk Matrix over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def disable_rate_limits(cfg: str) -> None:
    """Load generators are not abusers: rate limits would make the figures about them."""
    with open(cfg) as f:
        text = f.read()
    assert "\nrc_enabled: true\n" in text, "generate-config no longer writes rc_enabled"
    with open(cfg, "w") as f:
        f.write(text.replace("\nrc_enabled: true\n", "\nrc_enabled: false\n"))


@contextlib.asynccontextmanager
async def tricolor(
    name: str | None = None, port: int | None = None, extra: list[str] | None = None,
    database_url: str | None = None, workdir: str | None = None,
) -> AsyncIterator[tuple[str, int]]:
    """Run `python -m homeserver run` on a fresh config; yields (base_url, pid)."""
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="tricolor-bench-") as tmp:
        d = workdir or tmp
        cfg = os.path.join(d, f"hs-{port}.yaml")
        cmd = [sys.executable, "-m", "homeserver", "generate-config", "--server-name",
               name or f"localhost:{port}", "--port", str(port), "-o", cfg,
               "--ip-range-whitelist", "127.0.0.0/8", *(extra or [])]
        if database_url:
            cmd += ["--database-url", database_url]
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
        disable_rate_limits(cfg)
        # Benchmarks measure capacity, not the rate limits (on by default since issue 12).
        env = dict(os.environ, TRICOLOR_BCRYPT_ROUNDS="4", TRICOLOR_LOG_LEVEL="WARNING", TRICOLOR_RC_ENABLED="false")
        log = open(os.path.join(d, f"hs-{port}.log"), "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "homeserver", "run", "-c", cfg], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_healthy(base)
            yield base, proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


async def wait_healthy(base: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(base + "/_matrix/client/versions") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{base} did not come up")


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.s = session
        self.base = base
        self.token = ""
        self.user_id = ""

    async def req(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.s.request(method, self.base + "/_matrix/client/v3" + path, json=body,
                                  params=params, headers=headers) as r:
            data = await r.json()
            if r.status != 200:
                raise RuntimeError(f"{method} {path}: {r.status} {data}")
            return data

    async def register(self, prefix: str = "bench") -> Client:
        name = f"{prefix}{secrets.token_hex(4)}"
        body = {"username": name, "password": "bench-pw", "auth": {"type": "m.login.dummy"}}
        data = await self.req("POST", "/register", body)
        self.token, self.user_id = data["access_token"], data["user_id"]
        return self

    async def send(self, room_id: str, text: str) -> str:
        txn = secrets.token_hex(8)
        data = await self.req("PUT", f"/rooms/{room_id}/send/m.room.message/{txn}",
                              {"msgtype": "m.text", "body": text})
        return data["event_id"]

    async def sync(self, since: str | None = None, timeout: int = 0) -> dict[str, Any]:
        params = {"timeout": str(timeout)}
        if since:
            params["since"] = since
        return await self.req("GET", "/sync", params=params)

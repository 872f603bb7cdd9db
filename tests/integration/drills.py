"""What the fault drills share: a homeserver process that can be killed and restarted
over the same config and data, and clients that send bursts with their own txn ids.

The drills (``tests/integration/test_fault_drills*.py``, ``test_backup.py``) are marked
``fault_drills``: deselected from the default run, run by their own step of ``.ci/run``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs

from tests.integration.conftest import REPO, START_TIMEOUT, _free_port, _healthy

STOP_BOUND = 15.0  # seconds a graceful stop may take before the drill calls it a hang
# A first start migrates a new database (~80 tables): on a fresh mariadbd of the drill's own,
# beside a busy CI machine, that alone can take a minute.
DRILL_START_TIMEOUT = max(START_TIMEOUT, 150.0)


@attrs.define
class DrillServer:
    """One homeserver's config and data; the process can come and go."""

    workdir: Path
    database_url: str | None = None  # None: SQLite under workdir
    extra_yaml: str = ""
    extra_env: dict[str, str] = attrs.field(factory=dict)
    port: int = attrs.field(factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.workdir / "homeserver.yaml"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRICOLOR_")}
        env.update(PYTHONPATH=str(REPO), TRICOLOR_BCRYPT_ROUNDS="4", **self.extra_env)
        return env

    def generate(self, server_name: str = "drill.test") -> None:
        args = [sys.executable, "-m", "homeserver", "generate-config", "--server-name", server_name,
                "--port", str(self.port), "-o", str(self.config)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        subprocess.run(args, cwd=REPO, env=self._env(), check=True, capture_output=True, timeout=60)
        # Rate limits off: ten senders bursting 50 messages each is the point.
        text = self.config.read_text().replace("rc_enabled: true", "rc_enabled: false")
        self.config.write_text(text + "\n" + self.extra_yaml)

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "homeserver", "run", "-c", str(self.config)],
                cwd=REPO, env=self._env(), stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + DRILL_START_TIMEOUT
        while not _healthy(self.base_url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"server did not start:\n{self.log()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_BOUND)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=STOP_BOUND)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_BOUND)


class Client:
    """A user's access token over one aiohttp session; raw status and body, no asserts."""

    def __init__(self, session: aiohttp.ClientSession, server: DrillServer, token: str = "",
                 user_id: str = "") -> None:
        self.s, self.server, self.token, self.user_id = session, server, token, user_id

    async def request(self, method: str, path: str, body: Any = None, params: Any = None,
                      data: bytes | None = None, headers: dict[str, str] | None = None,
                      prefix: str = "/_matrix/client/v3") -> tuple[int, Any]:
        hdrs = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        hdrs.update(headers or {})
        async with self.s.request(method, self.server.base_url + prefix + path, json=body,
                                  params=params, data=data, headers=hdrs) as r:
            raw = await r.read()
            try:
                return r.status, json.loads(raw)
            except ValueError:
                return r.status, raw

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, data = await self.request(method, path, body, **kw)
        assert status == 200, f"{method} {path}: {status} {data}"
        return data

    async def register(self, name: str) -> Client:
        data = await self.ok("POST", "/register", {
            "username": name, "password": "pw-" + name, "auth": {"type": "m.login.dummy"},
        })
        self.token, self.user_id = data["access_token"], data["user_id"]
        return self

    async def send(self, room: str, txn: str, body: str) -> tuple[int, Any]:
        return await self.request(
            "PUT", f"/rooms/{quote(room, safe='')}/send/m.room.message/{txn}",
            {"msgtype": "m.text", "body": body},
        )

    async def timeline(self, room: str) -> list[dict[str, Any]]:
        """Every m.room.message of the room, oldest first, paging /messages backwards."""
        events: list[dict[str, Any]] = []
        params = {"dir": "b", "limit": "200"}
        while True:
            data = await self.ok("GET", f"/rooms/{quote(room, safe='')}/messages", params=params)
            events.extend(e for e in data["chunk"] if e["type"] == "m.room.message")
            if "end" not in data or not data["chunk"]:
                break
            params = {**params, "from": data["end"]}
        return list(reversed(events))


async def until(check: Callable[[], Awaitable[Any]], within: float = 30.0, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy (bounded; no fixed sleeps for order)."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {within}s (last: {last!r})")


@attrs.define
class OwnMariaDB:
    """A throwaway mariadbd on its own port and data directory (never the machine's
    MariaDB): drills kill and restart it."""

    workdir: Path
    port: int = attrs.field(factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}/tricolor"

    def install(self) -> None:
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.workdir / 'data'}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )
        self.start()
        self.sql("CREATE DATABASE tricolor CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")

    def sql(self, statement: str) -> str:
        done = subprocess.run(
            ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{self.port}", "-uroot", "-N", "-e", statement],
            capture_output=True, text=True, timeout=30, check=True,
        )
        return done.stdout

    def start(self) -> None:
        with open(self.workdir / "mariadbd.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["mariadbd", "--no-defaults", f"--datadir={self.workdir / 'data'}", "--user=root",
                 f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.workdir / 'sock'}",
                 f"--pid-file={self.workdir / 'pid'}", "--skip-log-bin", "--innodb-buffer-pool-size=32M",
                 "--max-connections=200"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run(
                ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{self.port}", "-uroot", "-e", "SELECT 1"],
                capture_output=True, timeout=30, check=False,
            )
            if probe.returncode == 0:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((self.workdir / "mariadbd.log").read_text()[-3000:])
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@attrs.define
class OwnRedis:
    """A throwaway redis-server on its own port (never the machine's Redis)."""

    workdir: Path
    port: int = attrs.field(factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.workdir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((self.workdir / "redis.log").read_text()[-3000:])
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

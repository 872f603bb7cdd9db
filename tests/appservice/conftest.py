"""An application service in its own process (tests/appservice/fake_as.py) registered
with an in-process homeserver. Retries are fast (50 ms doubling to 400 ms) so an outage
test does not wait minutes."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from config.schema import AppServicesConfig, HomeserverConfig
from tests.helpers import Matrix

REPO = Path(__file__).resolve().parents[2]
AS_TOKEN = "as-secret-token"
HS_TOKEN = "hs-secret-token"

REGISTRATION = """\
id: bridge
url: http://127.0.0.1:{port}
as_token: {as_token}
hs_token: {hs_token}
sender_localpart: _bridge_bot
rate_limited: false
receive_ephemeral: true
protocols: [chatnet]
namespaces:
  users:
    - exclusive: true
      regex: "@_bridge_.*:hs\\\\.test"
    - exclusive: false
      regex: "@shared_.*:hs\\\\.test"
  aliases:
    - exclusive: true
      regex: "#_bridge_.*:hs\\\\.test"
  rooms: []
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    """Bounded wait for something the homeserver does in the background."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@attrs.define
class FakeAS:
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, hs_url: str, refuse: int = 0) -> None:
        assert self.proc is None
        assert self.log is not None
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.appservice.fake_as", "--port", str(self.port), "--hs-url", hs_url,
             "--hs-token", HS_TOKEN, "--as-token", AS_TOKEN, "--refuse", str(refuse)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )
        out.close()

    async def start(self, hs_url: str, refuse: int = 0) -> None:
        self.spawn(hs_url, refuse)

        async def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"fake AS exited: {self.log.read_text() if self.log else ''}")
            try:
                await self.state()
                return True
            except aiohttp.ClientError:
                return False

        await wait_until(up, "the application service to listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    async def state(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/_test/state") as r:
            return dict(await r.json())

    async def events(self) -> list[dict[str, Any]]:
        state = await self.state()
        return [e for txn in state["txns"].values() for e in txn["events"]]


@pytest.fixture
async def fake_as(tmp_path: Path) -> AsyncIterator[FakeAS]:
    service = FakeAS(free_port(), log=tmp_path / "fake_as.log")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def as_config(tmp_path: Path, hs_config: HomeserverConfig, fake_as: FakeAS) -> HomeserverConfig:
    path = tmp_path / "bridge.yaml"
    path.write_text(REGISTRATION.format(port=fake_as.port, as_token=AS_TOKEN, hs_token=HS_TOKEN))
    return attrs.evolve(hs_config, app_services=AppServicesConfig(
        config_files=(str(path),), retry_min_ms=50, retry_max_ms=400,
    ))


def hs_url(hs: Matrix) -> str:
    return str(hs.client.make_url("/"))


@pytest.fixture
async def as_hs(
    as_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]], fake_as: FakeAS,
) -> Matrix:
    """A homeserver with the bridge registered, and the bridge running."""
    hs = await start_hs(as_config)
    await fake_as.start(hs_url(hs))
    return hs


def dump(value: Any) -> str:
    return json.dumps(value, indent=1)[:2000]

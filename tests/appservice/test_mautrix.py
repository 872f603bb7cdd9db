"""A real bridge framework against our Application Service API: mautrix (what Python
bridges are written with) in its own process receives transactions, registers a puppet
with m.login.application_service and answers as that masqueraded user."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs
import pytest

from config.schema import AppServicesConfig, HomeserverConfig
from tests.appservice.conftest import REPO, free_port, hs_url, wait_until
from tests.helpers import Matrix, q

REGISTRATION = """\
id: mx
url: http://127.0.0.1:{port}
as_token: mx-as
hs_token: mx-hs
sender_localpart: _mx_bot
namespaces:
  users: [{{exclusive: true, regex: "@_mx_.*:hs\\\\.test"}}]
"""


@pytest.fixture
async def mautrix_process(tmp_path: Path) -> AsyncIterator[Callable[[str, int], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(url: str, port: int) -> subprocess.Popen[bytes]:
        log = (tmp_path / "mautrix.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.appservice.mautrix_echo", "--port", str(port), "--hs-url", url,
             "--as-token", "mx-as", "--hs-token", "mx-hs"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def test_a_mautrix_bridge_answers_as_its_puppet(
    tmp_path: Path, hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
    mautrix_process: Callable[[str, int], subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    registration = tmp_path / "mx.yaml"
    registration.write_text(REGISTRATION.format(port=port))
    hs = await start_hs(attrs.evolve(hs_config, app_services=AppServicesConfig(
        config_files=(str(registration),), retry_min_ms=50, retry_max_ms=400,
    )))
    mautrix_process(hs_url(hs), port)
    alice = await hs.register("alice")
    room = await alice.create_room(preset="public_chat")
    await alice.invite(room, "@_mx_bot:hs.test")

    async def bot_joined() -> bool:
        return "@_mx_bot:hs.test" in (await alice.get(f"/rooms/{q(room)}/joined_members"))["joined"]

    await wait_until(bot_joined, "the mautrix bot to accept the invite", timeout=30)
    await alice.send(room, "hello bridge")

    async def echoed() -> bool:
        chunk = (await alice.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 50}))["chunk"]
        return any(e["sender"] == "@_mx_echo:hs.test" and e["content"].get("body") == "echo: hello bridge"
                   for e in chunk)

    await wait_until(echoed, "the puppet's echo", timeout=30)
    assert (await alice.get(f"/profile/{q('@_mx_echo:hs.test')}"))["displayname"] == "_mx_echo"

"""A user on hs1 and a user on hs2 (a real two-server test network, `testnet up`) chat
through the web client each server serves: a direct chat started by typing
`bob@hs2.test`, the invitation accepted in the other browser, messages both ways."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.integration.conftest import _free_port
from tests.integration.test_testnet import _free_block, run_testnet
from tests.web.harness import START_TIMEOUT, _serves, register
from tests.web.test_chat import message, send


@attrs.frozen
class NetServer:
    name: str
    base_url: str
    web_url: str


@pytest.fixture
def net(tmp_path: Path, web_dist: Path) -> Iterator[dict[str, NetServer]]:
    directory = tmp_path / "net"
    up = run_testnet("up", "--servers", "2", "--dir", str(directory), "--base-port", str(_free_block()),
                     "--fast-passwords")
    servers: dict[str, NetServer] = {}
    try:
        for info in json.loads(up.stdout)["servers"]:
            # The network's configs get a web client each; a restart picks it up.
            web_port = _free_port()
            with open(info["config"], "a") as f:
                f.write(f"\nweb_client:\n  port: {web_port}\n")
            run_testnet("stop", info["name"], "--dir", str(directory))
            run_testnet("start", info["name"], "--dir", str(directory))
            web_url = f"http://127.0.0.1:{web_port}/"
            deadline = time.monotonic() + START_TIMEOUT
            while not _serves(web_url):
                assert time.monotonic() < deadline, f"{info['name']} serves no web client:\n{Path(info['log']).read_text()[-3000:]}"
                time.sleep(0.05)
            servers[info["name"]] = NetServer(info["name"], info["client_url"], web_url)
        yield servers
    finally:
        run_testnet("down", "--dir", str(directory), check=False)


async def test_users_of_two_servers_chat_over_federation(net: dict[str, NetServer], open_client: Any, shots: Any) -> None:
    hs1, hs2 = net["hs1.test"], net["hs2.test"]
    alice = register(hs1.base_url, "alice")
    bob = register(hs2.base_url, "bob")
    a = await open_client(hs1, alice)
    b = await open_client(hs2, bob)
    await a.get_by_text("live (WebSocket)").wait_for()

    await a.get_by_text("New chat or group").click()
    await a.get_by_label("Chat with").fill("bob@hs2.test")
    await a.get_by_role("button", name="Start chat").click()
    await a.get_by_role("textbox", name="Message").wait_for()

    accept = b.get_by_role("button", name="Accept invitation", exact=False)
    await accept.wait_for()
    await shots.take(b, "invitation-from-hs1")
    await accept.click()
    await b.get_by_role("textbox", name="Message").wait_for()

    await send(a, "Hello from hs1")
    await message(b, "Hello from hs1").wait_for()
    await send(b, "Hello back from hs2")
    await message(a, "Hello back from hs2").wait_for()
    await message(a, "Hello from hs1").get_by_text("read by 1").wait_for()
    await shots.take(a, "federated-chat-hs1")
    await shots.take(b, "federated-chat-hs2")
    assert await a.locator("#chat-title").inner_text() != ""

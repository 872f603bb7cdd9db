"""Helpers for the AMQP federation drills: a testnet whose servers each run a RabbitMQ node.

Everything is bounded in time; every network started here is taken down by its fixture.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PASSWORD = "correct horse"


def run_testnet(*args: str, timeout: float = 180) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "homeserver", "testnet", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"testnet {' '.join(args)}:\n{done.stderr}"
    return dict(json.loads(done.stdout))


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    timeout: float = 30,
) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with _NO_PROXY.open(request, timeout=timeout) as response:
        return json.load(response)


def world_traversable_dir(prefix: str) -> str:
    """RabbitMQ nodes run as user rabbitmq: their data directory's parents must be traversable
    (pytest's tmp_path is not: /tmp/pytest-of-root is 0700)."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


class Net:
    """A running network: its servers by name, one user per server, one shared room."""

    def __init__(self, directory: str, status: dict[str, Any]) -> None:
        self.dir = directory
        self.servers = {s["name"]: s for s in status["servers"]}
        self.names = list(self.servers)
        self.tokens: dict[str, str] = {}
        self.users: dict[str, str] = {}
        self.room = ""

    def url(self, name: str) -> str:
        return str(self.servers[name]["client_url"])

    def testnet(self, *args: str) -> dict[str, Any]:
        return run_testnet(*args, "--dir", self.dir)

    def status(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.testnet("status")["servers"]}

    def setup_room(self) -> None:
        for i, name in enumerate(self.names):
            body = {"username": f"u{i}", "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
            reply = call(self.url(name), "POST", "/_matrix/client/v3/register", body)
            self.tokens[name], self.users[name] = reply["access_token"], reply["user_id"]
        first = self.names[0]
        self.room = call(
            self.url(first),
            "POST",
            "/_matrix/client/v3/createRoom",
            {"preset": "public_chat"},
            self.tokens[first],
        )["room_id"]
        # A room id of version 12 names no server: say where to join through.
        via = self.users[first].split(":", 1)[1]
        for name in self.names[1:]:
            call(
                self.url(name),
                "POST",
                f"/_matrix/client/v3/join/{self.room}?server_name={via}",
                {},
                self.tokens[name],
                timeout=60,
            )
        members = {self.users[n] for n in self.names}
        self.wait_until(
            lambda: all(members <= self.joined(n) for n in self.names), 60, "everyone joined"
        )

    def joined(self, name: str) -> set[str]:
        try:
            reply = call(
                self.url(name),
                "GET",
                f"/_matrix/client/v3/rooms/{self.room}/joined_members",
                None,
                self.tokens[name],
            )
        except urllib.error.HTTPError:
            return set()
        return set(reply.get("joined", {}))

    def send(self, name: str, body: str, txn: str) -> None:
        call(
            self.url(name),
            "PUT",
            f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/{txn}",
            {"msgtype": "m.text", "body": body},
            self.tokens[name],
        )

    def burst(self, name: str, tag: str, count: int) -> list[str]:
        bodies = [f"{tag} {name} {i:04d}" for i in range(count)]
        for i, body in enumerate(bodies):
            self.send(name, body, f"{tag}-{i}")
        return bodies

    def bursts(
        self, tag: str, count: int, senders: list[str] | None = None
    ) -> dict[str, list[str]]:
        """``count`` messages from every sender at once (threads: both directions together)."""
        senders = senders or self.names
        with concurrent.futures.ThreadPoolExecutor(len(senders)) as pool:
            futures = {n: pool.submit(self.burst, n, tag, count) for n in senders}
            return {n: f.result(timeout=600) for n, f in futures.items()}

    def timeline(self, name: str) -> list[tuple[str, str, str]]:
        """(event id, sender, body) of every message in the room, oldest first, via /messages."""
        out: list[tuple[str, str, str]] = []
        token: str | None = None
        for _ in range(1000):
            query = "dir=b&limit=500" + (f"&from={token}" if token else "")
            chunk = call(
                self.url(name),
                "GET",
                f"/_matrix/client/v3/rooms/{self.room}/messages?{query}",
                None,
                self.tokens[name],
            )
            for event in chunk["chunk"]:
                if event.get("type") == "m.room.message":
                    out.append(
                        (event["event_id"], event["sender"], event["content"].get("body", ""))
                    )
            token = chunk.get("end")
            if not chunk["chunk"] or not token:
                break
        out.reverse()
        return out

    def wait_until(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")

    def wait_converged(
        self, expected: dict[str, list[str]], timeout: float
    ) -> dict[str, list[tuple[str, str, str]]]:
        """Until every server's timeline holds every expected body; then return the timelines."""
        wanted = {b for bodies in expected.values() for b in bodies}

        def done() -> bool:
            return all(wanted <= {b for _, _, b in self.timeline(n)} for n in self.names)

        self.wait_until(done, timeout, f"{len(wanted)} messages on every server")
        return {n: self.timeline(n) for n in self.names}


def assert_exactly_once_in_order(
    net: Net, timelines: dict[str, list[tuple[str, str, str]]], expected: dict[str, list[str]]
) -> None:
    """The same events on every server, none twice, each sender's messages all there in the
    order they were sent. (Concurrent messages of two servers interleave in arrival order,
    which differs per server in every Matrix implementation: the room DAG orders them only
    per sender, so only that order can be compared.)"""
    first = sorted(timelines[net.names[0]])
    for name, timeline in timelines.items():
        ids = [e for e, _, _ in timeline]
        assert len(ids) == len(set(ids)), f"an event appears twice in {name}'s timeline"
        assert sorted(timeline) == first, (
            f"{name}'s timeline holds other events than {net.names[0]}'s"
        )
        bodies = [b for _, _, b in timeline]
        for sender, sent in expected.items():
            wanted = set(sent)
            seen = [b for b in bodies if b in wanted]
            assert seen == sent, f"on {name}, {sender}'s messages are not all there once, in order"


@contextlib.contextmanager
def amqp_network(servers: int, *, transport: str = "amqp", names: str | None = None) -> Iterator[Net]:
    """``testnet up --transport amqp``; always ``down`` after, killing what is left.
    ``names="ip"``: servers named 127.0.0.1:<port>, as a Synapse peer needs."""
    directory = world_traversable_dir("tri-amqp-")
    net_dir = os.path.join(directory, "net")
    try:
        up = run_testnet(
            "up",
            "--servers",
            str(servers),
            "--transport",
            transport,
            "--dir",
            net_dir,
            "--base-port",
            str(_free_block(2 * servers)),
            "--fast-passwords",
            "--timeout",
            "60",
            *(["--names", names] if names else []),
        )
        yield Net(net_dir, up)
    finally:
        _teardown(net_dir)
        shutil.rmtree(directory, ignore_errors=True)


def _teardown(net_dir: str) -> None:
    state = Path(net_dir) / "testnet.json"
    if not state.exists():
        return
    with contextlib.suppress(Exception):
        subprocess.run(
            [sys.executable, "-m", "homeserver", "testnet", "down", "--dir", net_dir],
            cwd=REPO_ROOT,
            capture_output=True,
            timeout=120,
        )
    if state.exists():  # down failed: kill whatever it left
        for server in json.loads(state.read_text())["servers"]:
            pids = [server.get("pid")]
            broker = server.get("broker") or {}
            with contextlib.suppress(OSError, ValueError):
                pids.append(
                    int(Path(broker.get("directory", "/nonexistent"), "node.pid").read_text())
                )
            for pid in pids:
                if pid:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)


def _free_block(size: int) -> int:
    from tests.integration.test_testnet import _free_block as free_block

    return free_block(max(size, 2))

"""Three worker processes of one homeserver on the real MariaDB and Redis
(docs/workers.md): each started with `run --worker-name` and the same config, each on
its own port here so the test can choose whom it talks to.

Marked `workers_drills` so CI may run them as a step of their own.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from homeserver.core.shards import shard_of
from homeserver.outbound.redis_bus import bus_namespace
from tests.conftest import create_mysql_database, drop_mysql_database
from tests.integration.conftest import REPO, START_TIMEOUT, _free_port, _healthy

pytestmark = pytest.mark.workers_drills

REDIS_URL = "redis://127.0.0.1:6379/0"
LEASE_MS = 3000
NAMES = ("w1", "w2", "w3")


class Worker:
    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.port, self.proc, self.log = name, port, proc, log

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             expect: int | None = 200, timeout: float = 60) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, "/_matrix/client/v3" + path, json.dumps(body) if body is not None else None, headers)
            response = conn.getresponse()
            data = json.loads(response.read() or b"null")
        finally:
            conn.close()
        if expect is not None:
            assert response.status == expect, (self.name, path, response.status, data)
        return response.status, data


class Cluster:
    def __init__(self, tmp: Path, db_url: str) -> None:
        self.tmp = tmp
        self.config = tmp / "hs.yaml"
        self.server_name = f"workers-{os.getpid()}-{int(time.time() * 1000) % 100000}.test"
        self.db_url = db_url
        self.workers: dict[str, Worker] = {}
        subprocess.run(
            [sys.executable, "-m", "homeserver", "generate-config", "--server-name", self.server_name,
             "--port", str(_free_port()), "--database-url", db_url, "-o", str(self.config)],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True, timeout=60,
        )

    def env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRICOLOR_")}
        env.update(
            PYTHONPATH=str(REPO), TRICOLOR_BCRYPT_ROUNDS="4", TRICOLOR_PORT=str(port),
            TRICOLOR_REDIS_URL=REDIS_URL, TRICOLOR_WORKERS__LEASE_MS=str(LEASE_MS),
            TRICOLOR_RC_ENABLED="false",
        )
        return env

    def start(self, name: str) -> Worker:
        port = _free_port()
        log = self.tmp / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "homeserver", "run", "-c", str(self.config), "--worker-name", name],
                cwd=REPO, env=self.env(port), stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT * 2
        while not _healthy(f"http://127.0.0.1:{port}"):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"worker {name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        self.workers[name] = Worker(name, port, proc, log)
        return self.workers[name]

    def shard_holder(self, room_id: str) -> str | None:
        r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            key = f"tricolor:{bus_namespace(self.server_name, self.db_url)}:shard:{shard_of(room_id)}"
            return r.get(key)
        finally:
            r.close()

    def stop(self) -> None:
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers.values():
            try:
                w.proc.wait(15)
            except subprocess.TimeoutExpired:
                w.proc.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    db_url = asyncio.run(create_mysql_database())
    # The first worker migrates; the others start once it is up.
    c = Cluster(tmp_path, db_url)
    try:
        for name in NAMES:
            c.start(name)
        yield c
    finally:
        c.stop()
        asyncio.run(drop_mysql_database(db_url))


def register(w: Worker, user: str) -> dict[str, Any]:
    body = {"username": user, "password": "pw-" + user, "auth": {"type": "m.login.dummy"}}
    return dict(w.call("POST", "/register", body)[1])


def messages(w: Worker, room: str, token: str) -> list[dict[str, Any]]:
    _, page = w.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=1000", token=token)
    return [e for e in reversed(page["chunk"]) if e["type"] == "m.room.message"]


def test_users_on_three_workers_chat_and_a_long_poll_wakes_for_a_send_elsewhere(cluster: Cluster) -> None:
    a, b, c = (cluster.workers[n] for n in NAMES)
    alice, bob, carol = register(a, "alice"), register(b, "bob"), register(c, "carol")
    room = a.call("POST", "/createRoom", {"preset": "public_chat"}, alice["access_token"])[1]["room_id"]
    b.call("POST", f"/join/{quote(room)}", {}, bob["access_token"])
    c.call("POST", f"/join/{quote(room)}", {}, carol["access_token"])
    since = a.call("GET", "/sync", token=alice["access_token"])[1]["next_batch"]

    # alice long-polls on a; carol sends on c: the poll answers with the message.
    loop_result: dict[str, Any] = {}

    def poll() -> None:
        nonlocal since
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, got = a.call("GET", f"/sync?since={since}&timeout=30000", token=alice["access_token"])
            since = got["next_batch"]
            events = got["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])
            bodies = [e["content"]["body"] for e in events if e["type"] == "m.room.message"]
            if bodies:
                loop_result["bodies"] = bodies
                return

    import threading
    t = threading.Thread(target=poll)
    t.start()
    c.call("PUT", f"/rooms/{quote(room)}/send/m.room.message/t1", {"msgtype": "m.text", "body": "from c"},
           carol["access_token"])
    t.join(70)
    assert loop_result.get("bodies") == ["from c"]

    for i, (w, user) in enumerate([(b, bob), (a, alice), (c, carol), (b, bob)]):
        w.call("PUT", f"/rooms/{quote(room)}/send/m.room.message/n{i}", {"msgtype": "m.text", "body": f"n{i}"},
               user["access_token"])
    want = ["from c", "n0", "n1", "n2", "n3"]
    for w, user in ((a, alice), (b, bob), (c, carol)):
        assert [e["content"]["body"] for e in messages(w, room, user["access_token"])] == want


def test_sigkill_of_a_rooms_writer_mid_burst_loses_no_acknowledged_message(cluster: Cluster) -> None:
    w = cluster.workers
    alice = register(w["w1"], "alice")
    token = alice["access_token"]
    room = w["w1"].call("POST", "/createRoom", {"preset": "public_chat"}, token)[1]["room_id"]
    w["w1"].call("PUT", f"/rooms/{quote(room)}/send/m.room.message/first", {"msgtype": "m.text", "body": "first"},
                 token)
    holder = cluster.shard_holder(room)
    assert holder in NAMES
    sender = next(w[n] for n in NAMES if n != holder)
    acked: list[str] = ["first"]
    for i in range(60):
        if i == 20:
            w[holder].proc.send_signal(signal.SIGKILL)  # mid-burst: the room's writer dies
            w[holder].proc.wait(10)
        body = f"burst {i}"
        # A client retries a failed send with the same transaction id until it is answered.
        deadline = time.monotonic() + LEASE_MS / 1000 * 10
        while True:
            try:
                status, answer = sender.call(
                    "PUT", f"/rooms/{quote(room)}/send/m.room.message/b{i}", {"msgtype": "m.text", "body": body},
                    token, expect=None, timeout=30,
                )
            except OSError:
                status, answer = 0, None
            if status == 200:
                acked.append(body)
                break
            assert time.monotonic() < deadline, (status, answer)
            time.sleep(0.2)
    new_holder = cluster.shard_holder(room)
    assert new_holder not in (None, holder)
    stored = [e["content"]["body"] for e in messages(sender, room, token)]
    assert stored == acked  # everything acknowledged, once each, in the order acknowledged

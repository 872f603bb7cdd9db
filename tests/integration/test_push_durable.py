"""Pusher deliveries survive a restart: a real server process, a real local push gateway
and a real local SMTP server that are down while the server tries, then up after it was
stopped and started again. Each notification reaches them exactly once, in order.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-notifications ("Pushers") and
https://spec.matrix.org/v1.19/push-gateway-api/.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.integration.conftest import REPO, START_TIMEOUT, _free_port, _healthy

WAIT = 60.0  # seconds: bound on every wait (backoff before the stop is a few seconds)


class _Server:
    """One homeserver process on a generated config and its SQLite database."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.config = tmp / "hs.yaml"
        self.db = tmp / "hs.db"
        self.log = tmp / "server.log"
        subprocess.run(
            [sys.executable, "-m", "homeserver", "generate-config", "--server-name", "push.test",
             "--port", str(self.port), "--ip-range-whitelist", "127.0.0.1/32", "-o", str(self.config)],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True, timeout=60,
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRICOLOR_")}
        self.env.update(
            PYTHONPATH=str(REPO), TRICOLOR_BCRYPT_ROUNDS="4",
            TRICOLOR_DATABASE_URL=f"sqlite+aiosqlite:///{self.db}", **env,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "homeserver", "run", "-c", str(self.config)],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(f"http://127.0.0.1:{self.port}"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=15) == 0

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, "/_matrix/client/v3" + path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = json.loads(response.read())
        conn.close()
        assert response.status == 200, data
        return data

    def register(self, user: str) -> str:
        body = {"username": user, "password": "pw-" + user, "auth": {"type": "m.login.dummy"}}
        return str(self.call("POST", "/register", body)["access_token"])

    def chat(self) -> tuple[str, str, str]:
        """alice and bob in a public room: (alice's token, bob's token, room id)."""
        alice, bob = self.register("alice"), self.register("bob")
        room = self.call("POST", "/createRoom", {"preset": "public_chat"}, alice)["room_id"]
        self.call("POST", f"/join/{room}", {}, bob)
        return alice, bob, room

    def say(self, token: str, room: str, text: str) -> str:
        body = {"msgtype": "m.text", "body": text}
        return str(self.call("PUT", f"/rooms/{room}/send/m.room.message/{text}", body, token)["event_id"])

    def row(self, sql: str) -> Any:
        with sqlite3.connect(self.db) as db:
            return db.execute(sql).fetchone()


def _until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while not (got := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
    return got


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[dict[str, str]], _Server]]:
    made: list[_Server] = []

    def make(env: dict[str, str]) -> _Server:
        made.append(_Server(tmp_path, env))
        return made[-1]

    yield make
    for s in made:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(timeout=15)


class _Gateway(BaseHTTPRequestHandler):
    received: queue.Queue[dict[str, Any]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.put(body)
        data = b'{"rejected": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_push_pending_at_stop_reaches_the_gateway_once_after_restart(
    server: Callable[[dict[str, str]], _Server],
) -> None:
    gateway_port = _free_port()  # nothing listens there yet: the gateway is down
    hs = server({})
    hs.start()
    alice, bob, room = hs.chat()
    hs.call("POST", "/pushers/set", {
        "kind": "http", "app_id": "org.example.app", "pushkey": "bob-phone", "app_display_name": "App",
        "device_display_name": "Phone", "lang": "en",
        "data": {"url": f"http://127.0.0.1:{gateway_port}/_matrix/push/v1/notify"},
    }, bob)
    first = hs.say(alice, room, "first")
    # The delivery is in the durable queue and the gateway was tried (and was down).
    _until(lambda: hs.row("SELECT attempts FROM push_queue")[0] >= 1 if hs.row("SELECT 1 FROM push_queue") else None,
           "a failed attempt")
    hs.stop()

    received: queue.Queue[dict[str, Any]] = queue.Queue()
    handler = type("Gateway", (_Gateway,), {"received": received})
    gateway = ThreadingHTTPServer(("127.0.0.1", gateway_port), handler)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        hs.start()
        second = hs.say(alice, room, "second")
        got = [received.get(timeout=WAIT)["notification"] for _ in range(2)]
        # In order, each once: a repeat of the first would have come before the second.
        assert [n["event_id"] for n in got] == [first, second]
        assert [n["devices"][0]["pushkey"] for n in got] == ["bob-phone", "bob-phone"]
        assert received.empty()
        _until(lambda: hs.row("SELECT COUNT(*) FROM push_queue")[0] == 0, "an empty queue")
    finally:
        gateway.shutdown()
        gateway.server_close()
    hs.stop()


class _Inbox:
    def __init__(self) -> None:
        self.messages: queue.Queue[Any] = queue.Queue()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.put((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


def test_an_email_digest_pending_at_stop_is_mailed_once_after_restart(
    server: Callable[[dict[str, str]], _Server],
) -> None:
    smtp_port = _free_port()  # the mail server is down
    hs = server({
        "TRICOLOR_EMAIL__SMTP_HOST": "127.0.0.1", "TRICOLOR_EMAIL__SMTP_PORT": str(smtp_port),
        "TRICOLOR_EMAIL__NOTIF_DELAY_MS": "200",
    })
    hs.start()
    alice, bob, room = hs.chat()
    hs.call("POST", "/pushers/set", {
        "kind": "email", "app_id": "m.email", "pushkey": "bob@example.org", "app_display_name": "Email",
        "device_display_name": "bob@example.org", "lang": "en", "data": {},
    }, bob)
    hs.say(alice, room, "first")
    _until(lambda: (hs.row("SELECT attempts FROM email_digests") or (0,))[0] >= 1, "a failed attempt")
    hs.stop()

    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        hs.start()
        rcpts, msg = inbox.messages.get(timeout=WAIT)
        assert rcpts == ["bob@example.org"]
        assert "first" in msg.get_payload() and "1 unread message" in msg["Subject"]
        hs.say(alice, room, "second")
        _, later = inbox.messages.get(timeout=WAIT)
        # The second digest has only what came after the first one: nothing is mailed twice.
        assert "second" in later.get_payload() and "first" not in later.get_payload()
        assert inbox.messages.empty()
    finally:
        controller.stop()
    hs.stop()

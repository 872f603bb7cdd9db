"""Stopping a real server process while a client long-polls ``/sync``.

A stop must not wait for open long-polls to time out: they answer at once (an
empty response with a token the client can resume from), in-flight requests
finish, queued writes reach the database, and the process exits. ``testnet stop``
and service managers give a server about ten seconds before killing it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, START_TIMEOUT, _free_port, _healthy

STOP_BOUND = 10.0  # seconds: what `testnet stop` waits before SIGKILL
POLL_MS = 30_000


def _start(config: Path, log_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRICOLOR_")}
    env.update(PYTHONPATH=str(REPO), TRICOLOR_BCRYPT_ROUNDS="4")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "homeserver", "run", "-c", str(config)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not _healthy(f"http://127.0.0.1:{port}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.05)
    return proc


def _call(port: int, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=STOP_BOUND)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, "/_matrix/client/v3" + path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    assert response.status == 200, data
    return data


def _register(port: int, user: str) -> str:
    body = {"username": user, "password": "pw-" + user, "auth": {"type": "m.login.dummy"}}
    return str(_call(port, "POST", "/register", body)["access_token"])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_answers_open_long_polls_and_keeps_the_last_event(
    tmp_path: Path, sig: signal.Signals,
) -> None:
    port = _free_port()
    config = tmp_path / "hs.yaml"
    subprocess.run(
        [sys.executable, "-m", "homeserver", "generate-config", "--server-name", "stop.test",
         "--port", str(port), "-o", str(config)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True, timeout=60,
    )
    log_path = tmp_path / "server.log"
    proc = _start(config, log_path, port)
    try:
        alice, bob = _register(port, "alice"), _register(port, "bob")
        room = _call(port, "POST", "/createRoom", {}, alice)["room_id"]
        since = _call(port, "GET", "/sync", token=bob)["next_batch"]

        # Bob long-polls; nothing that happens next concerns him, so only the stop can answer.
        poll = http.client.HTTPConnection("127.0.0.1", port, timeout=STOP_BOUND)
        poll.request(
            "GET", f"/_matrix/client/v3/sync?since={since}&timeout={POLL_MS}",
            headers={"Authorization": f"Bearer {bob}"},
        )
        # Answered after the poll's connection was accepted (accepts are in order).
        assert _healthy(f"http://127.0.0.1:{port}")
        message = {"msgtype": "m.text", "body": "the last word"}
        _call(port, "PUT", f"/rooms/{room}/send/m.room.message/t1", message, alice)

        proc.send_signal(sig)
        answer = poll.getresponse()  # within STOP_BOUND, far below the poll's 30 s
        body = json.loads(answer.read())
        assert answer.status == 200
        assert isinstance(body["next_batch"], str) and body["next_batch"]
        assert proc.wait(timeout=STOP_BOUND) == 0
        log = log_path.read_text()
        assert f"{sig.name} received: stopping" in log
        assert "answered" in log and "waiting /sync requests" in log

        # After a restart the poll's token is still good and the last event is there.
        proc = _start(config, log_path, port)
        _call(port, "GET", f"/sync?since={body['next_batch']}&timeout=0", token=bob)
        chunk = _call(port, "GET", f"/rooms/{room}/messages?dir=b&limit=5", token=alice)["chunk"]
        assert "the last word" in [e["content"].get("body") for e in chunk]
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=STOP_BOUND)


def test_stop_is_bounded_by_a_request_waiting_on_a_silent_peer(tmp_path: Path) -> None:
    """A request stuck on another server (here: one that accepts and never answers, for
    longer than any stop may take) does not hold the stop past its bound: in-flight
    requests get a grace period, then the process exits anyway, still flushing its writes."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = _free_port()
    config = tmp_path / "hs.yaml"
    subprocess.run(
        [sys.executable, "-m", "homeserver", "generate-config", "--server-name", "stop.test",
         "--port", str(port), "-o", str(config),
         "--static-map", f"silent.test=127.0.0.1:{silent.getsockname()[1]}",
         "--ip-range-whitelist", "127.0.0.1/32"],  # the silent peer is on loopback
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True, timeout=60,
    )
    log_path = tmp_path / "server.log"
    proc = _start(config, log_path, port)
    try:
        alice = _register(port, "alice")
        room = _call(port, "POST", "/createRoom", {}, alice)["room_id"]
        stuck = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        stuck.request("GET", "/_matrix/client/v3/profile/@someone:silent.test",
                      headers={"Authorization": f"Bearer {alice}"})
        # The server has opened its connection to the silent peer: the request is in flight.
        silent.settimeout(STOP_BOUND)
        peer_side, _ = silent.accept()
        _call(port, "PUT", f"/rooms/{room}/send/m.room.message/t1", {"msgtype": "m.text", "body": "kept"}, alice)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_BOUND) == 0
        peer_side.close()
        proc = _start(config, log_path, port)
        chunk = _call(port, "GET", f"/rooms/{room}/messages?dir=b&limit=5", token=alice)["chunk"]
        assert "kept" in [e["content"].get("body") for e in chunk]
    finally:
        silent.close()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=STOP_BOUND)

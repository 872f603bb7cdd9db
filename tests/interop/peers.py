"""Start and stop real homeserver processes for interop tests.

``TricolorProcess``: ``python -m homeserver generate-config`` + ``run`` with a plain
client listener and a TLS federation listener whose certificate comes from a test CA;
its server name is the IP literal ``127.0.0.1:<federation port>`` so that peers without
a static map (Synapse) can reach it.

``SynapsePeer``: ``sytest-lite/synapse/start_peer.sh`` / ``stop_peer.sh`` with the same CA.

Every wait is bounded; logs stay in each server's directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from config.loader import env_override_names

REPO = Path(__file__).resolve().parents[2]
SYTEST_LITE = REPO / "sytest-lite"
START_PEER = SYTEST_LITE / "synapse" / "start_peer.sh"
STOP_PEER = SYTEST_LITE / "synapse" / "stop_peer.sh"
TRICOLOR_START_TIMEOUT = 30.0
# start_peer.sh may first have to `pip install matrix-synapse` into a fresh venv.
SYNAPSE_INSTALL_TIMEOUT = 900.0
SYNAPSE_START_TIMEOUT = 90
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PeerUnavailable(Exception):
    """The peer (Synapse) could not be installed or started; callers may skip."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_bytes()[-64 * 1024 :].decode("utf-8", "replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def _get_json(url: str, timeout: float = 2.0) -> object | None:
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return json.load(response) if response.status == 200 else None
    except (OSError, ValueError, urllib.error.URLError):
        return None


class TricolorProcess:
    def __init__(self, directory: Path, ca_dir: Path, client_port: int, federation_port: int):
        self.directory = directory
        self.ca_dir = ca_dir
        self.client_port = client_port
        self.federation_port = federation_port
        self.server_name = f"127.0.0.1:{federation_port}"
        self.client_url = f"http://127.0.0.1:{client_port}"
        self.config = directory / "homeserver.yaml"
        self.log = directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        # Config overrides from our environment (TRICOLOR_DATABASE_URL ...) would bend the
        # server away from the generated config: drop them, as `testnet` does.
        overrides = set(env_override_names())
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in overrides and not (k.startswith("TRICOLOR_") and "__" in k)
        }
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env["TRICOLOR_BCRYPT_ROUNDS"] = "4"
        # The suite drives the server faster than people type (Synapse's peer config lifts its
        # limits too); rate limits have tests of their own (tests/admin/test_rate_limits.py).
        env["TRICOLOR_RC_ENABLED"] = "false"
        return env

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = self._env()
        subprocess.run(
            [
                sys.executable, "-m", "homeserver", "generate-config",
                "--server-name", self.server_name,
                "--port", str(self.client_port),
                "--federation-port", str(self.federation_port),
                "--ca-dir", str(self.ca_dir),
                # Synapse is on this machine: loopback, denied by default (SSRF protection).
                "--ip-range-whitelist", "127.0.0.0/8",
                "-o", str(self.config),
            ],
            cwd=REPO, env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "homeserver", "run", "-c", str(self.config)],
                cwd=self.directory, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + TRICOLOR_START_TIMEOUT
        while _get_json(f"{self.client_url}/health", 1.0) != {"status": "ok"}:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"Tricolor exited with code {code} while starting:\n{tail(self.log)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Tricolor did not answer /health within {TRICOLOR_START_TIMEOUT:g}s:\n"
                    f"{tail(self.log)}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


class SynapsePeer:
    def __init__(self, directory: Path, ca_dir: Path, client_port: int, federation_port: int):
        self.directory = directory
        self.ca_dir = ca_dir
        self.client_port = client_port
        self.federation_port = federation_port
        self.server_name = f"127.0.0.1:{federation_port}"
        self.client_url = f"http://127.0.0.1:{client_port}"
        self.log = directory / "homeserver.log"
        self.started = False

    def start(self) -> None:
        env = {**os.environ, "SYNAPSE_START_TIMEOUT": str(SYNAPSE_START_TIMEOUT)}
        env.setdefault("TRICOLOR_PYTHON", sys.executable)
        args = [
            str(START_PEER), str(self.ca_dir), str(self.client_port),
            str(self.federation_port), str(self.directory),
        ]  # fmt: skip
        try:
            result = subprocess.run(
                args, env=env, capture_output=True, text=True, timeout=SYNAPSE_INSTALL_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.stop()
            raise PeerUnavailable(f"start_peer.sh failed: {exc}") from None
        if result.returncode != 0:
            self.stop()
            raise PeerUnavailable(
                f"start_peer.sh exited with {result.returncode}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-3000:]}"
            )
        self.started = True

    def stop(self) -> None:
        if not (self.directory / "homeserver.pid").exists():
            return
        subprocess.run(
            [str(STOP_PEER), str(self.federation_port), str(self.directory)],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        self.started = False

"""Server processes: start them detached, wait for /health, signal and stop them."""

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
from collections.abc import Sequence

from config.loader import env_override_names
from homeserver.testnet.errors import TestnetError
from homeserver.testnet.network import HOST, Network, Server

STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
KILL_TIMEOUT = 5.0  # seconds for the process to vanish after SIGKILL
LOG_TAIL_LINES = 40

# homeserver/testnet/processes.py -> the repository root, so children import our code.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _start(network: Network, servers: Sequence[Server], timeout: float) -> None:
    """Start ``servers`` detached and wait until each answers /health; stop them all if not."""
    env = _child_env(network.fast_passwords)
    started: dict[str, tuple[Server, subprocess.Popen[bytes] | None]] = {}
    try:
        for server in servers:
            with open(server.log, "ab") as log:
                log.write(f"---- testnet: starting {server.name} at {time.ctime()}\n".encode())
                log.flush()
                process = subprocess.Popen(
                    [sys.executable, "-m", "homeserver", "run", "-c", server.config],
                    cwd=os.path.dirname(server.config),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # detached: outlives this command and its terminal
                )
            server.pid = process.pid
            started[server.name] = (server, process)
        network.save()
        _wait_healthy(started, timeout)
    except BaseException:
        _terminate([server for server, _ in started.values()])
        for server, _ in started.values():
            server.pid = None
        network.save()
        raise


def _wait_healthy(
    pending: dict[str, tuple[Server, subprocess.Popen[bytes] | None]], timeout: float
) -> None:
    pending = dict(pending)
    deadline = time.monotonic() + timeout
    while pending:
        for name, (server, process) in list(pending.items()):
            code = process.poll() if process is not None else None
            if code is not None:
                raise TestnetError(
                    f"{name} exited with code {code} while starting; "
                    f"the end of {server.log}:\n{_tail(server.log)}"
                )
            if _healthy(server.client_port, 1.0):
                del pending[name]
        if not pending:
            return
        if time.monotonic() >= deadline:
            server = next(iter(pending.values()))[0]
            raise TestnetError(
                f"{', '.join(pending)} did not answer GET /health within {timeout:g} s; "
                f"the end of {server.log}:\n{_tail(server.log)}"
            )
        time.sleep(0.1)


def _terminate(servers: Sequence[Server]) -> None:
    """SIGTERM every running server, SIGKILL what is left after STOP_TIMEOUT."""
    running = [s for s in servers if s.pid is not None and _is_server_process(s.pid, s.config)]
    for server in running:
        _signal(server.pid, signal.SIGTERM)
    survivors = _wait_gone(running, STOP_TIMEOUT)
    for server in survivors:
        _signal(server.pid, signal.SIGKILL)
    stubborn = _wait_gone(survivors, KILL_TIMEOUT)
    if stubborn:
        pids = ", ".join(f"{s.name} (pid {s.pid})" for s in stubborn)
        raise TestnetError(f"could not stop {pids}")


def _wait_gone(servers: Sequence[Server], timeout: float) -> list[Server]:
    deadline = time.monotonic() + timeout
    left = list(servers)
    while left:
        left = [s for s in left if s.pid is not None and _is_server_process(s.pid, s.config)]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return left


def _signal(pid: int | None, sig: signal.Signals) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _is_server_process(pid: int, config: str) -> bool:
    """Whether ``pid`` is alive and still our server (not a reused pid, not a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child that already exited
    proc = f"/proc/{pid}"
    if os.path.isdir("/proc/self"):
        try:
            with open(f"{proc}/cmdline", "rb") as handle:
                cmdline = handle.read().split(b"\0")
            with open(f"{proc}/stat", "rb") as handle:
                state = handle.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            return False
        return state not in (b"Z", b"X") and os.fsencode(config) in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _child_env(fast_passwords: bool) -> dict[str, str]:
    """Our environment without config overrides, which would bend every server alike."""
    overrides = set(env_override_names())
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in overrides and not (name.startswith("TRICOLOR_") and "__" in name)
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPO_ROOT, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    if fast_passwords:
        env["TRICOLOR_BCRYPT_ROUNDS"] = "4"
    # A test network is driven by scripts and test suites, far faster than people type:
    # rate limits (rc_*) stay off on it.
    env["TRICOLOR_RC_ENABLED"] = "false"
    return env


def _require_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like the server (reuse_address=True): a port in TIME_WAIT is free, a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            raise TestnetError(
                f"port {port} ({what}) is in use on {HOST}; choose another --base-port"
            ) from None


def _healthy(port: int, timeout: float) -> bool:
    try:
        with _NO_PROXY.open(f"http://{HOST}:{port}/health", timeout=timeout) as response:
            return response.status == 200 and json.load(response).get("status") == "ok"
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(cannot read the log: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])

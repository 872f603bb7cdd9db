"""One RabbitMQ node per test server: its own node name, ports and data under the network dir.

Facts this relies on (../shared/design/SERVICES.md): the Debian wrappers run the server as
user ``rabbitmq`` (so its directories belong to that user and every parent must be
traversable), boot takes ~10 s, and a node is addressed by its full name. Readiness is read
from the management API (cheap) rather than by starting ``rabbitmq-diagnostics`` (an Erlang
VM per poll); a node is stopped with SIGTERM to the pid it wrote (RabbitMQ shuts down
cleanly on it) and SIGKILL after a bound.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import attrs

from homeserver.testnet.errors import TestnetError

HOST = "127.0.0.1"
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
PLUGINS = ("rabbitmq_management", "rabbitmq_shovel", "rabbitmq_shovel_management")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@attrs.define
class BrokerNode:
    node: str  # full Erlang node name, e.g. tri1a2b3c-hs1@localhost
    amqp_port: int
    dist_port: int
    management_port: int
    directory: str  # everything of this node: mnesia, logs, config, pid file

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{self.amqp_port}/%2F"  # vhost "/"; a bare "/" is ""

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@{HOST}:{self.management_port}"

    @property
    def pid_file(self) -> str:
        return os.path.join(self.directory, "node.pid")

    def public(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "amqp_port": self.amqp_port,
            "management_port": self.management_port,
            "dist_port": self.dist_port,
            "amqp_url": self.amqp_url,
            "directory": self.directory,
        }

    # -- life cycle

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update(
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS=HOST,
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=os.path.join(self.directory, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(self.directory, "log"),
            RABBITMQ_PID_FILE=self.pid_file,
            RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.directory, "enabled_plugins"),
            RABBITMQ_ENABLED_PLUGINS=",".join(PLUGINS),
            RABBITMQ_CONFIG_FILE=os.path.join(self.directory, "rabbitmq"),
            RABBITMQ_ADVANCED_CONFIG_FILE=os.path.join(self.directory, "advanced.config"),
        )
        return env

    def prepare(self) -> None:
        os.makedirs(os.path.join(self.directory, "mnesia"), exist_ok=True)
        os.makedirs(os.path.join(self.directory, "log"), exist_ok=True)
        with open(os.path.join(self.directory, "rabbitmq.conf"), "w", encoding="utf-8") as f:
            f.write(
                f"management.tcp.port = {self.management_port}\n"
                f"management.tcp.ip = {HOST}\n"
                "disk_free_limit.absolute = 50MB\n"
            )
        plugins = os.path.join(self.directory, "enabled_plugins")
        with open(plugins, "w", encoding="utf-8") as f:
            f.write(f"[{','.join(PLUGINS)}].\n")
        _give_to_rabbitmq(self.directory)

    def start(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Start the node detached and wait until its management API and shovels answer."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the node detached (several nodes boot in parallel; then ``wait_ready``)."""
        if self.running():
            return
        for port, what in (
            (self.amqp_port, "AMQP"),
            (self.management_port, "management"),
            (self.dist_port, "distribution"),
        ):
            if not _port_free(port):
                raise TestnetError(f"{what} port {port} of broker {self.node} is in use")
        self.prepare()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pid_file)
        done = subprocess.run(
            ["rabbitmq-server", "-detached"],
            env=self.env(),
            cwd="/tmp",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise TestnetError(
                f"rabbitmq-server for {self.node} failed: {done.stderr.decode(errors='replace')[-2000:]}"
            )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.api("GET", "/api/shovels/%2F") is not None and self.api(
                    "GET", "/api/overview"
                ):
                    return
            except (OSError, ValueError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        raise TestnetError(
            f"broker {self.node} did not come up within {timeout:g} s; logs in {self.directory}/log"
        )

    def pid(self) -> int | None:
        try:
            with open(self.pid_file, encoding="utf-8") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and self._alive(pid)

    def _alive(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rpartition(b")")[2].split()[0]
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except (OSError, IndexError):
            return False
        # The node name is in its environment, not its command line: a reused pid is not ours.
        return state not in (b"Z", b"X") and f"RABBITMQ_NODENAME={self.node}".encode() in environ

    def stop(self, *, kill: bool = False, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (a clean shutdown) or SIGKILL (a crash); SIGKILL after ``timeout`` anyway."""
        pid = self.pid()  # read first: the node deletes its pid file as it stops
        if pid is None or not self._alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        if self._alive(pid):
            raise TestnetError(f"could not stop broker {self.node} (pid {pid})")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- what it holds

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://{HOST}:{self.management_port}{path}",
            data=data,
            method=method,
            headers={
                "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                "Content-Type": "application/json",
            },
        )
        with _NO_PROXY.open(request, timeout=5) as response:
            raw = response.read()
        return json.loads(raw) if raw else {}

    def status(self) -> dict[str, Any]:
        """Queue depths per destination, shovel states, dead-letter counts; or why not."""
        out: dict[str, Any] = {**self.public(), "running": self.running()}
        if not out["running"]:
            return out
        try:
            queues = self.api("GET", "/api/queues/%2F?columns=name,messages")
            shovels = self.api("GET", "/api/shovels/%2F")
        except (OSError, ValueError, urllib.error.URLError) as e:
            out["error"] = f"management API: {e}"
            return out
        depth = {q["name"]: q.get("messages", 0) for q in queues}
        out["outbound_queues"] = {
            n.removeprefix("tricolor.fed.out."): d
            for n, d in depth.items()
            if n.startswith("tricolor.fed.out.")
        }
        out["inbound_queue_depth"] = sum(
            d for n, d in depth.items() if n.startswith("tricolor.fed.in.")
        )
        out["dead_letters"] = sum(d for n, d in depth.items() if n.startswith("tricolor.fed.dead."))
        out["shovels"] = {
            s["name"].removeprefix("tricolor-fed-"): s.get("state")
            for s in shovels
            if str(s.get("name", "")).startswith("tricolor-fed-")
        }
        return out


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _give_to_rabbitmq(directory: str) -> None:
    """The node runs as user rabbitmq: it owns its directory, and can reach it."""
    try:
        user = pwd.getpwnam("rabbitmq")
    except KeyError:
        raise TestnetError(
            "no user 'rabbitmq': install rabbitmq-server (apt-get install rabbitmq-server)"
        ) from None
    for root, dirs, files in os.walk(directory):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, user.pw_uid, user.pw_gid)
    path = os.path.abspath(directory)
    while path != "/":
        path = os.path.dirname(path)
        mode = os.stat(path).st_mode
        if not mode & 0o001:
            raise TestnetError(
                f"{path} is not traversable by user rabbitmq (mode {oct(mode & 0o777)}); "
                "choose a --dir under a world-traversable directory"
            )

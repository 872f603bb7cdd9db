"""``testnet``: a local network of Tricolor homeservers that federate with each other.

    python -m homeserver testnet up --servers 2 [--database sqlite|mysql] [--dir DIR]
                                    [--base-port P] [--names n1,n2,...|ip] [--fast-passwords]
    python -m homeserver testnet status --dir DIR
    python -m homeserver testnet stop NAME --dir DIR
    python -m homeserver testnet start NAME --dir DIR
    python -m homeserver testnet down --dir DIR

``up`` gives every server a directory ``DIR/<name>/`` (config, keys, certificate,
sqlite file, ``server.log``), a client port (``base + 2i``, plain HTTP) and a
federation port (``base + 2i + 1``, HTTPS with a certificate from one test CA in
``DIR/ca/`` that every member trusts), and a static map from every server name
to ``127.0.0.1:<federation port>`` so no DNS is needed. ``--names ip`` names the
servers ``127.0.0.1:<federation port>``, the IP-literal form Synapse peers can
reach without DNS. Servers run detached (they outlive this command);
``DIR/testnet.json`` remembers them for the other subcommands.

Every command prints one JSON object on stdout (and nothing else there), so
scripts and tests can read it; problems go to stderr with a non-zero exit.
Everything listens on 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import attrs

from config.errors import ConfigError
from config.generate import generate_config
from config.loader import env_override_names
from config.tls import ensure_ca
from homeserver.core.ids import is_valid_server_name

DEFAULT_DIR = "testnet"
DEFAULT_BASE_PORT = 18200
DEFAULT_MYSQL_URL = "mysql+asyncmy://root@127.0.0.1:3306/test"
STATE_FILE = "testnet.json"
HEALTH_TIMEOUT = 30.0  # seconds for a server to answer GET /health after it was started
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
KILL_TIMEOUT = 5.0  # seconds for the process to vanish after SIGKILL
LOG_TAIL_LINES = 40
HOST = "127.0.0.1"

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class TestnetError(Exception):
    """A problem the user can act on; printed as ``testnet: <message>`` with exit code 1."""

    __test__ = False  # not a pytest test class, despite the name


# ---- state ------------------------------------------------------------------------------


@attrs.define
class Server:
    name: str
    client_port: int
    federation_port: int
    config: str
    database: str  # the database URL the server uses
    log: str
    pid: int | None = None
    mysql_database: str | None = None  # created by `up`, dropped by `down`

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def federation_url(self) -> str:
        return f"https://{HOST}:{self.federation_port}"

    def public(self) -> dict[str, Any]:
        """The entry printed for this server (the database password masked)."""
        return {
            "name": self.name,
            "client_url": self.client_url,
            "federation_url": self.federation_url,
            "pid": self.pid,
            "config": self.config,
            "database": _masked(self.database),
            "log": self.log,
        }


@attrs.define
class Network:
    directory: str
    ca_file: str
    servers: list[Server]
    fast_passwords: bool = False
    mysql_url: str | None = None  # the MariaDB server the databases live on

    @property
    def state_path(self) -> str:
        return os.path.join(self.directory, STATE_FILE)

    def server(self, name: str) -> Server:
        for server in self.servers:
            if server.name == name:
                return server
        known = ", ".join(s.name for s in self.servers)
        raise TestnetError(f"no server named {name!r} in {self.directory} (servers: {known})")

    def public(self) -> dict[str, Any]:
        return {"servers": [s.public() for s in self.servers], "ca_file": self.ca_file}

    def save(self) -> None:
        data = {
            "ca_file": self.ca_file,
            "fast_passwords": self.fast_passwords,
            "mysql_url": self.mysql_url,
            "servers": [attrs.asdict(s) for s in self.servers],
        }
        tmp = f"{self.state_path}.{secrets.token_hex(4)}.tmp"
        # 0600: it may hold a MariaDB password.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, self.state_path)

    @classmethod
    def load(cls, directory: str) -> Network:
        directory = os.path.abspath(directory)
        path = os.path.join(directory, STATE_FILE)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            servers = [Server(**entry) for entry in data["servers"]]
            return cls(
                directory=directory,
                ca_file=data["ca_file"],
                servers=servers,
                fast_passwords=bool(data.get("fast_passwords")),
                mysql_url=data.get("mysql_url"),
            )
        except FileNotFoundError:
            raise TestnetError(
                f"no test network in {directory} ({STATE_FILE} is missing)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TestnetError(f"{path} is unreadable or damaged: {exc}") from None


# ---- commands ---------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> dict[str, Any]:
    directory = os.path.abspath(args.dir)
    if os.path.exists(os.path.join(directory, STATE_FILE)):
        raise TestnetError(
            f"a test network already exists in {directory}; "
            f"run `testnet down --dir {args.dir}` first"
        )
    names_arg = args.names
    count = args.servers
    if count < 1:
        raise TestnetError("--servers must be at least 1")
    base = args.base_port
    if base < 1024 or base + 2 * count - 1 > 65535:
        raise TestnetError(f"--base-port {base} leaves no room for {count} servers (2 ports each)")
    ports = [(base + 2 * i, base + 2 * i + 1) for i in range(count)]
    names = _server_names(names_arg, count, [fed for _, fed in ports])
    for name, (client, federation) in zip(names, ports, strict=True):
        _require_free(client, f"client port of {name}")
        _require_free(federation, f"federation port of {name}")

    os.makedirs(directory, exist_ok=True)
    ca_file, _ = ensure_ca(os.path.join(directory, "ca"))
    static_map = {name: f"{HOST}:{fed}" for name, (_, fed) in zip(names, ports, strict=True)}
    mysql_url = None
    if args.database == "mysql":
        mysql_url = os.environ.get("TRICOLOR_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
    servers: list[Server] = []
    for name, (client, federation) in zip(names, ports, strict=True):
        server_dir = os.path.join(directory, _UNSAFE.sub("_", name))
        mysql_database = None
        if mysql_url is not None:
            mysql_database = _mysql_database_name(name)
            database_url = _with_database(mysql_url, mysql_database)
        else:
            database_url = (
                f"sqlite+aiosqlite:///{os.path.join(server_dir, 'data', 'homeserver.db')}"
            )
        servers.append(
            Server(
                name=name,
                client_port=client,
                federation_port=federation,
                config=os.path.join(server_dir, "homeserver.yaml"),
                database=database_url,
                log=os.path.join(server_dir, "server.log"),
                mysql_database=mysql_database,
            )
        )
    if len({s.mysql_database for s in servers if s.mysql_database}) != len(
        [s for s in servers if s.mysql_database]
    ):
        raise TestnetError("two server names map to the same MariaDB database name")
    network = Network(
        directory=directory,
        ca_file=ca_file,
        servers=servers,
        fast_passwords=args.fast_passwords,
        mysql_url=mysql_url,
    )
    network.save()  # from here on, `down` can clean up whatever follows
    try:
        _create(network, static_map, args.timeout)
    except TestnetError as exc:
        raise TestnetError(
            f"{exc}\nThe network is left in {directory} for inspection; "
            f"`testnet down --dir {args.dir}` removes it."
        ) from None
    return network.public()


def _create(network: Network, static_map: dict[str, str], timeout: float) -> None:
    """Write every config, create the MariaDB databases, start the servers."""
    servers, mysql_url, ca_file = network.servers, network.mysql_url, network.ca_file
    try:
        for server in servers:
            generate_config(
                server.name,
                server.config,
                port=server.client_port,
                data_dir=os.path.join(os.path.dirname(server.config), "data"),
                database_url=server.database,
                federation_port=server.federation_port,
                ca_dir=os.path.dirname(ca_file),
                static_map=static_map,
            )
    except ConfigError as exc:
        raise TestnetError(f"cannot write a server config: {exc}") from None
    if mysql_url is not None:
        _mysql_admin(
            mysql_url,
            [
                statement
                for s in servers
                for statement in (
                    f"DROP DATABASE IF EXISTS `{s.mysql_database}`",
                    f"CREATE DATABASE `{s.mysql_database}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                )
            ],
        )
    _start(network, servers, timeout)


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    network = Network.load(args.dir)
    out = network.public()
    for entry, server in zip(out["servers"], network.servers, strict=True):
        alive = server.pid is not None and _is_server_process(server.pid, server.config)
        entry["pid"] = server.pid if alive else None
        entry["health"] = "ok" if alive and _healthy(server.client_port, 2.0) else "down"
    return out


def cmd_stop(args: argparse.Namespace) -> dict[str, Any]:
    network = Network.load(args.dir)
    server = network.server(args.name)
    _terminate([server])
    server.pid = None
    network.save()
    return {**server.public(), "health": "down"}


def cmd_start(args: argparse.Namespace) -> dict[str, Any]:
    network = Network.load(args.dir)
    server = network.server(args.name)
    if server.pid is not None and _is_server_process(server.pid, server.config):
        _wait_healthy({server.name: (server, None)}, args.timeout)
    else:
        _require_free(server.client_port, f"client port of {server.name}")
        _require_free(server.federation_port, f"federation port of {server.name}")
        _start(network, [server], args.timeout)
    return {**server.public(), "health": "ok"}


def cmd_down(args: argparse.Namespace) -> dict[str, Any]:
    network = Network.load(args.dir)
    _terminate(network.servers)
    dropped = [s.mysql_database for s in network.servers if s.mysql_database]
    if network.mysql_url is not None and dropped:
        _mysql_admin(network.mysql_url, [f"DROP DATABASE IF EXISTS `{db}`" for db in dropped])
    shutil.rmtree(network.directory)
    return {"removed": network.directory, "dropped_databases": dropped}


# ---- processes --------------------------------------------------------------------------


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
    return env


# ---- small helpers ----------------------------------------------------------------------


def _server_names(names_arg: str | None, count: int, federation_ports: list[int]) -> list[str]:
    if names_arg is None:
        return [f"hs{i + 1}.test" for i in range(count)]
    if names_arg == "ip":
        return [f"{HOST}:{port}" for port in federation_ports]
    names = [n.strip() for n in names_arg.split(",") if n.strip()]
    if len(names) != count:
        raise TestnetError(f"--names lists {len(names)} names but --servers is {count}")
    for name in names:
        if not is_valid_server_name(name):
            raise TestnetError(f"--names: {name!r} is not a valid server name")
    if len(set(names)) != len(names):
        raise TestnetError("--names lists a name twice")
    if len({_UNSAFE.sub("_", n) for n in names}) != len(names):
        raise TestnetError("--names: two names would share a directory; choose other names")
    return names


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


def _mysql_database_name(server_name: str) -> str:
    return ("tri_net_" + re.sub(r"[^a-z0-9]+", "_", server_name.lower()).strip("_"))[:64]


def _with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _mysql_admin(server_url: str, statements: list[str]) -> None:
    """Run statements on the MariaDB server (no database selected), each bounded in time."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        engine = create_async_engine(
            make_url(server_url).set(database=None),
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": 5},
        )
        try:
            async with engine.connect() as conn:
                for statement in statements:
                    await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    quiet = logging.getLogger("asyncmy")  # it logs a warning for DROP DATABASE IF EXISTS
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        asyncio.run(asyncio.wait_for(run(), timeout=30))
    except Exception as exc:
        shown = _masked(server_url)
        raise TestnetError(f"MariaDB at {shown} failed: {type(exc).__name__}: {exc}") from None
    finally:
        quiet.setLevel(level)


# ---- command line -----------------------------------------------------------------------


def _run(command: Any) -> Any:
    def func(args: argparse.Namespace) -> int:
        try:
            result = command(args)
        except TestnetError as exc:
            print(f"testnet: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(result, indent=2))
        return 0

    return func


def add_testnet_parser(subparsers: Any) -> None:
    """Register ``testnet`` and its subcommands on the CLI's subparsers (sets ``func``)."""
    p = subparsers.add_parser("testnet", help="run a local network of federating test servers")
    sub = p.add_subparsers(dest="testnet_command", required=True)

    def with_dir(q: argparse.ArgumentParser) -> argparse.ArgumentParser:
        q.add_argument(
            "--dir", default=DEFAULT_DIR, help=f"where it lives (default ./{DEFAULT_DIR})"
        )
        return q

    def with_timeout(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--timeout",
            type=float,
            default=HEALTH_TIMEOUT,
            help=f"seconds to wait for GET /health (default {HEALTH_TIMEOUT:g})",
        )

    q = with_dir(sub.add_parser("up", help="create and start a network"))
    q.add_argument("--servers", type=int, default=2, help="how many servers (default 2)")
    q.add_argument("--database", choices=("sqlite", "mysql"), default="sqlite")
    q.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help=f"server i gets client port P+2i and federation port P+2i+1 (default {DEFAULT_BASE_PORT})",
    )
    q.add_argument(
        "--names",
        help="comma-separated server names, or 'ip' for 127.0.0.1:<federation port> "
        "(default hs1.test, hs2.test, ...)",
    )
    q.add_argument(
        "--fast-passwords", action="store_true", help="bcrypt cost 4 (TRICOLOR_BCRYPT_ROUNDS=4)"
    )
    with_timeout(q)
    q.set_defaults(func=_run(cmd_up))

    q = with_dir(sub.add_parser("status", help="show the servers and whether they answer"))
    q.set_defaults(func=_run(cmd_status))

    q = with_dir(sub.add_parser("stop", help="stop one server, keeping its data"))
    q.add_argument("name")
    q.set_defaults(func=_run(cmd_stop))

    q = with_dir(sub.add_parser("start", help="start a stopped server again"))
    q.add_argument("name")
    with_timeout(q)
    q.set_defaults(func=_run(cmd_start))

    q = with_dir(sub.add_parser("down", help="stop everything and delete the network"))
    q.set_defaults(func=_run(cmd_down))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tricolor")
    add_testnet_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["testnet", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""The shape of a test network: its constants, its servers and ``DIR/testnet.json``."""

from __future__ import annotations

import json
import os
import re
import secrets
from typing import Any

import attrs

from homeserver.core.ids import is_valid_server_name
from homeserver.testnet.brokers import BrokerNode
from homeserver.testnet.databases import _masked
from homeserver.testnet.errors import TestnetError

# Under ./local/, which git ignores: a network holds private keys and a CA.
DEFAULT_DIR = "local/testnet"
DEFAULT_BASE_PORT = 18200
STATE_FILE = "testnet.json"
HEALTH_TIMEOUT = 30.0  # seconds for a server to answer GET /health after it was started
HOST = "127.0.0.1"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _broker(value: Any) -> BrokerNode | None:
    return BrokerNode(**value) if isinstance(value, dict) else value


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
    broker: BrokerNode | None = attrs.field(default=None, converter=_broker)  # --transport amqp

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
            "transport": "amqp" if self.broker is not None else "https",
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

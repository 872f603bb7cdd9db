"""The ``testnet`` subcommands; each returns the JSON object the CLI prints."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
from typing import Any

from config.errors import ConfigError
from config.generate import generate_config
from config.tls import ensure_ca
from homeserver.testnet.brokers import BOOT_TIMEOUT, BrokerNode, free_port
from homeserver.testnet.databases import (
    DEFAULT_MYSQL_URL,
    _mysql_admin,
    _mysql_database_name,
    _with_database,
)
from homeserver.testnet.destinations import destinations_status
from homeserver.testnet.errors import TestnetError
from homeserver.testnet.network import _UNSAFE, HOST, STATE_FILE, Network, Server, _server_names
from homeserver.testnet.processes import (
    _healthy,
    _is_server_process,
    _require_free,
    _start,
    _terminate,
    _wait_healthy,
)


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

    transports = _transports(getattr(args, "transport", "https"), count)
    os.makedirs(directory, exist_ok=True)
    ca_file, _ = ensure_ca(os.path.join(directory, "ca"))
    static_map = {name: f"{HOST}:{fed}" for name, (_, fed) in zip(names, ports, strict=True)}
    mysql_url = None
    if args.database == "mysql":
        mysql_url = os.environ.get("TRICOLOR_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
    servers: list[Server] = []
    tag = hashlib.sha256(directory.encode()).hexdigest()[:8]  # node names unique per network
    for i, (name, (client, federation)) in enumerate(zip(names, ports, strict=True)):
        server_dir = os.path.join(directory, _UNSAFE.sub("_", name))
        broker = None
        if transports[i] == "amqp":
            broker = BrokerNode(
                node=f"tri{tag}-{i + 1}@localhost",
                amqp_port=free_port(),
                dist_port=free_port(),
                management_port=free_port(),
                directory=os.path.join(server_dir, "rabbitmq"),
            )
        mysql_database = None
        if mysql_url is not None:
            mysql_database = _mysql_database_name(name, directory)
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
                broker=broker,
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


LOOPBACK_RANGES = ("127.0.0.0/8", "::1/128")


def _create(network: Network, static_map: dict[str, str], timeout: float) -> None:
    """Write every config, create the MariaDB databases, start the servers."""
    servers, mysql_url, ca_file = network.servers, network.mysql_url, network.ca_file
    brokers = [s.broker for s in servers if s.broker is not None]
    for broker in brokers:  # boot in parallel (~10 s each), then wait for all
        broker.launch()
    for broker in brokers:
        broker.wait_ready(BOOT_TIMEOUT)
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
                amqp=_amqp_settings(server.broker),
                # Every server of the network is on this machine: opt in to loopback, which
                # ip_range_blacklist denies by default (SSRF protection).
                ip_range_whitelist=LOOPBACK_RANGES,
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


def _transports(arg: str, count: int) -> list[str]:
    values = [v.strip() for v in arg.split(",")]
    if len(values) == 1:
        values = values * count
    if len(values) != count or any(v not in ("https", "amqp") for v in values):
        raise TestnetError(
            f"--transport {arg!r}: give https, amqp, or one of them per server ({count} values)"
        )
    return values


def _amqp_settings(broker: BrokerNode | None) -> dict[str, str] | None:
    if broker is None:
        return None
    # Every node runs on this machine: the URI our shovels use is the one peers use too.
    return {
        "url": broker.amqp_url,
        "management_url": broker.management_url,
        "advertise_url": broker.amqp_url,
    }


def _broker_of(network: Network, name: str) -> BrokerNode:
    broker = network.server(name).broker
    if broker is None:
        raise TestnetError(f"{name} runs no broker (its transport is https)")
    return broker


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    network = Network.load(args.dir)
    out = network.public()
    for entry, server in zip(out["servers"], network.servers, strict=True):
        alive = server.pid is not None and _is_server_process(server.pid, server.config)
        entry["pid"] = server.pid if alive else None
        entry["health"] = "ok" if alive and _healthy(server.client_port, 2.0) else "down"
        if server.broker is not None:
            entry["broker"] = server.broker.status()
        try:
            entry["federation"] = destinations_status(server.database)
        except Exception as e:  # no database yet, or MariaDB away: say so, show the rest
            entry["federation"] = {"error": f"{type(e).__name__}: {e}"[:200]}
    return out


def cmd_stop(args: argparse.Namespace) -> dict[str, Any]:
    network = Network.load(args.dir)
    if getattr(args, "broker", False):
        broker = _broker_of(network, args.name)
        broker.stop(kill=getattr(args, "kill", False))
        return {"name": args.name, "broker": broker.status()}
    server = network.server(args.name)
    _terminate([server])
    server.pid = None
    network.save()
    return {**server.public(), "health": "down"}


def cmd_start(args: argparse.Namespace) -> dict[str, Any]:
    network = Network.load(args.dir)
    if getattr(args, "broker", False):
        broker = _broker_of(network, args.name)
        broker.start()
        return {"name": args.name, "broker": broker.status()}
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
    for server in network.servers:
        if server.broker is not None:
            server.broker.stop()
    dropped = [s.mysql_database for s in network.servers if s.mysql_database]
    if network.mysql_url is not None and dropped:
        _mysql_admin(network.mysql_url, [f"DROP DATABASE IF EXISTS `{db}`" for db in dropped])
    shutil.rmtree(network.directory)
    return {
        "removed": network.directory,
        "dropped_databases": dropped,
        "stopped_brokers": [s.broker.node for s in network.servers if s.broker is not None],
    }

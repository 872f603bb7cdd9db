"""The ``testnet`` command line: its parser, and printing each result as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from homeserver.testnet.commands import cmd_down, cmd_start, cmd_status, cmd_stop, cmd_up
from homeserver.testnet.errors import TestnetError
from homeserver.testnet.network import DEFAULT_BASE_PORT, DEFAULT_DIR, HEALTH_TIMEOUT


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
    q.add_argument(
        "--transport",
        default="https",
        help="https, amqp (every server runs its own RabbitMQ node and federates through "
        "shovels), or one value per server, comma-separated, for a mixed network",
    )
    with_timeout(q)
    q.set_defaults(func=_run(cmd_up))

    q = with_dir(sub.add_parser("status", help="show the servers and whether they answer"))
    q.set_defaults(func=_run(cmd_status))

    q = with_dir(sub.add_parser("stop", help="stop one server, keeping its data"))
    q.add_argument("name")
    q.add_argument("--broker", action="store_true", help="stop its RabbitMQ node instead")
    q.add_argument("--kill", action="store_true", help="with --broker: SIGKILL, a crash")
    q.set_defaults(func=_run(cmd_stop))

    q = with_dir(sub.add_parser("start", help="start a stopped server again"))
    q.add_argument("name")
    q.add_argument("--broker", action="store_true", help="start its RabbitMQ node instead")
    with_timeout(q)
    q.set_defaults(func=_run(cmd_start))

    q = with_dir(sub.add_parser("down", help="stop everything and delete the network"))
    q.set_defaults(func=_run(cmd_down))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tricolor")
    add_testnet_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["testnet", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))

"""Command line: run | generate-config | migrate | register-user | rotate-key | testnet.

Operator mistakes (a config key, an unreachable database, an unreadable key file)
end in one line naming the setting and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from config.errors import ConfigError
from config.loader import load_config
from config.schema import HomeserverConfig
from homeserver.http.server import MatrixAppRunner

T = TypeVar("T")


def _load(path: str) -> HomeserverConfig:
    try:
        return load_config(path)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _load_server(path: str) -> HomeserverConfig:
    """The config, with its key files checked (and created) before anything starts."""
    from config.keys import ensure_token_secret, load_signing_key

    cfg = _load(path)
    checks: list[tuple[str, Callable[[str], object], str]] = [
        ("signing_key_path", load_signing_key, cfg.signing_key_path),
        ("token_secret_path", ensure_token_secret, cfg.token_secret_path),
    ]
    for key, check, file in checks:
        try:
            check(file)
        except ConfigError as e:
            print(f"config error: {cfg.config_path}: {key}: {file}: {e.problem}", file=sys.stderr)
            raise SystemExit(2) from None
    return cfg


def _database_setting(cfg: HomeserverConfig) -> str:
    """Where the database URL came from, as the operator wrote it."""
    for name in ("TRICOLOR_DATABASE_URL", "TRICOLOR_DATABASE__URL"):  # the alias wins
        if name in os.environ:
            return f"${name}"
    return f"{cfg.config_path}: database.url"


def _run_on_database(cfg: HomeserverConfig, main: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(main())``; a database that cannot be opened exits 2 with one line."""
    from storage.engine import DatabaseUnavailable

    try:
        return asyncio.run(main())
    except DatabaseUnavailable as e:
        print(f"database error: {_database_setting(cfg)}: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load_server(args.config)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from config.tls import listener_ssl_context
    from homeserver.app import create_app

    try:  # before anything starts: a missing certificate is a config error, not a traceback
        ssl_contexts = [listener_ssl_context(listener) for listener in cfg.listeners]
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2

    log = logging.getLogger("tricolor")

    async def serve() -> None:
        app = await create_app(cfg)
        runner = MatrixAppRunner(app, access_log=None)
        await runner.setup()
        try:
            for listener, ssl_context in zip(cfg.listeners, ssl_contexts, strict=True):
                site = web.TCPSite(
                    runner, listener.host, listener.port, reuse_address=True, ssl_context=ssl_context,
                )
                await site.start()
                log.info(
                    "%s listening on %s://%s:%d (%s)", cfg.server_name,
                    "https" if listener.tls else "http", listener.host, listener.port,
                    ", ".join(listener.resources),
                )
            # SIGTERM/SIGINT stop the server cleanly: long-polls answer at once, in-flight
            # requests finish, queued writes are flushed. A second signal exits at once.
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()

            def on_signal(sig: signal.Signals) -> None:
                if stop.is_set():
                    log.warning("%s again: exiting without waiting", sig.name)
                    os._exit(128 + sig)
                log.info("%s received: stopping (send it again to exit at once)", sig.name)
                stop.set()

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, sig)
            await stop.wait()
        finally:
            await runner.cleanup()
        log.info("stopped")

    try:
        _run_on_database(cfg, serve)
    except KeyboardInterrupt:
        pass
    except ConfigError as e:  # found while composing (e.g. a transport not available yet)
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a port in use, an unreadable data directory: say so plainly
        print(f"cannot start: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_generate_config(args: argparse.Namespace) -> int:
    from config.generate import generate_config

    try:
        static_map: dict[str, str] = {}
        for entry in args.static_map:
            name, eq, target = entry.partition("=")
            if not eq or not name or not target:
                print(f"--static-map expects NAME=HOST:PORT, got {entry!r}", file=sys.stderr)
                return 2
            static_map[name] = target
        path = generate_config(
            args.server_name, args.output, port=args.port, data_dir=args.data_dir,
            database_url=args.database_url, force=args.force,
            federation_port=args.federation_port, tls=args.tls, ca_dir=args.ca_dir,
            static_map=static_map, ip_range_whitelist=args.ip_range_whitelist,
        )
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    from storage.engine import create_engine
    from storage.migrate import migrate

    async def run() -> None:
        engine = create_engine(cfg.database.url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    _run_on_database(cfg, run)
    print("database is up to date")
    return 0


def cmd_register_user(args: argparse.Namespace) -> int:
    cfg = _load_server(args.config)
    from homeserver.app import build_services
    from homeserver.core.errors import MatrixError

    async def run() -> int:
        runtime = await build_services(cfg)
        try:
            user_id = await runtime.services.accounts.create_user(
                args.user, args.password, is_admin=args.admin,
            )
        except MatrixError as e:
            print(f"{e.errcode}: {e.error}", file=sys.stderr)
            return 1
        finally:
            await runtime.close()
        print(user_id)
        return 0

    return _run_on_database(cfg, run)


def cmd_rotate_key(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    from config.key_rotation import rotate_signing_key

    old, new = rotate_signing_key(cfg.signing_key_path)
    print(f"retired {old}; now signing with {new} (restart the server to use it)")
    return 0


def cmd_ai_assistant(args: argparse.Namespace) -> int:
    """The AI assistant application service in its own process."""
    from ai_assistant.app import run
    from ai_assistant.config import load_assistant_config

    try:
        cfg = load_assistant_config(args.config)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(cfg)
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"cannot start: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tricolor", description="Tricolor Matrix homeserver")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="start the homeserver")
    p.add_argument("-c", "--config", default="homeserver.yaml")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("generate-config", help="write a config and keys for a new server")
    p.add_argument("--server-name", required=True)
    p.add_argument("--port", type=int, default=8008)
    p.add_argument("--data-dir")
    p.add_argument("--database-url")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--force", action="store_true")
    p.add_argument("--federation-port", type=int,
                   help="serve federation over TLS on this port; --port then serves only the client API")
    p.add_argument("--tls", action="store_true",
                   help="serve TLS on the single listener (implied by --federation-port)")
    p.add_argument("--ca-dir", help="issue the TLS certificate from the CA here (created if absent)")
    p.add_argument("--static-map", action="append", default=[], metavar="NAME=HOST:PORT",
                   help="reach server NAME at HOST:PORT without discovery (repeatable)")
    p.add_argument("--ip-range-whitelist", action="append", default=[], metavar="CIDR",
                   help="allow outbound requests to this range despite ip_range_blacklist, e.g. "
                        "127.0.0.0/8 for a test network on one machine (repeatable)")
    p.set_defaults(func=cmd_generate_config)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("-c", "--config", default="homeserver.yaml")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("register-user", help="create a user")
    p.add_argument("-c", "--config", default="homeserver.yaml")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--admin", action="store_true")
    p.set_defaults(func=cmd_register_user)

    from homeserver.testnet import add_testnet_parser

    add_testnet_parser(sub)

    p = sub.add_parser("rotate-key", help="retire the signing key and create a new one")
    p.add_argument("-c", "--config", default="homeserver.yaml")
    p.set_defaults(func=cmd_rotate_key)

    p = sub.add_parser("ai-assistant", help="run the AI assistant application service")
    p.add_argument("-c", "--config", default="ai-assistant.yaml")
    p.set_defaults(func=cmd_ai_assistant)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

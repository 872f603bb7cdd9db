"""Command line: run | generate-config | migrate | register-user | rotate-key | backup | restore
| testnet.

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
from typing import TYPE_CHECKING, TypeVar

import attrs
from aiohttp import web

from config.errors import ConfigError
from config.loader import load_config
from config.schema import HomeserverConfig
from homeserver.http.server import MatrixAppRunner

if TYPE_CHECKING:
    from storage.backup import ServerFiles

T = TypeVar("T")

# Seconds in-flight requests get to finish after a stop signal (aiohttp's default is 60 s).
# aiohttp waits this long twice for a request that does not finish (once for it to end,
# then again, without cancelling its task, after cancelling its body), so a stop takes at
# most ~2x this plus the final flush: inside the ~10 s that service managers and
# `testnet stop` allow before SIGKILL. A request stuck on a silent peer must not turn a
# clean stop (persister and federation queues flushed) into a kill.
SHUTDOWN_GRACE = 3.0


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
    if args.worker_name is not None:
        cfg = attrs.evolve(cfg, workers=attrs.evolve(cfg.workers, name=args.worker_name))
    worker = args.workers > 1 or cfg.workers.name is not None
    if worker and not cfg.redis.url:
        print(f"config error: {cfg.config_path}: redis.url: workers share positions through Redis; "
              "set redis.url (or TRICOLOR_REDIS_URL)", file=sys.stderr)
        return 2
    if args.workers > 1:
        return _supervise(args, cfg)
    from homeserver.logs import configure as configure_logging

    configure_logging(cfg.log_level, cfg.log_format)
    from client_api.web_client import create_web_client_app, web_client_site
    from config.tls import listener_ssl_context
    from homeserver.app import create_app
    from homeserver.http import observability

    try:  # before anything starts: a missing certificate is a config error, not a traceback
        ssl_contexts = [listener_ssl_context(listener) for listener in cfg.listeners]
        site_of_client = web_client_site(cfg) if cfg.web_client.port is not None else None
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2

    log = logging.getLogger("tricolor")

    async def serve() -> None:
        app = await create_app(cfg)
        runner = MatrixAppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE)
        await runner.setup()
        # A `metrics` listener (its only resource) serves /metrics from an app of its own.
        metrics_runner = web.AppRunner(
            observability.create_metrics_app(app[observability.METRICS], app[observability.STATUS]),
            access_log=None,
        )
        await metrics_runner.setup()
        web_runner: web.AppRunner | None = None
        try:
            for listener, ssl_context in zip(cfg.listeners, ssl_contexts, strict=True):
                # Workers on one host share each listener's port (the kernel spreads connections).
                site = web.TCPSite(
                    metrics_runner if "metrics" in listener.resources else runner,
                    listener.host, listener.port, reuse_address=True, ssl_context=ssl_context,
                    reuse_port=worker or None,
                )
                await site.start()
                log.info(
                    "%s listening on %s://%s:%d (%s)", cfg.server_name,
                    "https" if listener.tls else "http", listener.host, listener.port,
                    ", ".join(listener.resources),
                )
            if site_of_client is not None:  # the browser client, on its own origin (issue 16)
                web_runner = web.AppRunner(create_web_client_app(site_of_client), access_log=None)
                await web_runner.setup()
                host, port = cfg.web_client.host, cfg.web_client.port
                await web.TCPSite(web_runner, host, port, reuse_address=True, reuse_port=worker or None).start()
                url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
                log.info("%s web client at %s", cfg.server_name, url)
                print(f"Tricolor web client: {url}", file=sys.stderr, flush=True)
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
            await metrics_runner.cleanup()
            if web_runner is not None:
                await web_runner.cleanup()
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


def _supervise(args: argparse.Namespace, cfg: HomeserverConfig) -> int:
    """`run --workers N`: migrate once, then N worker processes sharing the listeners'
    ports, the database and Redis; a worker that dies is started again after a second
    (meanwhile its rooms move to the others once its lease lapses). SIGTERM/SIGINT stop
    them all the usual way."""
    import subprocess
    import time

    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("tricolor.workers")
    base = [sys.executable, "-m", "homeserver"]
    if subprocess.run([*base, "migrate", "-c", args.config]).returncode != 0:
        return 1
    prefix = cfg.workers.name or "worker"
    names = [f"{prefix}-{i + 1}" for i in range(args.workers)]

    def start(name: str) -> subprocess.Popen[bytes]:
        # A session of its own: a terminal's Ctrl-C reaches only us, and we pass it on once.
        return subprocess.Popen([*base, "run", "-c", args.config, "--worker-name", name], start_new_session=True)

    procs = {name: start(name) for name in names}
    stopping = False

    def on_signal(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("started %d workers: %s", len(names), ", ".join(names))
    while True:
        time.sleep(0.2)
        for name, proc in procs.items():
            code = proc.poll()
            if code is not None and not stopping:
                log.warning("worker %s exited with %s; starting it again", name, code)
                time.sleep(1)
                procs[name] = start(name)
        if stopping and all(p.poll() is not None for p in procs.values()):
            return max((p.returncode or 0) for p in procs.values())


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


def _server_files(cfg: HomeserverConfig) -> ServerFiles:
    from pathlib import Path

    from storage.backup import ServerFiles

    return ServerFiles(
        server_name=cfg.server_name, database_url=cfg.database.url,
        media_store_path=Path(cfg.media_store_path), signing_key_path=Path(cfg.signing_key_path),
        token_secret_path=Path(cfg.token_secret_path),
    )


def cmd_backup(args: argparse.Namespace) -> int:
    """An online, consistent copy of the database, media store and keys (storage/backup.py)."""
    from pathlib import Path

    from storage.backup import BackupError, backup

    cfg = _load(args.config)
    try:
        report = backup(_server_files(cfg), Path(args.output))
    except (BackupError, OSError) as e:
        print(f"backup failed: {e}", file=sys.stderr)
        return 1
    print(f"backed up {cfg.server_name}: {report.database} database, {report.media_files} media files -> {report.path}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Bring a backup back into the (stopped) server the config describes."""
    from pathlib import Path

    from storage.backup import BackupError, restore

    cfg = _load(args.config)
    try:
        report = restore(_server_files(cfg), Path(args.backup), force=args.force)
    except (BackupError, OSError) as e:
        print(f"restore failed: {e}", file=sys.stderr)
        return 1
    print(f"restored {cfg.server_name}: {report.database} database, {report.media_files} media files from {report.path}")
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
    p.add_argument("--workers", type=int, default=1, help="worker processes to start (needs redis.url)")
    p.add_argument("--worker-name", help="this process's name among the workers (needs redis.url)")
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

    p = sub.add_parser("backup", help="copy the database, media and keys of a running server")
    p.add_argument("-c", "--config", default="homeserver.yaml")
    p.add_argument("output", help="a new directory for the backup")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="restore a backup into a stopped server")
    p.add_argument("-c", "--config", default="homeserver.yaml")
    p.add_argument("backup", help="a directory made by `tricolor backup`")
    p.add_argument("--force", action="store_true",
                   help="replace an existing database and differing key files")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("ai-assistant", help="run the AI assistant application service")
    p.add_argument("-c", "--config", default="ai-assistant.yaml")
    p.set_defaults(func=cmd_ai_assistant)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""Command line: run | generate-config | migrate | register-user."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web

from config.errors import ConfigError
from config.loader import load_config
from config.schema import HomeserverConfig


def _load(path: str) -> HomeserverConfig:
    try:
        return load_config(path)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from homeserver.app import create_app

    async def serve() -> None:
        app = await create_app(cfg)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for listener in cfg.listeners:
            site = web.TCPSite(runner, listener.host, listener.port, reuse_address=True)
            await site.start()
            logging.getLogger("tricolor").info(
                "%s listening on http://%s:%d", cfg.server_name, listener.host, listener.port,
            )
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_generate_config(args: argparse.Namespace) -> int:
    from config.generate import generate_config

    try:
        path = generate_config(
            args.server_name, args.output, port=args.port, data_dir=args.data_dir,
            database_url=args.database_url, force=args.force,
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
        await migrate(engine)
        await engine.dispose()

    asyncio.run(run())
    print("database is up to date")
    return 0


def cmd_register_user(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    from homeserver.app import build_services
    from homeserver.core.errors import MatrixError

    async def run() -> int:
        services, persister, engine = await build_services(cfg)
        try:
            user_id = await services.accounts.create_user(args.user, args.password, is_admin=args.admin)
        except MatrixError as e:
            print(f"{e.errcode}: {e.error}", file=sys.stderr)
            return 1
        finally:
            await persister.stop()
            await engine.dispose()
        print(user_id)
        return 0

    return asyncio.run(run())


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

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

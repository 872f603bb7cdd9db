"""MariaDB: one database per server, created by ``up`` and dropped by ``down``."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re

from homeserver.testnet.errors import TestnetError

DEFAULT_MYSQL_URL = "mysql+asyncmy://root@127.0.0.1:3306/test"


def _mysql_database_name(server_name: str, directory: str) -> str:
    """`tri_net_<server>_<network>`: the network's directory is part of the name, so two
    networks (two test runs) on one MariaDB never drop each other's databases."""
    network = hashlib.sha256(os.path.abspath(directory).encode()).hexdigest()[:8]
    server = re.sub(r"[^a-z0-9]+", "_", server_name.lower()).strip("_")
    return f"tri_net_{server[:46]}_{network}"


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

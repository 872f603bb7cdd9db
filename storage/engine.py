"""Database engines: SQLite (the embedded default) and MariaDB/MySQL (asyncmy)."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


class DatabaseUnavailable(Exception):
    """The configured database cannot be opened. ``str()`` is one line for the operator:
    the target (host:port/db or the file, never the password) and the reason."""


# MySQL client error codes (https://mariadb.com/kb/en/mariadb-error-code-reference/)
# that an operator fixes in the URL or the server, put in plain words.
_MYSQL_HINTS = {
    1044: "that user may not use this database",
    1045: "wrong user name or password",
    1049: "no such database; create it first",
    2003: "nothing answers at that address and port",
    2005: "unknown host",
}


def describe_target(url: str | URL) -> str:
    """Where ``url`` points, without credentials: ``host:port/db``, or the sqlite file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return f"{parsed.host or 'localhost'}:{parsed.port or 3306}/{parsed.database or ''}"


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if len(args) == 2 and isinstance(args[0], int):  # MySQL drivers: (code, message)
        hint = _MYSQL_HINTS.get(args[0])
        return f"{hint} ({args[1]})" if hint else str(args[1])
    if isinstance(orig, OSError) and orig.strerror:
        return orig.strerror
    return str(orig) or type(orig).__name__


async def check_connection(engine: AsyncEngine) -> None:
    """Open one connection, so a wrong URL fails here with a sentence, not deep in a query."""
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except (sa.exc.DBAPIError, OSError) as exc:
        raise DatabaseUnavailable(f"cannot open {describe_target(engine.url)}: {_reason(exc)}") from None


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailable(f"cannot open {parsed.database}: {_reason(exc)}") from None
        engine = create_async_engine(url, echo=echo)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run while the single writer commits. FULL syncs the
            # WAL on every commit, so an acknowledged event survives a power cut,
            # not just a process crash (~0.4 ms a commit; commits are batched).
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

        return engine
    if parsed.get_backend_name() == "mysql":
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        parsed = parsed.set(query=query)
        return create_async_engine(
            parsed, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600,
            pool_pre_ping=True,
        )
    # The config loader admits only the two schemes above; this guards other callers.
    raise DatabaseUnavailable(f"unsupported database {parsed.drivername!r} in {describe_target(parsed)}")

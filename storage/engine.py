"""Database engines: SQLite (the embedded default) and MariaDB/MySQL (asyncmy)."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from homeserver.core.errors import StorageFull, StorageUnavailable

log = logging.getLogger(__name__)


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
    except StorageUnavailable as exc:  # the outage hook's translation: its detail names the target
        target = describe_target(engine.url)
        raise DatabaseUnavailable(f"cannot open {target}: {exc.detail.removeprefix(target + ': ')}") from None


# MySQL client/server codes meaning "the connection is gone or cannot be made": 2002/2003
# cannot connect, 2006 server has gone away, 2013 lost connection, 1053 server shutdown,
# 1927 connection killed. Disk full: 1021 (disk full), 1114 (table is full), 3 (write error).
_MYSQL_GONE = {1053, 1927, 2002, 2003, 2006, 2013, 2055}
_MYSQL_FULL = {3, 1021, 1114}


def _classify(exc: BaseException | None) -> str | None:
    """"gone", "full" or None for an error the database layer raised."""
    if exc is None:
        return None
    if isinstance(exc, sqlite3.OperationalError) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return "full"
    if isinstance(exc, sqlite3.Error) and "disk is full" in str(exc):
        return "full"
    if isinstance(exc, OSError):
        return "full" if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else "gone"
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        if args[0] in _MYSQL_GONE:
            return "gone"
        if args[0] in _MYSQL_FULL:
            return "full"
    return None


def _translate_errors(engine: AsyncEngine) -> None:
    """Database outages and a full disk become Matrix errors at the one place every query
    passes, so no store or handler needs to know: 503 (retry) or 507 (out of space)
    instead of an unhandled 500. The transaction was rolled back; nothing was written."""

    @sa.event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: Any) -> None:
        original = context.original_exception
        # A cancelled task (a stop, a client gone) must stay cancelled; a failed pre-ping is
        # SQLAlchemy's cue to reconnect in silence, not an error for the request.
        if not isinstance(original, Exception) or context.is_pre_ping:
            return
        kind = "gone" if context.is_disconnect else _classify(original)
        if kind is None:
            return
        detail = f"{describe_target(engine.url)}: {_reason(context.original_exception)}"
        # Logged where it is answered (a request: the error middleware; a command: its one
        # line), not here, so a CLI command that cannot reach its database prints one line.
        raise StorageUnavailable(detail) if kind == "gone" else StorageFull(detail)


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

        _translate_errors(engine)
        return engine
    if parsed.get_backend_name() == "mysql":
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        parsed = parsed.set(query=query)
        engine = create_async_engine(
            parsed, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600,
            pool_pre_ping=True,
            # A database that is down answers "refused" at once; one that hangs (a stopped
            # host) must not hold a request past a bounded time either.
            connect_args={"connect_timeout": 5},
        )
        _translate_errors(engine)
        return engine
    # The config loader admits only the two schemes above; this guards other callers.
    raise DatabaseUnavailable(f"unsupported database {parsed.drivername!r} in {describe_target(parsed)}")

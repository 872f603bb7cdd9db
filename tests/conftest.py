"""Fixtures shared by every test package.

``db_url``     a fresh database: SQLite (a file under tmp_path) and MariaDB (a new
               ``tri_<hex>`` database on ``$TRICOLOR_TEST_MYSQL_URL``, dropped afterwards).
               Tests that use it (directly or through ``hs``) run once per database.
``hs_config``  a HomeserverConfig on that database with fast bcrypt and tmp_path keys.
``hs``         a ``tests.helpers.Matrix`` talking to a fresh in-process server.

Speed: the real migrations run once per session and backend, into a template; each
test's database is a copy of it (the SQLite file, or MariaDB's ``SHOW CREATE TABLE``
statements), and ``create_app`` then finds it up to date. ``TRICOLOR_TEST_MIGRATE_EACH=1``
migrates every test's empty database instead. The integration tests always start
their server processes on empty databases.

MariaDB missing: those cases are skipped, unless ``TRICOLOR_REQUIRE_MYSQL=1`` (CI),
which turns the skip into a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from config.schema import DatabaseConfig, HomeserverConfig
from storage.engine import create_engine
from storage.migrate import migrate
from tests.helpers import Matrix

SERVER_NAME = "hs.test"
MYSQL_DEFAULT_URL = "mysql+asyncmy://root@127.0.0.1:3306/test"
MIGRATE_EACH = os.environ.get("TRICOLOR_TEST_MIGRATE_EACH") == "1"
# Test servers (in process and the processes tests start) are not rate-limited: suites
# register and send far faster than a person. The rate-limit tests turn limits on.
os.environ.setdefault("TRICOLOR_RC_ENABLED", "false")

_mysql_problem: list[str] = []  # why MariaDB is unusable, remembered for the session
_templates: dict[str, Any] = {}  # "sqlite": migrated file; "mysql": [(sql, rows)]


def _mysql_server_url() -> URL:
    return make_url(os.environ.get("TRICOLOR_TEST_MYSQL_URL", MYSQL_DEFAULT_URL))


async def _mysql_run(statements: list[tuple[str, list[tuple[Any, ...]]]], database: str | None = None) -> None:
    """Run statements (with executemany rows, or none) on the test MariaDB."""
    engine = create_async_engine(
        _mysql_server_url().set(database=database), isolation_level="AUTOCOMMIT",
        poolclass=NullPool, connect_args={"connect_timeout": 3},
    )
    try:
        async with engine.connect() as conn:
            for sql, rows in statements:
                await conn.exec_driver_sql(sql, rows or None)
    finally:
        await engine.dispose()


def _mysql_unavailable(reason: str) -> None:
    message = (
        f"MariaDB at {_mysql_server_url().render_as_string(hide_password=True)} is not usable: "
        f"{reason} (set TRICOLOR_TEST_MYSQL_URL, or unset TRICOLOR_REQUIRE_MYSQL to skip)"
    )
    if os.environ.get("TRICOLOR_REQUIRE_MYSQL") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


async def create_mysql_database(migrated: bool = False) -> str:
    """A new ``tri_<hex>`` database on the test MariaDB (empty, or with the migrated
    schema); returns its URL. Skips (or fails, with TRICOLOR_REQUIRE_MYSQL=1) when
    MariaDB is unusable."""
    if _mysql_problem:
        _mysql_unavailable(_mysql_problem[0])
    name = "tri_" + secrets.token_hex(6)
    try:
        await _mysql_run([(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", [])])
    except Exception as exc:
        _mysql_problem.append(f"{type(exc).__name__}: {exc}")
        _mysql_unavailable(_mysql_problem[0])
    url = _mysql_server_url().set(database=name).render_as_string(hide_password=False)
    if migrated:
        try:
            await _mysql_run(await _mysql_schema(), database=name)
        except BaseException:
            await drop_mysql_database(url)
            raise
    return url


async def drop_mysql_database(url: str) -> None:
    await _mysql_run([(f"DROP DATABASE IF EXISTS `{make_url(url).database}`", [])])


async def _mysql_schema() -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements that rebuild a migrated database: migrate a scratch database for
    real (once per session), then read back its tables and rows."""
    if "mysql" not in _templates:
        url = await create_mysql_database()
        engine = create_engine(url)
        try:
            await migrate(engine)
            statements: list[tuple[str, list[tuple[Any, ...]]]] = [("SET foreign_key_checks = 0", [])]
            async with engine.connect() as conn:
                tables = [r[0] for r in await conn.exec_driver_sql("SHOW TABLES")]
                for table in tables:
                    statements.append(((await conn.exec_driver_sql(f"SHOW CREATE TABLE `{table}`")).one()[1], []))
                for table in tables:
                    rows = [tuple(r) for r in await conn.exec_driver_sql(f"SELECT * FROM `{table}`")]
                    if rows:
                        marks = ", ".join(["%s"] * len(rows[0]))
                        statements.append((f"INSERT INTO `{table}` VALUES ({marks})", rows))
        finally:
            await engine.dispose()
            await drop_mysql_database(url)
        _templates["mysql"] = statements
    return _templates["mysql"]


async def _sqlite_template(directory: Path) -> Path:
    """A migrated SQLite file (made once per session by running the migrations)."""
    if "sqlite" not in _templates:
        path = directory / "template.db"
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await migrate(engine)
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            await engine.dispose()
        _templates["sqlite"] = path
    return _templates["sqlite"]


@pytest.fixture(params=["sqlite", "mysql"], ids=["sqlite", "mysql"])
async def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "homeserver.db"
        if not MIGRATE_EACH:
            shutil.copyfile(await _sqlite_template(tmp_path_factory.getbasetemp()), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url = await create_mysql_database(migrated=not MIGRATE_EACH)
    try:
        yield url
    finally:
        await drop_mysql_database(url)


@pytest.fixture
def hs_config(tmp_path: Path, db_url: str) -> HomeserverConfig:
    return HomeserverConfig(
        server_name=SERVER_NAME,
        database=DatabaseConfig(url=db_url, pool_size=5),
        signing_key_path=str(tmp_path / "keys" / "signing.key"),
        token_secret_path=str(tmp_path / "keys" / "token.secret"),
        media_store_path=str(tmp_path / "media"),
        bcrypt_rounds=4,
        rc_enabled=False,
    )


@pytest.fixture
def start_hs(
    db_url: str, aiohttp_client: Callable[..., Awaitable[TestClient]],
) -> Callable[[HomeserverConfig], Awaitable[Matrix]]:
    """Start an in-process server on a config (also a restart on the same database).
    ``await hs.client.close()`` stops it; anything still running stops at teardown,
    before the database is dropped (hence the dependency on ``db_url``)."""
    from homeserver.app import create_app

    async def start(cfg: HomeserverConfig) -> Matrix:
        client = await aiohttp_client(await create_app(cfg))
        return Matrix(client, cfg.server_name)

    return start


@pytest.fixture
async def hs(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> Matrix:
    """A fresh homeserver (in process, on a test client), once per database."""
    return await start_hs(hs_config)


@pytest.fixture
def xfail_on_mysql(request: pytest.FixtureRequest, db_url: str) -> Callable[[str], None]:
    """``xfail_on_mysql("why")``: a known MariaDB-only server bug (strict: a fix is noticed)."""

    def mark(reason: str) -> None:
        if make_url(db_url).get_backend_name() == "mysql":
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))

    return mark

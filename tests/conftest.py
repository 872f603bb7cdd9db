"""Fixtures shared by every test package.

``db_url``     a fresh, empty database: SQLite (a file under tmp_path) and MariaDB (a new
               ``tri_<hex>`` database on ``$TRICOLOR_TEST_MYSQL_URL``, dropped afterwards).
               Tests that use it (directly or through ``hs``) run once per database.
``hs_config``  a HomeserverConfig on that database with fast bcrypt and tmp_path keys.
``hs``         a ``tests.helpers.Matrix`` talking to a fresh in-process server.

MariaDB missing: those cases are skipped, unless ``TRICOLOR_REQUIRE_MYSQL=1`` (CI),
which turns the skip into a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from config.schema import DatabaseConfig, HomeserverConfig
from tests.helpers import Matrix

SERVER_NAME = "hs.test"
MYSQL_DEFAULT_URL = "mysql+asyncmy://root@127.0.0.1:3306/test"

_mysql_problem: list[str] = []  # why MariaDB is unusable, remembered for the session


def _mysql_server_url() -> URL:
    return make_url(os.environ.get("TRICOLOR_TEST_MYSQL_URL", MYSQL_DEFAULT_URL))


async def _mysql_admin(sql: str) -> None:
    """Run one statement on the MariaDB server (no database selected)."""
    engine = create_async_engine(
        _mysql_server_url().set(database=None), isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(sql))
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


async def create_mysql_database() -> str:
    """A new, empty ``tri_<hex>`` database on the test MariaDB; returns its URL.
    Skips (or fails, with TRICOLOR_REQUIRE_MYSQL=1) when MariaDB is unusable."""
    if _mysql_problem:
        _mysql_unavailable(_mysql_problem[0])
    name = "tri_" + secrets.token_hex(6)
    try:
        await _mysql_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    except Exception as exc:
        _mysql_problem.append(f"{type(exc).__name__}: {exc}")
        _mysql_unavailable(_mysql_problem[0])
    return _mysql_server_url().set(database=name).render_as_string(hide_password=False)


async def drop_mysql_database(url: str) -> None:
    await _mysql_admin(f"DROP DATABASE IF EXISTS `{make_url(url).database}`")


@pytest.fixture(params=["sqlite", "mysql"], ids=["sqlite", "mysql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'homeserver.db'}"
        return
    url = await create_mysql_database()
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

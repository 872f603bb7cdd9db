"""Apply alembic migrations to an async engine (SQLite or MariaDB).

Alembic (and Mako) cost ~15 MB of memory once imported, so a database that is
already at the newest revision is recognised with one query and alembic is
never loaded.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import check_connection

MIGRATIONS = Path(__file__).parent / "migrations"
ROOT = Path(__file__).resolve().parents[1]
_REVISION = re.compile(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*=\s*['\"]([^'\"]+)['\"]", re.M)


def head_revision() -> str:
    """The newest revision: the one no other migration names as its down_revision."""
    revisions, downs = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        if m := _REVISION.search(text):
            revisions.add(m.group(1))
        if m := _DOWN.search(text):
            downs.add(m.group(1))
    heads = revisions - downs
    if len(heads) != 1:
        raise RuntimeError(f"expected one head migration, found {sorted(heads)}")
    return heads.pop()


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        try:
            return (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
        except sa.exc.DBAPIError:
            return None


async def migrate_in_subprocess(engine: AsyncEngine, url: str) -> None:
    """Migrate in a child process, so a long-running server never holds alembic.

    Raises ``DatabaseUnavailable`` when the database cannot be opened at all.
    """
    await check_connection(engine)
    if await current_revision(engine) == head_revision():
        return
    code = "import asyncio, sys; from storage.migrate import migrate_url; asyncio.run(migrate_url(sys.argv[1]))"
    root = str(ROOT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, url, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError("database migration failed:\n" + out.decode(errors="replace")[-4000:])


async def migrate_url(url: str) -> None:
    from storage.engine import create_engine

    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


async def migrate(engine: AsyncEngine) -> None:
    """Apply every pending migration; ``DatabaseUnavailable`` when the database cannot be opened."""
    await check_connection(engine)
    if await current_revision(engine) == head_revision():
        return

    def _upgrade(conn: Any) -> None:
        from alembic import command

        command.upgrade(alembic_config(conn), "head")

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)

"""storage/schema.py (what the code queries) and the alembic migrations (what a database
really gets) must describe the same tables, on SQLite and on MariaDB.

A column added to schema.py without a migration works in a test that builds tables from
the MetaData and fails on an operator's upgraded database; this catches it.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.engine import create_engine
from storage.schema import metadata


def _differences(conn: Any) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": False},
    )
    return compare_metadata(context, metadata)


async def test_migrated_database_matches_schema(db_url: str) -> None:
    # db_url is a copy of a database the real migrations built (see tests/conftest.py).
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(_differences)
    finally:
        await engine.dispose()
    assert diffs == [], "schema.py and the migrations disagree:\n" + "\n".join(map(str, diffs))

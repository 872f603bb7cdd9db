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


def _dialect_specific(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Leave out the full-text search index, which only the migration knows (see
    storage.schema.event_search): SQLite's FTS5 table and its shadow tables, MariaDB's
    FULLTEXT index."""
    if type_ == "table" and name is not None and name.startswith("event_search_fts"):
        return False
    return not (type_ == "index" and name == "event_search_fulltext")


def _differences(conn: Any) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": False, "include_object": _dialect_specific},
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

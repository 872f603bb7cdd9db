"""server-side search: event_search and its full-text index

Revision ID: 0014_search
Revises: 0013_sync_acks

SQLite: an FTS5 table over event_search.tokens (external content, rowid = stream_ordering)
kept in step by triggers. MariaDB: an InnoDB FULLTEXT index on tokens. The tokens are
ASCII (see homeserver/core/search_text.py), so neither needs an ngram parser for Chinese.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from storage.migrations.collation import collation

revision = '0014_search'
down_revision = '0013_sync_acks'
branch_labels = None
depends_on = None

_LONG = sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mysql', 'mariadb')


def upgrade() -> None:
    op.create_table(
        'event_search',
        sa.Column('stream_ordering', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('event_id', sa.String(length=255), nullable=False),
        sa.Column('room_id', sa.String(length=255), nullable=False),
        sa.Column('sender', sa.String(length=255), nullable=False),
        sa.Column('key', sa.String(length=32), nullable=False),
        sa.Column('origin_server_ts', sa.BigInteger(), nullable=False),
        sa.Column('tokens', _LONG, nullable=False),
        sa.PrimaryKeyConstraint('stream_ordering'),
        mysql_charset='utf8mb4', mysql_collate=collation(), mysql_engine='InnoDB',
    )
    with op.batch_alter_table('event_search', schema=None) as batch_op:
        batch_op.create_index('event_search_room', ['room_id', 'stream_ordering'], unique=False)
        batch_op.create_index('event_search_event', ['event_id'], unique=False)
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(
            "CREATE VIRTUAL TABLE event_search_fts USING fts5("
            "tokens, content='event_search', content_rowid='stream_ordering')"
        )
        op.execute(
            "CREATE TRIGGER event_search_ai AFTER INSERT ON event_search BEGIN "
            "INSERT INTO event_search_fts(rowid, tokens) VALUES (new.stream_ordering, new.tokens); END"
        )
        op.execute(
            "CREATE TRIGGER event_search_ad AFTER DELETE ON event_search BEGIN "
            "INSERT INTO event_search_fts(event_search_fts, rowid, tokens) "
            "VALUES ('delete', old.stream_ordering, old.tokens); END"
        )
    else:
        op.execute("CREATE FULLTEXT INDEX event_search_fulltext ON event_search (tokens)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute("DROP TRIGGER IF EXISTS event_search_ad")
        op.execute("DROP TRIGGER IF EXISTS event_search_ai")
        op.execute("DROP TABLE IF EXISTS event_search_fts")
    op.drop_table('event_search')

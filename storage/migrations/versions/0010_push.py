"""push rules, notifications, evaluation progress and pushers

Revision ID: 0010_push
Revises: 0009_event_relations
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from storage.migrations.collation import collation

revision = '0010_push'
down_revision = '0009_event_relations'
branch_labels = None
depends_on = None

_LONG = sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mysql', 'mariadb')


def _opts() -> dict:
    return {'mysql_charset': 'utf8mb4', 'mysql_collate': collation(), 'mysql_engine': 'InnoDB'}


def upgrade() -> None:
    op.create_table(
        'push_rules',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('rules', _LONG, nullable=False),
        sa.PrimaryKeyConstraint('user_id'),
        **_opts(),
    )
    op.create_table(
        'notifications',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('event_id', sa.String(length=255), nullable=False),
        sa.Column('room_id', sa.String(length=255), nullable=False),
        sa.Column('stream_ordering', sa.BigInteger(), nullable=False),
        sa.Column('thread_id', sa.String(length=255), nullable=False),
        sa.Column('actions', sa.Text(), nullable=False),
        sa.Column('highlight', sa.Boolean(), nullable=False),
        sa.Column('ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', 'event_id'),
        **_opts(),
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('notifications_user_room', ['user_id', 'room_id', 'stream_ordering'], unique=False)
        batch_op.create_index('notifications_user_stream', ['user_id', 'stream_ordering'], unique=False)
    op.create_table(
        'push_progress',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('stream_ordering', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
        **_opts(),
    )
    op.create_table(
        'pushers',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('app_id', sa.String(length=64), nullable=False),
        sa.Column('pushkey_sha256', sa.String(length=64), nullable=False),
        sa.Column('pushkey', sa.String(length=512), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', 'app_id', 'pushkey_sha256'),
        **_opts(),
    )


def downgrade() -> None:
    op.drop_table('pushers')
    op.drop_table('push_progress')
    op.drop_table('notifications')
    op.drop_table('push_rules')

"""administration and IM features: rate-limit overrides, event reports, registration
tokens, server notices, broadcasts, client events, blocked rooms, room deletions,
quarantined media, delayed purges of recalled content

Revision ID: 0018_admin
Revises: 0017_guests
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from storage.migrations.collation import collation

revision = '0018_admin'
down_revision = '0017_guests'
branch_labels = None
depends_on = None

_LONG = sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mysql', 'mariadb')
_AUTO = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_ID = sa.String(length=255)


def _opts() -> dict:
    return {'mysql_charset': 'utf8mb4', 'mysql_collate': collation(), 'mysql_engine': 'InnoDB'}


def upgrade() -> None:
    op.create_table(
        'ratelimit_overrides',
        sa.Column('user_id', _ID, nullable=False),
        sa.Column('messages_per_second', sa.Float(), nullable=False),
        sa.Column('burst_count', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('user_id'),
        **_opts(),
    )
    op.create_table(
        'server_notice_rooms',
        sa.Column('user_id', _ID, nullable=False),
        sa.Column('room_id', _ID, nullable=False),
        sa.PrimaryKeyConstraint('user_id'),
        **_opts(),
    )
    op.create_table(
        'broadcasts',
        sa.Column('id', _AUTO, autoincrement=True, nullable=False),
        sa.Column('sender', _ID, nullable=False),
        sa.Column('content', _LONG, nullable=False),
        sa.Column('admins_only', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        sa.Column('failed', sa.Integer(), nullable=False),
        sa.Column('cursor', _ID, nullable=True),
        sa.Column('created_ts', sa.BigInteger(), nullable=False),
        sa.Column('finished_ts', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        **_opts(),
    )
    op.create_table(
        'client_events',
        sa.Column('id', _AUTO, autoincrement=True, nullable=False),
        sa.Column('user_id', _ID, nullable=False),
        sa.Column('device_id', sa.String(length=128), nullable=False),
        sa.Column('type', _ID, nullable=False),
        sa.Column('payload', _LONG, nullable=False),
        sa.Column('client_ts', sa.BigInteger(), nullable=True),
        sa.Column('received_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        **_opts(),
    )
    op.create_index('client_events_user', 'client_events', ['user_id', 'id'])
    op.create_index('client_events_type', 'client_events', ['type', 'id'])
    op.create_table(
        'blocked_rooms',
        sa.Column('room_id', _ID, nullable=False),
        sa.Column('user_id', _ID, nullable=False),
        sa.Column('ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('room_id'),
        **_opts(),
    )
    op.create_table(
        'room_deletions',
        sa.Column('delete_id', sa.String(length=64), nullable=False),
        sa.Column('room_id', _ID, nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('params', sa.Text(), nullable=False),
        sa.Column('result', _LONG, nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('delete_id'),
        **_opts(),
    )
    op.create_index('room_deletions_room', 'room_deletions', ['room_id'])
    op.create_table(
        'quarantined_media',
        sa.Column('server_name', _ID, nullable=False),
        sa.Column('media_id', sa.String(length=255), nullable=False),
        sa.Column('quarantined_by', _ID, nullable=False),
        sa.PrimaryKeyConstraint('server_name', 'media_id'),
        **_opts(),
    )
    op.create_table(
        'pending_purges',
        sa.Column('event_id', _ID, nullable=False),
        sa.Column('purge_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('event_id'),
        **_opts(),
    )
    op.create_index('pending_purges_ts', 'pending_purges', ['purge_ts'])


def downgrade() -> None:
    for table in (
        'pending_purges', 'quarantined_media', 'room_deletions', 'blocked_rooms', 'client_events',
        'broadcasts', 'server_notice_rooms',
        'ratelimit_overrides',
    ):
        op.drop_table(table)

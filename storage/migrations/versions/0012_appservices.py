"""application services (transaction queue, published rooms) and AI interaction records

Revision ID: 0012_appservices
Revises: 0011_media_authenticated
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from storage.migrations.collation import collation

revision = '0012_appservices'
down_revision = '0011_media_authenticated'
branch_labels = None
depends_on = None

_LONG = sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mysql', 'mariadb')


def _opts() -> dict:
    return {'mysql_charset': 'utf8mb4', 'mysql_collate': collation(), 'mysql_engine': 'InnoDB'}


def upgrade() -> None:
    op.create_table(
        'appservice_state',
        sa.Column('as_id', sa.String(length=255), nullable=False),
        sa.Column('stream_position', sa.BigInteger(), nullable=False),
        sa.Column('last_txn_id', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('as_id'),
        **_opts(),
    )
    op.create_table(
        'appservice_txns',
        sa.Column('as_id', sa.String(length=255), nullable=False),
        sa.Column('txn_id', sa.BigInteger(), nullable=False),
        sa.Column('body', _LONG, nullable=False),
        sa.PrimaryKeyConstraint('as_id', 'txn_id'),
        **_opts(),
    )
    op.create_table(
        'appservice_room_list',
        sa.Column('as_id', sa.String(length=255), nullable=False),
        sa.Column('network_id', sa.String(length=255), nullable=False),
        sa.Column('room_id', sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint('as_id', 'network_id', 'room_id'),
        **_opts(),
    )
    op.create_table(
        'ai_interaction_records',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('room_id', sa.String(length=255), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('user_event_id', sa.String(length=255), nullable=False),
        sa.Column('reply_event_id', sa.String(length=255), nullable=True),
        sa.Column('provider', sa.String(length=255), nullable=False),
        sa.Column('request', _LONG, nullable=False),
        sa.Column('response', _LONG, nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('duration_ms', sa.BigInteger(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_ts', sa.BigInteger(), nullable=False),
        sa.Column('updated_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('room_id', 'user_event_id', name='ai_records_message'),
        **_opts(),
    )
    with op.batch_alter_table('ai_interaction_records', schema=None) as batch_op:
        batch_op.create_index('ai_records_room', ['room_id', 'id'], unique=False)
        batch_op.create_index('ai_records_status', ['status', 'id'], unique=False)


def downgrade() -> None:
    op.drop_table('ai_interaction_records')
    op.drop_table('appservice_room_list')
    op.drop_table('appservice_txns')
    op.drop_table('appservice_state')

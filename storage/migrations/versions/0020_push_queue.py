"""durable pusher deliveries: the push-gateway queue and pending email digests

Revision ID: 0020_push_queue
Revises: 0019_user_signatures
"""

import sqlalchemy as sa
from alembic import op

from storage.migrations.collation import collation

revision = '0020_push_queue'
down_revision = '0019_user_signatures'
branch_labels = None
depends_on = None


def _opts() -> dict:
    return {'mysql_charset': 'utf8mb4', 'mysql_collate': collation(), 'mysql_engine': 'InnoDB'}


def upgrade() -> None:
    op.create_table(
        'push_queue',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('app_id', sa.String(length=64), nullable=False),
        sa.Column('pushkey_sha256', sa.String(length=64), nullable=False),
        sa.Column('event_id', sa.String(length=255), nullable=False),
        sa.Column('room_id', sa.String(length=255), nullable=False),
        sa.Column('stream_ordering', sa.BigInteger(), nullable=False),
        sa.Column('due_ts', sa.BigInteger(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        **_opts(),
    )
    with op.batch_alter_table('push_queue', schema=None) as batch_op:
        batch_op.create_index('push_queue_due', ['due_ts', 'id'], unique=False)
        batch_op.create_index('push_queue_event', ['event_id'], unique=False)
    op.create_table(
        'email_digests',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('due_ts', sa.BigInteger(), nullable=True),
        sa.Column('mailed_upto', sa.BigInteger(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('user_id'),
        **_opts(),
    )
    with op.batch_alter_table('email_digests', schema=None) as batch_op:
        batch_op.create_index('email_digests_due', ['due_ts'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('email_digests', schema=None) as batch_op:
        batch_op.drop_index('email_digests_due')
    op.drop_table('email_digests')
    with op.batch_alter_table('push_queue', schema=None) as batch_op:
        batch_op.drop_index('push_queue_event')
        batch_op.drop_index('push_queue_due')
    op.drop_table('push_queue')

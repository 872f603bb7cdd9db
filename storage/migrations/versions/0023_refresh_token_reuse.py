"""refresh-token rotation as the spec describes it, and reuse detection

access_tokens.previous_token_id keeps a refreshed token alive until its successor is used;
refresh_tokens_spent remembers replaced refresh tokens (by SHA-256) so a reuse revokes the
device's session.

Revision ID: 0023_refresh_token_reuse
Revises: 0022_sliding_sync_states
"""

import sqlalchemy as sa
from alembic import op

from storage.migrations.collation import collation

revision = '0023_refresh_token_reuse'
down_revision = '0022_sliding_sync_states'
branch_labels = None
depends_on = None


def _opts() -> dict:
    return {'mysql_charset': 'utf8mb4', 'mysql_collate': collation(), 'mysql_engine': 'InnoDB'}


def upgrade() -> None:
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_token_id', sa.String(length=64), nullable=True))
    op.create_table(
        'refresh_tokens_spent',
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('device_id', sa.String(length=128), nullable=False),
        sa.Column('spent_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('token_sha256'),
        **_opts(),
    )
    with op.batch_alter_table('refresh_tokens_spent', schema=None) as batch_op:
        batch_op.create_index('refresh_tokens_spent_device', ['user_id', 'device_id', 'spent_ts'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('refresh_tokens_spent', schema=None) as batch_op:
        batch_op.drop_index('refresh_tokens_spent_device')
    op.drop_table('refresh_tokens_spent')
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.drop_column('previous_token_id')

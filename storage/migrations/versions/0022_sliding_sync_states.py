"""sliding sync connection states, so a `pos` survives a restart and works on every worker

Revision ID: 0022_sliding_sync_states
Revises: 0021_login_tokens
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from storage.migrations.collation import collation

revision = '0022_sliding_sync_states'
down_revision = '0021_login_tokens'
branch_labels = None
depends_on = None


def _opts() -> dict:
    return {'mysql_charset': 'utf8mb4', 'mysql_collate': collation(), 'mysql_engine': 'InnoDB'}


def upgrade() -> None:
    op.create_table(
        'sliding_sync_states',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('device_id', sa.String(length=128), nullable=False),
        sa.Column('conn_id', sa.String(length=255), nullable=False),
        sa.Column('state_id', sa.String(length=32), nullable=False),
        sa.Column('sent', sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mysql', 'mariadb'), nullable=False),
        sa.Column('lists', sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mysql', 'mariadb'), nullable=False),
        sa.Column('created_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        **_opts(),
    )
    with op.batch_alter_table('sliding_sync_states', schema=None) as batch_op:
        batch_op.create_index(
            'sliding_sync_states_conn', ['user_id', 'device_id', 'conn_id', 'state_id'], unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table('sliding_sync_states', schema=None) as batch_op:
        batch_op.drop_index('sliding_sync_states_conn')
    op.drop_table('sliding_sync_states')

"""per-device acknowledged sync position (WebSocket transport)

Revision ID: 0013_sync_acks
Revises: 0012_appservices
"""

import sqlalchemy as sa
from alembic import op

from storage.migrations.collation import collation

revision = '0013_sync_acks'
down_revision = '0012_appservices'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sync_acks',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('device_id', sa.String(length=128), nullable=False),
        sa.Column('position', sa.String(length=255), nullable=False),
        sa.Column('updated_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', 'device_id'),
        mysql_charset='utf8mb4', mysql_collate=collation(), mysql_engine='InnoDB',
    )


def downgrade() -> None:
    op.drop_table('sync_acks')

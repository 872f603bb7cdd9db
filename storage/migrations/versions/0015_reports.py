"""reports of events, rooms and users

Revision ID: 0015_reports
Revises: 0014_search
"""

import sqlalchemy as sa
from alembic import op

from storage.migrations.collation import collation

revision = '0015_reports'
down_revision = '0014_search'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'reports',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('reporter', sa.String(length=255), nullable=False),
        sa.Column('room_id', sa.String(length=255), nullable=True),
        sa.Column('event_id', sa.String(length=255), nullable=True),
        sa.Column('target_user_id', sa.String(length=255), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('score', sa.Integer(), nullable=True),
        sa.Column('received_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        mysql_charset='utf8mb4', mysql_collate=collation(), mysql_engine='InnoDB',
    )
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.create_index('reports_received', ['received_ts'], unique=False)


def downgrade() -> None:
    op.drop_table('reports')

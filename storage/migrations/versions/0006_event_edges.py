"""event_edges: prev-event links of received events

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from storage.migrations.collation import collation

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'event_edges',
        sa.Column('event_id', sa.String(length=255), nullable=False),
        sa.Column('prev_event_id', sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint('event_id', 'prev_event_id'),
        mysql_charset='utf8mb4',
        mysql_collate=collation(),
        mysql_engine='InnoDB',
    )
    with op.batch_alter_table('event_edges', schema=None) as batch_op:
        batch_op.create_index('event_edges_prev', ['prev_event_id'], unique=False)


def downgrade() -> None:
    op.drop_table('event_edges')

"""event_relations: m.relates_to of every timeline event

Revision ID: 0009_event_relations
Revises: 0008_e2ee
"""

import sqlalchemy as sa
from alembic import op

from storage.migrations.collation import collation

revision = '0009_event_relations'
down_revision = '0008_e2ee'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'event_relations',
        sa.Column('event_id', sa.String(length=255), nullable=False),
        sa.Column('relates_to_id', sa.String(length=255), nullable=False),
        sa.Column('rel_type', sa.String(length=255), nullable=False),
        sa.Column('type', sa.String(length=255), nullable=False),
        sa.Column('sender', sa.String(length=255), nullable=False),
        sa.Column('room_id', sa.String(length=255), nullable=False),
        sa.Column('stream_ordering', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('event_id'),
        mysql_charset='utf8mb4',
        mysql_collate=collation(),
        mysql_engine='InnoDB',
    )
    with op.batch_alter_table('event_relations', schema=None) as batch_op:
        batch_op.create_index('event_relations_parent', ['relates_to_id', 'rel_type', 'stream_ordering'], unique=False)
        batch_op.create_index('event_relations_room', ['room_id', 'rel_type', 'stream_ordering'], unique=False)


def downgrade() -> None:
    op.drop_table('event_relations')

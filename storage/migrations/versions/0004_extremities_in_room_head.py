"""forward extremities move into room_state_meta (one row written per event)

Revision ID: 0004
Revises: 0003
"""

import json

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('room_state_meta', schema=None) as batch_op:
        batch_op.add_column(sa.Column('extremities', sa.Text(), nullable=False, server_default='[]'))
    conn = op.get_bind()
    rows = conn.execute(sa.text('SELECT room_id, event_id FROM forward_extremities')).all()
    by_room: dict[str, list[str]] = {}
    for room_id, event_id in rows:
        by_room.setdefault(room_id, []).append(event_id)
    for room_id, ids in by_room.items():
        conn.execute(
            sa.text('UPDATE room_state_meta SET extremities = :e WHERE room_id = :r'),
            {'e': json.dumps(ids), 'r': room_id},
        )
    op.drop_table('forward_extremities')


def downgrade() -> None:
    raise NotImplementedError("one-way migration")

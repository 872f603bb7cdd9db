"""events: (sender, txn_device, txn_id) is unique

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('events_txn')
        batch_op.create_index('events_txn', ['sender', 'txn_device', 'txn_id'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('events_txn')
        batch_op.create_index('events_txn', ['sender', 'txn_device', 'txn_id'], unique=False)

"""users.is_guest: guest accounts

Revision ID: 0017_guests
Revises: 0016_registration_tokens
"""

import sqlalchemy as sa
from alembic import op

revision = '0017_guests'
down_revision = '0016_registration_tokens'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_guest', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('is_guest')

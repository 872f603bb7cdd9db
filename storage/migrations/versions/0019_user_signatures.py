"""signatures of other users' master keys by a local user's user-signing key

Revision ID: 0019_user_signatures
Revises: 0018_admin
"""

import sqlalchemy as sa
from alembic import op

from storage.migrations.collation import collation

revision = '0019_user_signatures'
down_revision = '0018_admin'
branch_labels = None
depends_on = None


def _opts() -> dict:
    return {'mysql_charset': 'utf8mb4', 'mysql_collate': collation(), 'mysql_engine': 'InnoDB'}


def upgrade() -> None:
    op.create_table(
        'e2e_user_signatures',
        sa.Column('signer', sa.String(length=255), nullable=False),
        sa.Column('target_user_id', sa.String(length=255), nullable=False),
        sa.Column('target_key_id', sa.String(length=128), nullable=False),
        sa.Column('signing_key_id', sa.String(length=128), nullable=False),
        sa.Column('signature', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('signer', 'target_user_id', 'target_key_id', 'signing_key_id'),
        **_opts(),
    )


def downgrade() -> None:
    op.drop_table('e2e_user_signatures')

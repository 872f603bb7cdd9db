"""registration_tokens: tokens for token-authenticated registration

Revision ID: 0016_registration_tokens
Revises: 0015_reports
"""

import sqlalchemy as sa
from alembic import op

from storage.migrations.collation import collation

revision = '0016_registration_tokens'
down_revision = '0015_reports'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'registration_tokens',
        sa.Column('token', sa.String(length=64), nullable=False),
        sa.Column('uses_allowed', sa.Integer(), nullable=True),
        sa.Column('pending', sa.Integer(), nullable=False),
        sa.Column('completed', sa.Integer(), nullable=False),
        sa.Column('expiry_time', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('token'),
        mysql_charset='utf8mb4', mysql_collate=collation(), mysql_engine='InnoDB',
    )


def downgrade() -> None:
    op.drop_table('registration_tokens')

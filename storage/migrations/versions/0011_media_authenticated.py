"""media.authenticated: media stored after the legacy unauthenticated endpoints froze

Revision ID: 0011_media_authenticated
Revises: 0010_push
"""

import sqlalchemy as sa
from alembic import op

revision = '0011_media_authenticated'
down_revision = '0010_push'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every row already stored was served unauthenticated: it stays so (spec v1.11 freeze).
    op.add_column('media', sa.Column('authenticated', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column('media', 'authenticated')

"""media: the content repository (our uploads and cached remote media)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from storage.migrations.collation import collation

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'media',
        sa.Column('server_name', sa.String(length=255), nullable=False),
        sa.Column('media_id', sa.String(length=255), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=True),
        sa.Column('content_type', sa.String(length=255), nullable=False),
        sa.Column('upload_name', sa.String(length=512), nullable=True),
        sa.Column('size', sa.BigInteger(), nullable=True),
        sa.Column('created_ts', sa.BigInteger(), nullable=False),
        sa.Column('uploaded_ts', sa.BigInteger(), nullable=True),
        sa.Column('expires_ts', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('server_name', 'media_id'),
        mysql_charset='utf8mb4',
        mysql_collate=collation(),
        mysql_engine='InnoDB',
    )
    with op.batch_alter_table('media', schema=None) as batch_op:
        batch_op.create_index('media_pending', ['user_id', 'uploaded_ts'], unique=False)


def downgrade() -> None:
    op.drop_table('media')

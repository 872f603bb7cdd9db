"""single-use login tokens for POST /login/get_token (MSC3882)

Revision ID: 0021_login_tokens
Revises: 0020_push_queue
"""

import sqlalchemy as sa
from alembic import op

from storage.migrations.collation import collation

revision = '0021_login_tokens'
down_revision = '0020_push_queue'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'login_tokens',
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('expires_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('token_sha256'),
        mysql_charset='utf8mb4', mysql_collate=collation(), mysql_engine='InnoDB',
    )
    with op.batch_alter_table('login_tokens', schema=None) as batch_op:
        batch_op.create_index('login_tokens_expiry', ['expires_ts'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('login_tokens', schema=None) as batch_op:
        batch_op.drop_index('login_tokens_expiry')
    op.drop_table('login_tokens')

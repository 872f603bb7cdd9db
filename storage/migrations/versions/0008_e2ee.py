"""end-to-end encryption: device, one-time, fallback and cross-signing keys; to-device
inbox; device-list change stream; durable EDUs (to-device) in the federation outbox; key backup

Revision ID: 0008_e2ee
Revises: 0007 (media)
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from storage.migrations.collation import collation

revision = '0008_e2ee'
down_revision = '0007'
branch_labels = None
depends_on = None


def _table(name: str, *cols: sa.Column | sa.PrimaryKeyConstraint) -> None:
    op.create_table(
        name, *cols, mysql_charset='utf8mb4', mysql_collate=collation(), mysql_engine='InnoDB',
    )


def upgrade() -> None:
    _table(
        'e2e_device_keys',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('device_id', sa.String(length=128), nullable=False),
        sa.Column('json', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', 'device_id'),
    )
    _table(
        'e2e_one_time_keys',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('device_id', sa.String(length=128), nullable=False),
        sa.Column('algorithm', sa.String(length=64), nullable=False),
        sa.Column('key_id', sa.String(length=128), nullable=False),
        sa.Column('json', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', 'device_id', 'algorithm', 'key_id'),
    )
    _table(
        'e2e_fallback_keys',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('device_id', sa.String(length=128), nullable=False),
        sa.Column('algorithm', sa.String(length=64), nullable=False),
        sa.Column('key_id', sa.String(length=128), nullable=False),
        sa.Column('json', sa.Text(), nullable=False),
        sa.Column('used', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', 'device_id', 'algorithm'),
    )
    _table(
        'e2e_cross_signing_keys',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('key_type', sa.String(length=32), nullable=False),
        sa.Column('json', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', 'key_type'),
    )
    _table(
        'device_inbox',
        sa.Column('stream_id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('device_id', sa.String(length=128), nullable=False),
        sa.Column('json', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('stream_id'),
    )
    op.create_index('device_inbox_device', 'device_inbox', ['user_id', 'device_id', 'stream_id'])
    _table(
        'device_list_changes',
        sa.Column('stream_id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint('stream_id'),
    )
    op.create_index('device_list_changes_user', 'device_list_changes', ['user_id', 'stream_id'])
    _table(
        'e2e_room_keys_versions',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('version', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('algorithm', sa.String(length=255), nullable=False),
        sa.Column('auth_data', sa.Text(), nullable=False),
        sa.Column('etag', sa.BigInteger(), nullable=False),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', 'version'),
    )
    _table(
        'e2e_room_keys',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('version', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('room_id', sa.String(length=255), nullable=False),
        sa.Column('session_id', sa.String(length=255), nullable=False),
        sa.Column('first_message_index', sa.BigInteger(), nullable=False),
        sa.Column('forwarded_count', sa.BigInteger(), nullable=False),
        sa.Column('is_verified', sa.Boolean(), nullable=False),
        sa.Column('session_data', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', 'version', 'room_id', 'session_id'),
    )
    _table(
        'federation_edu_outbox',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('destination', sa.String(length=255), nullable=False),
        sa.Column('edu_json', sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mysql', 'mariadb'), nullable=False),
        sa.Column('created_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('federation_edu_outbox_destination', 'federation_edu_outbox', ['destination', 'id'])


def downgrade() -> None:
    for name in ('e2e_room_keys', 'e2e_room_keys_versions', 'federation_edu_outbox', 'device_list_changes', 'device_inbox', 'e2e_cross_signing_keys',
                 'e2e_fallback_keys', 'e2e_one_time_keys', 'e2e_device_keys'):
        op.drop_table(name)

"""mail is de-duplicated by Message-ID, sender and content, not by Message-ID alone

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

Mailers reuse Message-IDs (a web form's fixed id, a broken client): a second customer's mail with an id already
read was dropped as a duplicate. ``mail_message.dedup_key`` (``models.mail.mail_key``) is unique instead; the
Message-ID keeps a plain index (replies are matched by it). Mails read before keep a key made of their Message-ID
alone, so reading one of them again is still a duplicate.
"""
import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def legacy_key(message_id: str) -> str:
    """As ``models.mail.legacy_key`` (kept here so the migration does not change when that module does)."""
    return hashlib.sha256(f"legacy\n{message_id}".encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table('mail_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dedup_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    mail = sa.table('mail_message', sa.column('id', sa.Integer), sa.column('message_id', sa.String),
                    sa.column('dedup_key', sa.String))
    connection = op.get_bind()
    for row_id, message_id in connection.execute(sa.select(mail.c.id, mail.c.message_id)).all():
        connection.execute(mail.update().where(mail.c.id == row_id).values(dedup_key=legacy_key(message_id)))
    with op.batch_alter_table('mail_message', schema=None) as batch_op:
        batch_op.alter_column('dedup_key', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
        batch_op.drop_index('ix_mail_message_message_id')
        batch_op.create_index('ix_mail_message_message_id', ['message_id'], unique=False)
        batch_op.create_index('ix_mail_message_dedup_key', ['dedup_key'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('mail_message', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_message_dedup_key')
        batch_op.drop_index('ix_mail_message_message_id')
        batch_op.create_index('ix_mail_message_message_id', ['message_id'], unique=True)
        batch_op.drop_column('dedup_key')

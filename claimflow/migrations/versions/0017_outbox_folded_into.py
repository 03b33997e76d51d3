"""a reader's notices of one kind claimed together leave as one digest; each folded row names the message that carried it

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

A surge gave each handler hundreds of new-assignment notices, one e-mail a case. A sender that claims several for
one reader now sends one (``tasks.outbox.fold_notices``): the first becomes the digest (``MessageSpec.digest``),
the others are ``folded`` with ``folded_into`` naming it.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('folded_into', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('folded_into')

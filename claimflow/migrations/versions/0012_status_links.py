"""status links

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Every customer message carries a signed link to the case's status page; ``case.links_revoked_at`` withdraws the
links issued until then (a link forwarded to the wrong person).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('links_revoked_at', models.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.drop_column('links_revoked_at')

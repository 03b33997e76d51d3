"""approval codes lock after repeated wrong ones

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

A six-digit code has a million values and the form took any number of guesses. Each member of staff now counts the
wrong codes given in a row; after ``models.otp.MAX_WRONG_CODES`` their codes are refused for
``models.otp.LOCKOUT``, right or wrong.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.add_column(sa.Column('codes_refused', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('codes_locked_until', models.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.drop_column('codes_locked_until')
        batch_op.drop_column('codes_refused')

"""feedback without a case

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

General feedback (a hotline call, a web form, a social-media post) names no case: ``feedback.case_id`` may be empty,
the customer it came from is kept when the contact given matched one, and a supervisor closes it.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.alter_column('case_id', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column('customer_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('handled_at', models.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('handled_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('handled_note', sa.Text(), nullable=True))
        batch_op.create_foreign_key('fk_feedback_customer_id_customer', 'customer', ['customer_id'], ['id'])


def downgrade() -> None:
    op.execute("DELETE FROM feedback WHERE case_id IS NULL")
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_constraint('fk_feedback_customer_id_customer', type_='foreignkey')
        batch_op.drop_column('handled_note')
        batch_op.drop_column('handled_by')
        batch_op.drop_column('handled_at')
        batch_op.drop_column('customer_id')
        batch_op.alter_column('case_id', existing_type=sa.Integer(), nullable=False)

"""drop indexes that a unique constraint already covers

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

``ix_step_case_id`` repeats the leading column of ``uq_step_case_name_attempt`` and ``ix_escalation_step_id``
that of ``uq_escalation_step_level``: every lookup by case (steps) or by step (escalations) uses the unique
index, and each redundant index was one more entry to write for every step the SLA watcher moves on and every
escalation it raises.
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('step', schema=None) as batch_op:
        batch_op.drop_index('ix_step_case_id')
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.drop_index('ix_escalation_step_id')


def downgrade() -> None:
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.create_index('ix_escalation_step_id', ['step_id'], unique=False)
    with op.batch_alter_table('step', schema=None) as batch_op:
        batch_op.create_index('ix_step_case_id', ['case_id'], unique=False)

"""a step's escalation ladder has rounds; cases are indexed by the case they are about

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

An extension (or a resumed clock) starts a step's ladder afresh, but an escalation was unique by (step, level):
when the extended deadline passed too, the watcher's insert of level 1 again failed, and with it every pass for
every case. The step now counts its rounds (``ladder_round``) and an escalation is unique by (step, round,
level). Existing escalations belong to round 0; a step that escalated and was rescheduled since then (its level
back at 0 with escalations on record) moves to the round after its escalations, so its next breach is raised.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('step', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ladder_round', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('round', sa.Integer(), nullable=False, server_default='0'))
        batch_op.drop_constraint('uq_escalation_step_level', type_='unique')
        batch_op.create_unique_constraint('uq_escalation_step_round_level', ['step_id', 'round', 'level'])
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.create_index('ix_case_related_case_id', ['related_case_id'], unique=False,
                              postgresql_where=sa.text('related_case_id IS NOT NULL'),
                              sqlite_where=sa.text('related_case_id IS NOT NULL'))
    op.execute(
        "UPDATE step SET ladder_round = 1 WHERE escalation_level = 0 "
        "AND EXISTS (SELECT 1 FROM escalation WHERE escalation.step_id = step.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.drop_index('ix_case_related_case_id')
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.drop_constraint('uq_escalation_step_round_level', type_='unique')
        batch_op.create_unique_constraint('uq_escalation_step_level', ['step_id', 'level'])
        batch_op.drop_column('round')
    with op.batch_alter_table('step', schema=None) as batch_op:
        batch_op.drop_column('ladder_round')

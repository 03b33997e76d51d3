"""survey invitations and feedback sources

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Feedback: the survey invitations (signed single-use links) and where each piece of feedback came from.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('survey_invitation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sent_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('answered_at', models.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', name='uq_survey_invitation_case')
    )
    with op.batch_alter_table('survey_invitation', schema=None) as batch_op:
        batch_op.create_index('ix_survey_invitation_customer_sent', ['customer_id', 'sent_at'], unique=False)

    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('invitation_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('complaint_case_id', sa.Integer(), nullable=True))
        batch_op.create_unique_constraint('uq_feedback_invitation', ['invitation_id'])
        batch_op.create_foreign_key('fk_feedback_invitation', 'survey_invitation', ['invitation_id'], ['id'])
        batch_op.create_foreign_key('fk_feedback_complaint_case', 'case', ['complaint_case_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_constraint('fk_feedback_complaint_case', type_='foreignkey')
        batch_op.drop_constraint('fk_feedback_invitation', type_='foreignkey')
        batch_op.drop_constraint('uq_feedback_invitation', type_='unique')
        batch_op.drop_column('complaint_case_id')
        batch_op.drop_column('invitation_id')
        batch_op.drop_column('source')

    with op.batch_alter_table('survey_invitation', schema=None) as batch_op:
        batch_op.drop_index('ix_survey_invitation_customer_sent')

    op.drop_table('survey_invitation')

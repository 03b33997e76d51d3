"""the outbox delivers staff notices the worklist already shows after everything else

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

A case filed queues its customer's acknowledgement and its handler's new-assignment notice. In a surge of 100,000
claims the two were claimed in the order they were queued, so the last acknowledgement left only with the last
notice: 200,000 messages. ``outbox.priority`` (0 first, then 1) lets every due customer message and staff action
go before the notices (``MessageSpec.later``). Messages still waiting get their template's priority.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LATER = ('staff_new_assignment',)  # models.messages: the specs with later=True when this revision was written


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.SmallInteger(), server_default='0', nullable=False))
    outbox = sa.table('outbox', sa.column('priority', sa.SmallInteger()), sa.column('template', sa.String()),
                      sa.column('status', sa.String()))
    op.execute(outbox.update().where(outbox.c.template.in_(LATER), outbox.c.status.in_(('pending', 'sending', 'held')))
               .values(priority=1))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('priority')

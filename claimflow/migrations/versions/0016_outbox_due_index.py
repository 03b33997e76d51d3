"""a sender claims its due messages through an index in the order it claims them

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

``tasks.outbox.claim_due`` takes the first due rows by priority, due time and id. Through
``ix_outbox_status_next_attempt`` the database read every waiting row and sorted them for each claim of a hundred:
with 100,000 acknowledgements and notices waiting in a surge, PostgreSQL spent a third of a core on it. The partial
index ``ix_outbox_due`` holds only the rows a sender may claim, in that order, so a claim reads about as many rows
as it takes.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = "status IN ('pending', 'sending')"  # models.tables.OUTBOX_DUE when this revision was written


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['priority', 'next_attempt_at', 'id'], unique=False,
                              postgresql_where=sa.text(DUE), sqlite_where=sa.text(DUE))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_due', postgresql_where=sa.text(DUE), sqlite_where=sa.text(DUE))

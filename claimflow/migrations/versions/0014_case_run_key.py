"""a random key per case and escalation for their runs

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

The intake API's launcher and the reconciler both start a case's first run; without an idempotency key the Prefect
server created one for each (a surge of 1,000 claims left 402 cases with two or three runs). ``case.run_key`` is
random, set at filing, and the runs' idempotency keys are made from it (``tasks.runs.run_key``); the same for an
escalation (``escalation.run_key``, set when raised: the watcher and the reconciler both start its run). Rows from
before have none and are started as before.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


TABLES = ('case', 'escalation')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('run_key', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('run_key')

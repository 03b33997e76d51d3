"""signed checkpoints of the audit log's chain heads

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

Deleting a case's last events (or all of them), rehashing a chain or truncating the table passed ``audit verify``:
every chain was checked against itself only. ``audit_checkpoint`` keeps the heads of the chains, signed with a key
the database does not hold (``claimflow.secrets.audit_key``), written by the reconciler and by ``audit verify``.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import models.types


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_checkpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('through_event_id', sa.Integer(), nullable=False),
    sa.Column('heads', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('previous', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('audit_checkpoint')

"""the event log refuses TRUNCATE too

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

The row triggers of 0001 refuse UPDATE and DELETE on ``event``, but PostgreSQL's TRUNCATE fires no row trigger:
one statement emptied the audit log and ``claimflow audit verify`` found nothing wrong (no chain left to break).
A statement-level BEFORE TRUNCATE trigger refuses it. SQLite has no TRUNCATE (``DELETE FROM event`` fires the row
trigger of 0001).
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER event_no_truncate BEFORE TRUNCATE ON event "
            "FOR EACH STATEMENT EXECUTE FUNCTION claimflow_event_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS event_no_truncate ON event")

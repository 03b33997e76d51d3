"""each handler's open load, kept by triggers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

Routing counted every open step, grouped by handler, on every filing: a scan that grew with the backlog (about
0.3 ms per 1,000 open steps, 30 ms a case at 100,000 open) and ran while the case-number counter was locked.
``staff_load`` holds the count; row triggers on ``step`` change it by one whenever a step starts or stops counting
for someone (inserted open or paused with an assignee, reassigned, done or cancelled, deleted), in the writer's
transaction. Filled from the steps as they are.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTED = "('open', 'paused')"

POSTGRES_FUNCTION = f"""
CREATE FUNCTION claimflow_staff_load() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was bigint := NULL;
    now_is bigint := NULL;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status IN {COUNTED} THEN was := OLD.assignee_id; END IF;
    IF TG_OP <> 'DELETE' AND NEW.status IN {COUNTED} THEN now_is := NEW.assignee_id; END IF;
    IF was IS NOT DISTINCT FROM now_is THEN RETURN NULL; END IF;
    IF was IS NOT NULL THEN
        UPDATE staff_load SET open_steps = open_steps - 1 WHERE staff_id = was;
    END IF;
    IF now_is IS NOT NULL THEN
        INSERT INTO staff_load (staff_id, open_steps) VALUES (now_is, 1)
        ON CONFLICT (staff_id) DO UPDATE SET open_steps = staff_load.open_steps + 1;
    END IF;
    RETURN NULL;
END $$;
"""

_OLD = f"(CASE WHEN OLD.status IN {COUNTED} THEN OLD.assignee_id END)"
_NEW = f"(CASE WHEN NEW.status IN {COUNTED} THEN NEW.assignee_id END)"
_ADD = (
    "INSERT INTO staff_load (staff_id, open_steps) SELECT {new}, 1 WHERE {new} IS NOT NULL "
    "ON CONFLICT (staff_id) DO UPDATE SET open_steps = open_steps + 1;"
).format(new=_NEW)
_TAKE = "UPDATE staff_load SET open_steps = open_steps - 1 WHERE staff_id = {old};".format(old=_OLD)
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER step_load_insert AFTER INSERT ON step BEGIN {_ADD} END",
    f"CREATE TRIGGER step_load_update AFTER UPDATE OF status, assignee_id ON step WHEN {_OLD} IS NOT {_NEW} "
    f"BEGIN {_TAKE} {_ADD} END",
    f"CREATE TRIGGER step_load_delete AFTER DELETE ON step BEGIN {_TAKE} END",
)


def upgrade() -> None:
    op.create_table(
        'staff_load',
        sa.Column('staff_id', sa.Integer(), nullable=False),
        sa.Column('open_steps', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['staff_id'], ['staff.id']),
        sa.PrimaryKeyConstraint('staff_id'),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(
            "CREATE TRIGGER step_staff_load AFTER INSERT OR UPDATE OF status, assignee_id OR DELETE ON step "
            "FOR EACH ROW EXECUTE FUNCTION claimflow_staff_load()"
        )
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
    op.execute(
        "INSERT INTO staff_load (staff_id, open_steps) SELECT assignee_id, count(*) FROM step "
        f"WHERE status IN {COUNTED} AND assignee_id IS NOT NULL GROUP BY assignee_id"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS step_staff_load ON step")
        op.execute("DROP FUNCTION IF EXISTS claimflow_staff_load()")
    else:
        for name in ("step_load_insert", "step_load_update", "step_load_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table('staff_load')

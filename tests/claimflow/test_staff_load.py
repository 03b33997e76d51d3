"""Each handler's open load is kept by the database (``staff_load``, triggers of migration 0013): after any mix of
steps filed, paused, reassigned, closed and deleted, through the ORM or by hand, it equals the count of their open
and paused steps; and the upgrade fills it from the steps already there."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text

from claimflow.db import create_db_engine
from claimflow.migrate import upgrade
from tests.claimflow.test_migrations import _insert

STATUSES = ("open", "paused", "done", "cancelled")


def live_counts(engine: Engine) -> dict[int, int]:
    with engine.connect() as connection:
        query = text(
            "SELECT assignee_id, count(*) FROM step WHERE status IN ('open', 'paused') "
            "AND assignee_id IS NOT NULL GROUP BY assignee_id"
        )
        rows = connection.execute(query).all()
    return {int(staff): int(n) for staff, n in rows}


def kept_counts(engine: Engine) -> dict[int, int]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT staff_id, open_steps FROM staff_load")).all()
    return {int(staff): int(n) for staff, n in rows if n}


def _world(engine: Engine, staff: int) -> None:
    with engine.begin() as connection:
        for n in range(1, staff + 1):
            _insert(connection, "staff", id=n, username=f"h{n}", name=f"H{n}", skills="[]", languages="[]")
        _insert(connection, "customer", id=1)
        _insert(connection, "case", id=1, customer_id=1, number="CLM-2026-000001")


def test_the_upgrade_fills_the_loads_from_the_steps_already_there(empty_database_url: str) -> None:
    engine = create_db_engine(empty_database_url, pool=False)
    try:
        upgrade(engine, "0012")
        _world(engine, 3)
        with engine.begin() as connection:
            for n, (status, assignee) in enumerate(
                [("open", 1), ("open", 1), ("paused", 1), ("done", 1), ("open", 2), ("cancelled", 3), ("open", None)]
            ):
                _insert(connection, "step", id=n + 1, case_id=1, name=f"s{n}", status=status, assignee_id=assignee)
        upgrade(engine)
        assert kept_counts(engine) == live_counts(engine) == {1: 3, 2: 1}
    finally:
        engine.dispose()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_mix_of_step_changes_keeps_every_load_equal_to_the_count(empty_database_url: str, seed: int) -> None:
    engine = create_db_engine(empty_database_url, pool=False)
    rng = random.Random(seed)
    try:
        upgrade(engine)
        _world(engine, 4)
        steps: list[int] = []
        done: Counter[str] = Counter()
        for round_ in range(25):
            with engine.begin() as connection:  # several changes per transaction, some to the same row
                for _ in range(rng.randint(1, 8)):
                    move = rng.choice(["insert", "insert", "status", "assign", "both", "delete", "untouched"])
                    if move == "insert" or not steps:
                        step_id = len(done) + 1000 * round_ + rng.randint(1, 999)
                        if step_id in steps:
                            continue
                        steps.append(step_id)
                        _insert(connection, "step", id=step_id, case_id=1, name=f"s{step_id}",
                                status=rng.choice(STATUSES), assignee_id=rng.choice([1, 2, 3, 4, None]))  # fmt: skip
                    else:
                        step_id = rng.choice(steps)
                        if move == "delete":
                            connection.execute(text("DELETE FROM step WHERE id = :i"), {"i": step_id})
                            steps.remove(step_id)
                        elif move == "status":
                            connection.execute(text("UPDATE step SET status = :s WHERE id = :i"),
                                               {"s": rng.choice(STATUSES), "i": step_id})  # fmt: skip
                        elif move == "assign":
                            connection.execute(text("UPDATE step SET assignee_id = :a WHERE id = :i"),
                                               {"a": rng.choice([1, 2, 3, 4, None]), "i": step_id})  # fmt: skip
                        elif move == "both":
                            connection.execute(
                                text("UPDATE step SET status = :s, assignee_id = :a WHERE id = :i"),
                                {"s": rng.choice(STATUSES), "a": rng.choice([1, 2, 3, 4, None]), "i": step_id},
                            )
                        else:  # a write that touches neither column (the SLA watcher's next check)
                            connection.execute(text("UPDATE step SET next_check_at = :t WHERE id = :i"),
                                               {"t": datetime(2026, 3, 3, tzinfo=UTC), "i": step_id})  # fmt: skip
                    done[move] += 1
            if rng.random() < 0.2:  # a transaction rolled back leaves the loads as they were
                before = kept_counts(engine)
                with engine.connect() as connection:
                    transaction = connection.begin()
                    connection.execute(text("UPDATE step SET status = 'done'"))
                    transaction.rollback()
                assert kept_counts(engine) == before
            assert kept_counts(engine) == live_counts(engine), (round_, done)
        assert sum(live_counts(engine).values()) > 0
    finally:
        engine.dispose()

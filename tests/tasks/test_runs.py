"""Which runs the reconciler treats as dead or stranded, and the pages of open cases it walks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.schemas.objects import StateType
from sqlmodel import Session

from models.tables import Case
from tasks.runs import RunState, open_with_runs

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
LIMIT = timedelta(minutes=15)


@pytest.mark.parametrize("state_type", [StateType.RUNNING, StateType.PENDING])
def test_a_held_run_is_stranded_only_once_it_has_been_held_longer_than_the_limit(state_type: StateType) -> None:
    assert not RunState(state_type, NOW - LIMIT + timedelta(seconds=1)).stranded(now=NOW, after=LIMIT)
    assert RunState(state_type, NOW - LIMIT).stranded(now=NOW, after=LIMIT)
    assert RunState(state_type, NOW - timedelta(days=3)).stranded(now=NOW, after=LIMIT)
    assert not RunState(state_type, None).stranded(now=NOW, after=LIMIT)  # no time known: never guessed


@pytest.mark.parametrize(
    "state_type", [StateType.PAUSED, StateType.SCHEDULED, StateType.COMPLETED, StateType.CRASHED, StateType.FAILED]
)
def test_a_run_nobody_holds_is_never_stranded_however_old(state_type: StateType) -> None:
    # waiting for a person (Paused) or for a runner (Scheduled) may last months; dead runs are dead, not stranded
    assert not RunState(state_type, NOW - timedelta(days=400)).stranded(now=NOW, after=LIMIT)


@pytest.mark.parametrize(
    ("state_type", "dead"),
    [
        (StateType.COMPLETED, True),
        (StateType.FAILED, True),
        (StateType.CRASHED, True),
        (StateType.CANCELLED, True),
        (StateType.PAUSED, False),
        (StateType.RUNNING, False),
        (StateType.SCHEDULED, False),
    ],
)
def test_dead_states(state_type: StateType, dead: bool) -> None:
    assert RunState(state_type, NOW).dead() is dead


def test_open_cases_with_runs_come_in_id_order_pages_that_cover_them_all(world, engine) -> None:
    cases = [world.file(product_line="motor") for _ in range(7)]
    with Session(engine) as session:
        for number, case in enumerate(cases):
            row = session.get(Case, case.id)
            assert row is not None
            row.flow_run_id = None if number == 2 else f"00000000-0000-0000-0000-00000000000{number}"
            if number == 4:
                row.closed_at = NOW
            session.add(row)
        session.commit()
        pages, after = [], 0
        while page := open_with_runs(session, after_id=after, limit=2):
            pages.append([c.id for c in page])
            after = page[-1].id or after
    expected = [c.id for n, c in enumerate(cases) if n not in (2, 4)]  # no run yet; closed
    assert [i for p in pages for i in p] == expected
    assert all(len(p) <= 2 for p in pages) and len(pages) == 3

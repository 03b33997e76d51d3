"""Reading what a run made of an answer (``tasks.answers.outcome``), as ``claimflow decide`` reports it."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event
from sqlmodel import Session

from claimflow.db import create_db_engine
from models.enums import CaseKind
from tasks.answers import event_count, outcome
from tests.conftest import DeskWorld


def test_an_answer_refused_while_its_outcome_is_read_never_reads_as_taken_up(world: DeskWorld) -> None:
    """The run refuses the answer (a wrong approval code) and commits, in one transaction, the refusal and the
    step's new key, just after the reader's first statement. On PostgreSQL each later statement sees that commit:
    a reader that read the events first and the key after saw no refusal and a key moved on, and reported a
    refused decision as taken up. (On SQLite the reader's transaction holds the desk's write lock, so the refusal
    waits for the reader to finish.)"""
    case = world.file(CaseKind.complaint)
    key = world.view(case).waiting_key
    assert key is not None
    with Session(world.engine) as session:
        before = event_count(session, case.id or 0)

    refusing = threading.Thread(target=lambda: world.decide(case, "chen.jing", code="000000", decision="uphold"))
    reader = create_db_engine(str(world.engine.url.render_as_string(hide_password=False)))

    def the_run_refuses(*_: Any) -> None:
        if not refusing.is_alive() and refusing.ident is None:
            refusing.start()
            refusing.join(timeout=3)  # on SQLite it waits for the reader's write lock: the reader goes on

    event.listen(reader, "after_cursor_execute", the_run_refuses)
    try:
        with Session(reader) as session:
            first = outcome(session, case.id or 0, key=key, before=before)
    finally:
        event.remove(reader, "after_cursor_execute", the_run_refuses)
        reader.dispose()
    refusing.join()

    assert refusing.ident is not None
    assert first is None or first.refused is not None, f"a refused answer read as taken up: {first}"
    if world.engine.dialect.name == "postgresql":  # no lock held the refusal back: the reader met it mid-read
        assert first is not None and "approval code" in (first.refused or ""), first
    with Session(world.engine) as session:
        after = outcome(session, case.id or 0, key=key, before=before)
    assert after is not None and after.events == ("decision_refused",), after
    assert "approval code" in (after.refused or ""), after
    assert after.status == world.case(case).status


def test_an_applied_answer_reads_as_taken_up_with_its_events_and_the_new_status(world: DeskWorld) -> None:
    case = world.file(CaseKind.inquiry)
    key = world.view(case).waiting_key
    assert key is not None
    with Session(world.engine) as session:
        before = event_count(session, case.id or 0)
        assert outcome(session, case.id or 0, key=key, before=before) is None  # not answered yet
    handler = world.step(case, "answer")
    assert handler is not None
    result = world.decide(case, _username(world, handler.assignee_id), answer="Covered up to 20 sessions.")
    assert result.applied, result
    with Session(world.engine) as session:
        done = outcome(session, case.id or 0, key=key, before=before)
    assert done is not None and done.refused is None, done
    assert done.events and "decision_refused" not in done.events
    assert done.status == world.case(case).status


def _username(world: DeskWorld, staff_id: int | None) -> str:
    from models.tables import Staff

    with Session(world.engine) as session:
        member = session.get(Staff, staff_id)
        assert member is not None
        return member.username

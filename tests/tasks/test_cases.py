"""Filing and moving cases on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, select

from claimflow.db import session_scope
from models.enums import CaseKind, Channel
from models.errors import IllegalTransition, MissingTransitionData, NotFound
from models.tables import Case, CaseCreate, Customer, CustomerCreate, Event
from tasks.audit import verify_cases
from tasks.cases import apply_transition, events_of, file_case, get_case, list_cases

NOW = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)


def _claim(**overrides: object) -> CaseCreate:
    values: dict[str, object] = {
        "kind": CaseKind.claim,
        "channel": Channel.phone,
        "product_line": "motor",
        "policy_number": "P-778899",
        "amount_claimed": Decimal("12800.50"),
        "customer": CustomerCreate(name="张三丰", phone="13812345678", id_number="110101195003021234"),
    }
    values.update(overrides)
    return CaseCreate(**values)  # type: ignore[arg-type]


def _file(engine: Engine, data: CaseCreate | None = None, now: datetime = NOW) -> Case:
    with session_scope(engine) as session:
        return file_case(session, data=data or _claim(), actor="li.wei", now=now)


def test_filing_numbers_the_case_per_kind_and_year(engine: Engine) -> None:
    first, second = _file(engine), _file(engine)
    complaint = _file(engine, _claim(kind=CaseKind.complaint))
    next_year = _file(engine, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert [first.number, second.number] == ["CLM-2026-000001", "CLM-2026-000002"]
    assert complaint.number == "CMP-2026-000001"
    assert next_year.number == "CLM-2027-000001"


def test_a_filed_case_keeps_its_customer_apart_and_has_its_first_event(engine: Engine) -> None:
    case = _file(engine)
    with Session(engine) as session:
        stored = get_case(session, case.number.lower())
        customer = session.get(Customer, stored.customer_id)
        events = events_of(session, stored)
    assert stored.status == "received"
    assert stored.amount_claimed == Decimal("12800.50")
    assert stored.opened_at == NOW and stored.opened_at.tzinfo is not None
    assert customer is not None and customer.name == "张三丰"
    assert [e.type for e in events] == ["filed"]
    assert events[0].data["kind"] == "claim"
    assert "张三丰" not in str(events[0].data) and "13812345678" not in str(events[0].data)


def test_a_complaint_refers_to_the_claim_it_is_about(engine: Engine) -> None:
    claim = _file(engine)
    complaint = _file(engine, _claim(kind=CaseKind.complaint, related_case_number=claim.number))
    assert complaint.related_case_id == claim.id


def test_an_unknown_related_case_files_nothing(engine: Engine) -> None:
    with pytest.raises(NotFound, match="CLM-2026-999999"):
        _file(engine, _claim(related_case_number="CLM-2026-999999"))
    with Session(engine) as session:
        assert session.exec(select(Case)).all() == []
        assert session.exec(select(Customer)).all() == []


def test_a_claim_walks_its_whole_life_with_every_event_in_order(engine: Engine) -> None:
    number = _file(engine).number
    moves = [
        ("start_review", {}),
        ("request_documents", {"documents": ["police report", "repair invoice"]}),
        ("documents_received", {}),
        ("approve", {"amount": "12000.00"}),
        ("record_payment", {"amount": "12000.00"}),
        ("request_feedback", {}),
        ("close", {}),
    ]
    for minute, (action, data) in enumerate(moves, start=1):
        with session_scope(engine) as session:
            apply_transition(
                session,
                number=number,
                action=action,
                actor="li.wei",
                now=NOW + timedelta(minutes=minute),
                data=data,
            )
    with Session(engine) as session:
        case = get_case(session, number)
        events = events_of(session, case)
        report = verify_cases(session)
    assert case.status == "closed" and case.outcome == "approved"
    assert case.closed_at == NOW + timedelta(minutes=7)
    assert [e.type for e in events] == ["filed"] + [m[0] for m in moves]
    assert [e.sequence for e in events] == list(range(1, 9))
    assert report.ok and report.events_checked == 8


def test_an_illegal_move_changes_nothing(engine: Engine) -> None:
    number = _file(engine).number
    allowed = "allowed from 'received': start_review, withdraw"
    with pytest.raises(IllegalTransition, match=allowed), session_scope(engine) as session:
        apply_transition(session, number=number, action="record_payment", actor="li.wei", now=NOW, data={"amount": "1"})
    with pytest.raises(MissingTransitionData), session_scope(engine) as session:
        apply_transition(session, number=number, action="start_review", actor="li.wei", now=NOW)
        apply_transition(session, number=number, action="reject", actor="li.wei", now=NOW, data={"reasons": "excluded"})
    with Session(engine) as session:
        case = get_case(session, number)
        assert case.status == "received"  # the start_review in the failed transaction was rolled back too
        assert len(events_of(session, case)) == 1


def test_closing_sets_the_closed_time_and_reopening_clears_it(engine: Engine) -> None:
    number = _file(engine).number
    later = NOW + timedelta(days=3)
    with session_scope(engine) as session:
        apply_transition(session, number=number, action="withdraw", actor="a", now=NOW)
        apply_transition(session, number=number, action="close", actor="a", now=NOW)
    with Session(engine) as session:
        assert get_case(session, number).closed_at == NOW
    with session_scope(engine) as session:
        apply_transition(session, number=number, action="reopen", actor="a", now=later, data={"reason": "new"})
    with Session(engine) as session:
        case = get_case(session, number)
    assert (case.status, case.closed_at, case.updated_at) == ("reopened", None, later)


def test_the_event_log_refuses_update_and_delete_in_the_database(engine: Engine) -> None:
    _file(engine)
    for statement in ("UPDATE event SET actor = 'intruder'", "DELETE FROM event"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    with Session(engine) as session:
        assert session.exec(select(Event)).one().actor == "li.wei"


def test_a_row_tampered_behind_the_triggers_back_is_found(engine: Engine) -> None:
    number = _file(engine).number
    with session_scope(engine) as session:
        apply_transition(session, number=number, action="start_review", actor="li.wei", now=NOW)
        apply_transition(session, number=number, action="withdraw", actor="li.wei", now=NOW)
    _file(engine)  # an untouched second case
    with engine.begin() as connection:  # what a database administrator could do
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE event DISABLE TRIGGER event_append_only"))
        else:
            connection.execute(text("DROP TRIGGER event_append_only_update"))
        connection.execute(
            text(
                "UPDATE event SET actor = 'someone.else' WHERE sequence = 2 AND case_id = "
                '(SELECT id FROM "case" WHERE number = :n)'
            ),
            {"n": number},
        )
    with Session(engine) as session:
        report = verify_cases(session)
    assert not report.ok and report.cases_checked == 2
    assert [str(b) for b in report.breaks] == [f"{number} event #2: content does not match its hash (altered)"]


def test_two_events_cannot_share_a_sequence(engine: Engine) -> None:
    case = _file(engine)
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(
            Event(
                case_id=case.id,
                sequence=1,
                at=NOW,
                actor="x",
                type="forged",
                data={},
                prev_hash="0" * 64,
                hash="0" * 64,
            )
        )


def test_list_filters_by_status_and_kind(engine: Engine) -> None:
    a = _file(engine).number
    _file(engine, _claim(kind=CaseKind.complaint), now=NOW + timedelta(seconds=1))
    with session_scope(engine) as session:
        apply_transition(session, number=a, action="start_review", actor="x", now=NOW)
    with Session(engine) as session:
        assert [c.number for c in list_cases(session, status=["under_review"])] == [a]
        assert [c.number for c in list_cases(session, kind=CaseKind.complaint)] == ["CMP-2026-000001"]
        assert [c.kind for c in list_cases(session)] == ["complaint", "claim"]


def test_naive_times_never_reach_the_database(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        _file(engine, now=datetime(2026, 1, 1))

"""Filing and moving cases on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, select

from claimflow.db import insert_rows, session_scope, update_rows
from models.enums import CaseKind, Channel
from models.errors import IllegalTransition, MissingTransitionData, NotFound
from models.tables import Case, CaseCreate, Customer, CustomerCreate, Event, Outbox
from tasks.audit import verify_cases
from tasks.cases import (
    NewEvent,
    append_event,
    append_events,
    apply_transition,
    chain_tips,
    events_of,
    file_case,
    get_case,
    list_cases,
)

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


# --- many events at once ------------------------------------------------------------------------------------


def table_rows(session: Session, *tables: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of these tables as the database holds it, in id order: what two ways of writing are compared on."""
    return {t: [tuple(row) for row in session.execute(text(f'SELECT * FROM "{t}" ORDER BY id'))] for t in tables}


def rewind_ids(session: Session, *tables: str) -> None:
    """Let new rows take the ids a rolled-back transaction had taken (SQLite does so by itself; PostgreSQL's
    sequences do not go back), so that a second way of writing the same rows can be compared id for id."""
    if session.get_bind().dialect.name == "postgresql":
        for t in tables:
            session.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('\"{t}\"', 'id'), coalesce(max(id), 0) + 1, false) FROM \"{t}\""
                )
            )


def _batch(first: Case, second: Case) -> list[NewEvent]:
    """Events for two cases, interleaved, with values that are stored as text (decimal, time)."""
    return [
        NewEvent(first, "li.wei", "note", {"n": 1, "amount": Decimal("12.50")}),
        NewEvent(second, "sla-watch", "reminder", {"step": "review", "percent": 50, "due": NOW}),
        NewEvent(first, "li.wei", "note", {"n": 2, "documents": ["发票", "诊断证明"]}),
        NewEvent(first, "zhao.min", "escalated", {"level": 1, "due": None}),
    ]


def test_many_events_are_chained_per_case_in_the_order_given(engine: Engine) -> None:
    first, second = _file(engine), _file(engine)
    later = NOW + timedelta(hours=1)
    with session_scope(engine) as session:
        links = append_events(session, _batch(first, second), now=later)
    assert [(link.sequence, link.data.get("n")) for link in links] == [(2, 1), (2, None), (3, 2), (4, None)]
    assert links[2].prev_hash == links[0].hash and links[3].prev_hash == links[2].hash
    with Session(engine) as session:
        report = verify_cases(session)
        events = events_of(session, first)
        tips = chain_tips(session, [first.id, second.id, 999])
    assert report.ok and report.events_checked == 6
    assert [e.type for e in events] == ["filed", "note", "note", "escalated"]
    assert events[1].data == {"n": 1, "amount": "12.50"} and events[1].at == later
    assert (tips[first.id].sequence, tips[first.id].hash) == (4, events[-1].hash)
    assert tips[second.id].sequence == 2 and 999 not in tips


def test_many_events_at_once_write_what_one_at_a_time_writes(engine: Engine) -> None:
    first, second = _file(engine), _file(engine)
    later = NOW + timedelta(hours=1)
    batch = _batch(first, second)
    with Session(engine) as session:
        one_by_one = [
            append_event(session, case=e.case, actor=e.actor, type=e.type, data=e.data, now=later) for e in batch
        ]
        expected = table_rows(session, "event")
        session.rollback()
        rewind_ids(session, "event")
    with session_scope(engine) as session:
        links = append_events(session, batch, now=later)
    with Session(engine) as session:
        assert table_rows(session, "event") == expected
    assert [(e.sequence, e.data, e.prev_hash, e.hash) for e in one_by_one] == [
        (link.sequence, link.data, link.prev_hash, link.hash) for link in links
    ]


def test_no_events_write_nothing(engine: Engine) -> None:
    _file(engine)
    with session_scope(engine) as session:
        assert append_events(session, [], now=NOW) == []
    with Session(engine) as session:
        assert len(session.exec(select(Event)).all()) == 1


# --- many rows in one statement ---------------------------------------------------------------------------------

OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
SHANGHAI = timezone(timedelta(hours=8))


def _message_row(key: str, **values: Any) -> dict[str, Any]:
    row = {"case_id": None, "channel": "staff", "recipient": "role:supervisor", "template": "staff_reminder",
           "language": "zh-CN", "context": {"note": "审核", "n": 1.5, "list": [1, None]}, "status": "pending",
           "attempts": 0, "next_attempt_at": NOW.astimezone(SHANGHAI), "idempotency_key": key, "created_at": NOW}  # fmt: skip
    return {**row, **values}


def test_rows_are_inserted_in_the_order_given_with_their_values_as_one_by_one(engine: Engine) -> None:
    rows = [_message_row(f"k{i}", attempts=i, next_attempt_at=None if i == 2 else NOW) for i in range(4)]
    rows[0]["next_attempt_at"] = NOW.astimezone(SHANGHAI)
    with session_scope(engine) as session:
        written = insert_rows(session, OUTBOX, rows, returning=(OUTBOX.c.id, OUTBOX.c.idempotency_key))
    assert [key for _, key in written] == ["k0", "k1", "k2", "k3"]
    assert [i for i, _ in written] == sorted(i for i, _ in written)
    with Session(engine) as session:
        stored = list(session.exec(select(Outbox).order_by(Outbox.id)))
    assert [(o.idempotency_key, o.attempts) for o in stored] == [("k0", 0), ("k1", 1), ("k2", 2), ("k3", 3)]
    assert stored[0].next_attempt_at == NOW and stored[0].next_attempt_at.tzinfo is not None
    assert stored[2].next_attempt_at is None
    assert stored[3].context == {"note": "审核", "n": 1.5, "list": [1, None]}


def test_rows_whose_key_is_taken_are_skipped(engine: Engine) -> None:
    with session_scope(engine) as session:
        insert_rows(session, OUTBOX, [_message_row("taken")])
    with session_scope(engine) as session:
        written = insert_rows(
            session, OUTBOX, [_message_row("taken", attempts=9), _message_row("free")],
            returning=(OUTBOX.c.idempotency_key,), skip_conflicts_on=("idempotency_key",),
        )  # fmt: skip
        assert insert_rows(session, OUTBOX, []) == []
    assert written == [("free",)]
    with Session(engine) as session:
        assert session.exec(select(Outbox.attempts).where(Outbox.idempotency_key == "taken")).one() == 0


def test_a_naive_time_is_refused_in_a_batch_as_in_one_row(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), session_scope(engine) as session:
        insert_rows(session, OUTBOX, [_message_row("a"), _message_row("b", created_at=datetime(2026, 1, 1))])
    with Session(engine) as session:
        assert session.exec(select(Outbox)).all() == []


def test_rows_are_updated_each_with_its_own_values(engine: Engine) -> None:
    with session_scope(engine) as session:
        ids = [i for (i,) in insert_rows(session, OUTBOX, [_message_row(f"k{i}") for i in range(3)],
                                         returning=(OUTBOX.c.id,))]  # fmt: skip
    later = (NOW + timedelta(hours=1)).astimezone(SHANGHAI)
    with session_scope(engine) as session:
        update_rows(session, OUTBOX, [{"id": ids[0], "attempts": 5, "next_attempt_at": later},
                                      {"id": ids[2], "attempts": 7, "next_attempt_at": None}])  # fmt: skip
        update_rows(session, OUTBOX, [])
    with Session(engine) as session:
        stored = {o.id: (o.attempts, o.next_attempt_at) for o in session.exec(select(Outbox))}
    assert stored == {ids[0]: (5, later), ids[1]: (0, NOW), ids[2]: (7, None)}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite has no TRUNCATE
def test_the_event_log_refuses_truncate(engine: Engine) -> None:
    """TRUNCATE fires no row trigger: without a statement trigger it emptied the log and nothing noticed."""
    _file(engine)
    with pytest.raises(DBAPIError, match="append-only: TRUNCATE refused"), engine.begin() as connection:
        connection.execute(text("TRUNCATE event CASCADE"))
    with Session(engine) as session:
        assert session.exec(select(Event)).one().actor == "li.wei"

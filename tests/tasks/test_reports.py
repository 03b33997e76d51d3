"""The quality reports' SQL, on SQLite and PostgreSQL: a small desk written row by row, figures checked by hand.

The week reported is Monday 2 March to Sunday 8 March 2026 in Shanghai. Saturday 28 February 2026 is one of
China's make-up working days (Spring Festival), which the claim filed on Thursday 26 February crosses.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert
from sqlmodel import Session, select

from models.calendar import region_calendar
from models.enums import CaseKind
from models.reports import Percent, ReportPeriod, percentile
from models.tables import Case, Customer, Department, Escalation, Event, Feedback, Staff, Step
from tasks.reports import (
    ReportScope,
    backlog,
    breaches,
    complaint_causes,
    compliance_by_week,
    cycle_by_week,
    cycle_times,
    escalations,
    handler_figures,
    report_tables,
    satisfaction,
    scorecard,
    sla_compliance,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEK = ReportPeriod(date(2026, 3, 2), date(2026, 3, 8), "Asia/Shanghai")
CN = region_calendar("CN", unknown_years="weekends", timezone="Asia/Shanghai")
LATER = datetime(2026, 4, 1, tzinfo=UTC)


def at(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A Shanghai wall-clock time in 2026."""
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


def scope(now: datetime = LATER, period: ReportPeriod = WEEK) -> ReportScope:
    return ReportScope(period, CN, now)


class Desk:
    """Rows written directly (the workflow's own tests cover how they come about)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.sequence = itertools.count(1)
        self.numbers = itertools.count(1)
        session.add_all([Department(code="claims", name="Claims"), Department(code="complaints", name="Complaints")])
        session.flush()
        self.departments = {d.code: d.id for d in session.exec(select(Department))}
        for username, department in (("li", "claims"), ("wang", "claims"), ("zhao", "complaints")):
            session.add(
                Staff(username=username, name=username, role="handler", department_id=self.departments[department])
            )
        session.flush()
        self.staff = {s.username: s.id for s in session.exec(select(Staff))}
        self.customer = Customer(name="张三", created_at=at(1, 1))
        session.add(self.customer)
        session.flush()

    def case(self, kind: str, handler: str, opened: datetime, **fields: Any) -> Case:
        department = fields.pop("department", "complaints" if kind == "complaint" else "claims")
        case = Case(
            kind=CaseKind(kind), channel="email", number=f"X-{next(self.numbers)}", status=fields.pop("status", "received"),
            customer_id=self.customer.id, handler_id=self.staff[handler], department_id=self.departments[department],
            opened_at=opened, updated_at=opened, **fields,
        )  # fmt: skip
        self.session.add(case)
        self.session.flush()
        return case

    def step(self, case: Case, name: str, *, due: datetime | None, done: datetime | None = None, **fields: Any) -> Step:
        step = Step(
            case_id=case.id, name=name, started_at=fields.pop("started", case.opened_at), due_at=due, completed_at=done,
            status=fields.pop("status", "done" if done else "open"), assignee_id=fields.pop("assignee", case.handler_id),
            **fields,
        )  # fmt: skip
        self.session.add(step)
        self.session.flush()
        return step

    def event(self, case: Case, type: str, when: datetime) -> None:
        self.session.execute(
            insert(Event).values(
                case_id=case.id, sequence=next(self.sequence), at=when, actor="test", type=type, data={},
                prev_hash="0" * 64, hash="1" * 64,
            )
        )  # fmt: skip

    def feedback(self, case: Case, when: datetime, score: int | None, solved: bool | None) -> None:
        self.session.add(Feedback(case_id=case.id, score=score, solved=solved, channel="web", received_at=when))


@pytest.fixture
def desk(engine: Engine) -> Any:
    with Session(engine) as session:
        d = Desk(session)
        # A: claim filed Monday, reviewed in time, paid Friday (4 working days)
        a = d.case("claim", "li", at(3, 2, 10), product_line="motor", status="paid", amount_claimed=Decimal(100))
        d.step(a, "review", due=at(3, 5), done=at(3, 4, 11), outcome="approved")
        d.step(a, "payment", due=at(3, 12), done=at(3, 6, 15), outcome="paid")
        d.event(a, "record_payment", at(3, 6, 15))
        # B: claim filed the Thursday before, reviewed a day late, paid Saturday 7 March (7 working days,
        # Saturday 28 February being a make-up working day), reopened on Thursday
        b = d.case("claim", "li", at(2, 26, 16), product_line="health", status="reopened")
        d.step(b, "review", due=at(3, 3), done=at(3, 4, 9), outcome="approved")
        d.step(b, "investigation", due=at(3, 1), done=at(3, 3), outcome="approved")  # breached last week
        d.event(b, "record_payment", at(3, 7, 10))
        d.event(b, "reopen", at(3, 5, 9))
        # C: claim whose review is past due and still open; escalated, the supervisor extended
        c = d.case("claim", "wang", at(3, 3, 9), product_line="motor", status="under_review")
        c_review = d.step(c, "review", due=at(3, 6))
        d.step(c, "fix_wording", due=None, started=at(3, 4, 10))
        d.session.add(Escalation(step_id=c_review.id, case_id=c.id, level=1, role="supervisor", reason="breach",
                                 raised_at=at(3, 6), decision="extend", decided_at=at(3, 6, 4)))  # fmt: skip
        d.session.add(
            Escalation(
                step_id=c_review.id,
                case_id=c.id,
                level=2,
                role="manager",
                reason="breach",
                raised_at=at(3, 9),
                decision=None,
            )
        )  # fmt: skip  (next week)
        # D: claim not due yet, and a paused step past due: neither is measured
        e = d.case("claim", "wang", at(3, 5, 9), status="awaiting_documents")
        d.step(e, "review", due=at(3, 20))
        d.step(e, "investigation", due=at(3, 4), status="paused")
        # E: complaint about claim A, upheld on Friday (2 working days)
        complaint = d.case("complaint", "zhao", at(3, 4, 9), related_case_id=a.id, status="resolved", outcome="upheld")
        d.step(complaint, "resolution", due=at(3, 18), done=at(3, 6, 9), outcome="upheld")
        d.event(complaint, "uphold", at(3, 6, 9))
        # F: inquiry answered at the very instant it was due (met)
        f = d.case("inquiry", "wang", at(3, 2, 9), status="closed", closed_at=at(3, 4))
        d.step(f, "answer", due=at(3, 4), done=at(3, 4), outcome="answered")
        d.event(f, "answer", at(3, 4))
        # old case, closed before the week: not in the backlog
        old = d.case("claim", "li", at(1, 5, 9), status="closed", closed_at=at(2, 2))
        d.event(old, "record_payment", at(1, 20))
        # survey answers
        d.feedback(a, at(3, 7, 12), 5, True)
        d.feedback(b, at(3, 8, 20), 2, False)
        d.feedback(c, at(3, 8, 21), None, None)
        d.feedback(a, at(3, 9, 1), 1, False)  # next week
        d.session.commit()
    with Session(engine) as reader:
        yield reader


def rows(table: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in table.rows]


def test_sla_by_kind_counts_each_step_once_where_its_verdict_falls(desk: Session) -> None:
    assert rows(sla_compliance(desk, scope=scope(), by="kind")) == [
        # claim: A.review met, A.payment met, B.review late, C.review open past due (D not due, paused skipped)
        ("claim", 4, 2, 2, 1, Percent(0.5)),
        ("complaint", 1, 1, 0, 0, Percent(1.0)),
        ("inquiry", 1, 1, 0, 0, Percent(1.0)),
    ]


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        pytest.param("handler", [("li", 3, 2, 1, 0, 2 / 3), ("wang", 2, 1, 1, 1, 0.5), ("zhao", 1, 1, 0, 0, 1.0)],
                     id="by-assignee"),
        pytest.param("step", [("answer", 1, 1, 0, 0, 1.0), ("payment", 1, 1, 0, 0, 1.0), ("resolution", 1, 1, 0, 0, 1.0),
                              ("review", 3, 1, 2, 1, 1 / 3)], id="by-step-name"),
        pytest.param("department", [("claims", 5, 3, 2, 1, 0.6), ("complaints", 1, 1, 0, 0, 1.0)],
                     id="by-case-department"),
    ],
)  # fmt: skip
def test_sla_by_dimension(desk: Session, by: Any, expected: list[tuple[Any, ...]]) -> None:
    got = rows(sla_compliance(desk, scope=scope(), by=by))
    assert [r[:5] for r in got] == [e[:5] for e in expected]
    assert [r[5] for r in got] == pytest.approx([e[5] for e in expected])


def test_a_step_not_yet_due_at_the_time_of_the_report_is_not_measured(desk: Session) -> None:
    # on Thursday 5 March at noon C's review (due Friday 00:00) has not breached yet; B's has
    midweek = scope(now=at(3, 5, 12).astimezone(UTC))
    assert rows(sla_compliance(desk, scope=midweek, by="kind"))[0][:5] == ("claim", 2, 1, 1, 0)


def test_breaches_and_escalations_with_outcomes(desk: Session) -> None:
    assert rows(breaches(desk, scope=scope())) == [
        ("claim", "review", "approved", 1),
        ("claim", "review", "still open", 1),
    ]
    assert rows(escalations(desk, scope=scope())) == [(1, "extend", 1, pytest.approx(4.0))]


def test_cycle_times_in_working_days_with_p90(desk: Session) -> None:
    table = cycle_times(desk, scope=scope())
    # claims: A 4, B 7 (over the make-up Saturday); p90 of [4, 7] = 4 + 0.9 * 3
    assert rows(table) == [
        ("claim", 2, 5.5, pytest.approx(6.7)),
        ("complaint", 1, 2.0, 2.0),
        ("inquiry", 1, 2.0, 2.0),
    ]
    assert percentile([4, 7]) == pytest.approx(6.7)


def test_cycle_and_compliance_by_week(desk: Session) -> None:
    four_weeks = ReportPeriod(date(2026, 2, 16), date(2026, 3, 15), "Asia/Shanghai")
    assert cycle_by_week(desk, scope=scope(period=four_weeks)) == [(date(2026, 3, 2), 2, 5.5, pytest.approx(6.7))]
    weekly = compliance_by_week(desk, scope=scope(period=four_weeks))
    # B's investigation breached on 1 March (the week of 23 February)
    assert weekly == [(date(2026, 2, 23), 1, 0), (date(2026, 3, 2), 6, 4)]


def test_backlog_by_age_at_the_end_of_the_period(desk: Session) -> None:
    # open at Sunday 8 March's end: B (reopened, filed 26 Feb: 7 working days), C (filed 3 Mar: 3),
    # D (5 Mar: 1), complaint (4 Mar: 2); A is paid but not closed (4); F and the old claim are closed
    assert rows(backlog(desk, scope=scope())) == [
        ("claim", "0-2", 1),
        ("claim", "3-5", 2),
        ("claim", "6-10", 1),
        ("complaint", "0-2", 1),
    ]


def test_satisfaction_by_handler_and_product_line(desk: Session) -> None:
    assert rows(satisfaction(desk, scope=scope(), by="handler")) == [
        ("li", 2, 2, 3.5, Percent(0.5), Percent(0.5)),
        ("wang", 1, 0, None, None, None),
    ]
    assert rows(satisfaction(desk, scope=scope(), by="product_line")) == [
        ("health", 1, 1, 2.0, Percent(0.0), Percent(0.0)),
        ("motor", 2, 1, 5.0, Percent(1.0), Percent(1.0)),
    ]


def test_complaint_causes_from_the_related_case(desk: Session) -> None:
    assert rows(complaint_causes(desk, scope=scope())) == [("motor", "claims", 1, 1, 0, 0)]


def test_scorecard_weighs_compliance_satisfaction_reopens_and_wording(desk: Session) -> None:
    figures = {h.handler: h for h in handler_figures(desk, scope=scope())}
    li, wang = figures["li"], figures["wang"]
    assert (li.steps_measured, li.steps_met, li.cases, li.feedback, li.score_sum, li.reopened) == (3, 2, 2, 2, 7, 1)
    assert (wang.steps_measured, wang.steps_met, wang.cases, wang.wording_failures) == (2, 1, 2, 1)
    table = scorecard(desk, scope=scope())
    by_handler = {r[0]: r for r in rows(table)}
    # li: 0.4 * 2/3 + 0.3 * (3.5 - 1) / 4 + 0.15 * (1 - 1/2 reopened) + 0.15 * (1 - 0/2 failures) = 0.679
    assert by_handler["li"][1] == pytest.approx(67.9)
    # wang: no survey score, so weights 0.4, 0.15, 0.15 scaled to 1: (0.4*0.5 + 0.15*1 + 0.15*(1 - 1/2)) / 0.7
    assert by_handler["wang"][1] == pytest.approx(60.7)
    assert [r[0] for r in rows(table)] == ["zhao", "li", "wang"]  # best first


def test_every_table_of_the_report_runs(desk: Session) -> None:
    tables = [make() for _, make in report_tables(desk, scope=scope())]
    assert len(tables) == 12
    assert all(t.records() is not None for t in tables)


def test_an_empty_desk_gives_empty_tables(engine: Engine) -> None:
    with Session(engine) as session:
        for _, make in report_tables(session, scope=scope()):
            assert make().rows == ()


def test_the_real_workflow_feeds_the_report(world: Any) -> None:
    """A claim filed through intake, reviewed, approved and paid by its handler appears with its cycle."""
    claim = world.file(CaseKind.claim, product_line="motor", amount_claimed=Decimal("800"))
    handler = world.case(claim).handler_id
    with Session(world.engine) as session:
        username = session.get(Staff, handler).username
    world.now += timedelta(days=1)
    assert world.decide(claim, username, decision="approve", amount="800").applied
    world.now += timedelta(days=1)
    assert world.decide(claim, username, amount="800", reference="T-1").applied
    period = ReportPeriod(date(2026, 3, 2), date(2026, 3, 8), "Asia/Shanghai")
    with Session(world.engine) as session:
        cycle = rows(cycle_times(session, scope=ReportScope(period, CN, LATER)))
        sla = {r[0]: r for r in rows(sla_compliance(session, scope=ReportScope(period, CN, LATER), by="step"))}
    assert cycle == [("claim", 1, 2.0, 2.0)]  # filed Monday, paid Wednesday
    assert sla["review"][1:3] == (1, 1)

"""The quality reports' numbers, aggregated in the database (PostgreSQL and SQLite, one SQLAlchemy Core text).

Every function takes the session first, then the period and the instant the figures are taken at. Nothing
loads cases into Python: each answer is one aggregate query (grouped rows come back, never cases); the
working-day arithmetic joins a small calendar of the report's days (``workday_cte``: one row per local
day with a running count of working days, made from ``models.calendar`` and sent as a ``VALUES`` list).

**SLA compliance** is measured on steps that have a deadline (``due_at``), once per step, in the period in
which its verdict falls:

- *met*: completed on or before ``due_at`` (``completed_at <= due_at``); the verdict falls at completion;
- *breached*: not completed by ``due_at``, whether it was completed late or is still open; the verdict falls
  at ``due_at``. Open steps past due therefore count as breached (``still open`` counts them apart).

Steps that are paused (the clock stands still while the customer owes documents; the deadline is recomputed
when it runs again) or cancelled are not measured, nor steps whose deadline has not come by the time the
figures are taken (``as_of``). Compliance is ``met / measured``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Date,
    Integer,
    Table,
    and_,
    case,
    column,
    func,
    literal,
    not_,
    or_,
    select,
    values,
)
from sqlalchemy import (
    cast as sql_cast,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CTE
from sqlmodel import Session

from models.calendar import Calendar
from models.reports import (
    AGE_BUCKETS,
    P90_PERMILLE,
    HandlerFigures,
    ReportPeriod,
    ReportTable,
    ScorecardWeights,
    interpolate,
    percent,
    ratio,
    score_handler,
    utc_offsets,
    workday_rows,
)
from models.tables import Case, Department, Escalation, Event, Feedback, Staff, Step
from models.types import UTCDateTime


def _t(model: Any) -> Table:
    return cast(Table, model.__table__)


CASE, STEP, EVENT, STAFF, DEPARTMENT = _t(Case), _t(Step), _t(Event), _t(Staff), _t(Department)
ESCALATION, FEEDBACK = _t(Escalation), _t(Feedback)

SlaDimension = Literal["kind", "step", "handler", "department"]
SatisfactionDimension = Literal["handler", "product_line"]

END_EVENTS: dict[str, tuple[str, ...]] = {
    "claim": ("record_payment",),
    "complaint": ("uphold", "partly_uphold", "not_uphold"),
    "inquiry": ("answer",),
}
"""Where a case's cycle ends: a claim at its payment, a complaint at its decision, an inquiry at its answer."""

NONE = "(none)"


@dataclass(frozen=True)
class ReportScope:
    """What every report query needs besides the session: the period, the calendar and ``as_of``."""

    period: ReportPeriod
    calendar: Calendar
    now: datetime

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        return self.period.bounds()

    @property
    def as_of(self) -> datetime:
        return self.period.as_of(self.now)


# --- local dates and working days in SQL ------------------------------------------------------------------


def local_date(session: Session, moment: ColumnElement[Any], scope: ReportScope, first: datetime) -> Any:
    """The office-local date of a stored UTC instant, as SQL.

    PostgreSQL converts with its own time-zone data; SQLite (which has none) shifts the stored UTC text by
    the offset in force at that instant, taken from ``utc_offsets`` for the span the report covers.
    """
    timezone = scope.period.timezone
    if session.get_bind().dialect.name == "postgresql":
        return sql_cast(func.timezone(timezone, moment), Date)
    offsets = utc_offsets(timezone, first - timedelta(days=1), scope.bounds[1] + timedelta(days=1))
    if len(offsets) == 1:
        modifier: Any = literal(f"{offsets[0][1]:+d} seconds")
    else:
        whens = [(moment < literal(start, UTCDateTime), f"{before:+d} seconds") for (start, _), (_, before) in
                 zip(offsets[1:], offsets[:-1], strict=True)]  # fmt: skip
        modifier = case(*whens, else_=f"{offsets[-1][1]:+d} seconds")
    return func.date(moment, modifier)


def _first_opened(session: Session, scope: ReportScope) -> datetime:
    """When the oldest case was filed: where the report's working-day calendar has to start."""
    first = session.execute(select(func.min(CASE.c.opened_at))).scalar_one_or_none()
    start = scope.bounds[0] - timedelta(days=7 * 60)
    return min(first, start) if first is not None else start


def workday_cte(session: Session, scope: ReportScope, *, first: datetime | None = None) -> tuple[CTE, datetime]:
    """The report's working-day calendar as a ``VALUES`` CTE ``workday(day, worked, week)``.

    It runs from the local date of ``first`` (default: the oldest case's filing) to the period's last day,
    so that every date the report joins is in it.
    """
    first = first or _first_opened(session, scope)
    zone_first = first.astimezone(ZoneInfo(scope.period.timezone)).date() - timedelta(days=1)
    rows = workday_rows(scope.calendar, zone_first, scope.period.end + timedelta(days=1))
    table = values(column("day", Date), column("worked", Integer), column("week", Date), name="workday").data(
        [(r.day, r.worked, r.week) for r in rows]
    )
    return table.cte("workday"), first


# --- SLA compliance ----------------------------------------------------------------------------------------


def _verdict_at() -> ColumnElement[Any]:
    s = STEP.c
    return case((and_(s.completed_at.is_not(None), s.completed_at <= s.due_at), s.completed_at), else_=s.due_at)


def _measured(scope: ReportScope) -> ColumnElement[bool]:
    s = STEP.c
    start, end = scope.bounds
    verdict = _verdict_at()
    return and_(
        s.due_at.is_not(None),
        s.status.not_in(("paused", "cancelled")),
        verdict >= start,
        verdict < end,
        verdict <= scope.as_of,
    )


def _met() -> ColumnElement[bool]:
    s = STEP.c
    return and_(s.completed_at.is_not(None), s.completed_at <= s.due_at)


def _count_if(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def sla_compliance(session: Session, *, scope: ReportScope, by: SlaDimension) -> ReportTable:
    """SLA compliance per case kind, step, handler (the step's assignee) or department (the case's).

    Columns: measured steps, met, breached, of which still open, compliance (met / measured). See the module
    docstring for which steps are measured in a period.
    """
    s, c = STEP.c, CASE.c
    query = select().select_from(STEP.join(CASE, c.id == s.case_id))
    if by == "kind":
        group: Any = c.kind
    elif by == "step":
        group = s.name
    elif by == "handler":
        query = query.outerjoin(STAFF, STAFF.c.id == s.assignee_id)
        group = func.coalesce(STAFF.c.username, "(unassigned)")
    elif by == "department":
        query = query.outerjoin(DEPARTMENT, DEPARTMENT.c.id == c.department_id)
        group = func.coalesce(DEPARTMENT.c.code, NONE)
    else:
        raise ValueError(by)
    query = (
        query.add_columns(
            group.label("group"),
            func.count().label("measured"),
            _count_if(_met()).label("met"),
            _count_if(s.completed_at.is_(None)).label("still_open"),
        )
        .where(_measured(scope))
        .group_by(group)
        .order_by(group)
    )
    rows = [
        (g, n, met, n - met, still_open, percent(ratio(met, n)))
        for g, n, met, still_open in session.execute(query).all()
    ]
    return ReportTable(
        f"sla-by-{by}",
        f"SLA compliance by {by.replace('_', ' ')}",
        (by, "measured", "met", "breached", "still open", "compliance"),
        tuple(rows),
        "A step is measured once, when its verdict falls: met at completion on or before its due time; "
        "breached at its due time (completed late or still open). Paused steps are not measured.",
    )


def compliance_by_week(session: Session, *, scope: ReportScope) -> list[tuple[Any, int, int]]:
    """(week's Monday, measured, met) per ISO week of the period, for the trend chart."""
    workday, first = workday_cte(session, scope, first=scope.bounds[0])
    day = local_date(session, _verdict_at(), scope, first)
    query = (
        select(workday.c.week, func.count(), _count_if(_met()))
        .select_from(STEP.join(workday, workday.c.day == day))
        .where(_measured(scope))
        .group_by(workday.c.week)
        .order_by(workday.c.week)
    )
    return [(week, int(n), int(met)) for week, n, met in session.execute(query).all()]


def breaches(session: Session, *, scope: ReportScope) -> ReportTable:
    """Breached steps of the period (see the module docstring) by case kind, step and how the step ended."""
    s, c = STEP.c, CASE.c
    ended = func.coalesce(case((s.completed_at.is_(None), "still open"), else_=s.outcome), "done")
    query = (
        select(c.kind, s.name, ended, func.count())
        .select_from(STEP.join(CASE, c.id == s.case_id))
        .where(_measured(scope), not_(_met()))
        .group_by(c.kind, s.name, ended)
        .order_by(c.kind, s.name, func.count().desc(), ended)
    )
    return ReportTable(
        "breaches",
        "Breached steps and how they ended",
        ("kind", "step", "ended", "steps"),
        tuple(tuple(row) for row in session.execute(query).all()),
    )


def _hours(session: Session, start: Any, end: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", end - start) / 3600.0
    return (func.julianday(end) - func.julianday(start)) * 24.0


def escalations(session: Session, *, scope: ReportScope) -> ReportTable:
    """Escalations raised in the period by level and outcome (the supervisor's decision, or pending), with
    the mean hours from raising to decision."""
    e = ESCALATION.c
    start, end = scope.bounds
    outcome = func.coalesce(e.decision, "pending")
    query = (
        select(e.level, outcome, func.count(), func.avg(_hours(session, e.raised_at, e.decided_at)))
        .where(e.raised_at >= start, e.raised_at < end, e.raised_at <= scope.as_of)
        .group_by(e.level, outcome)
        .order_by(e.level, outcome)
    )
    rows = [(level, o, n, None if h is None else float(h)) for level, o, n, h in session.execute(query).all()]
    return ReportTable(
        "escalations",
        "Escalations and their outcomes",
        ("level", "outcome", "escalations", "mean hours to decision"),
        tuple(rows),
    )


# --- cycle time --------------------------------------------------------------------------------------------


def _cycle_rows(session: Session, scope: ReportScope, *, weekly: bool) -> Any:
    """A subquery of (kind, [week,] working_days) per case whose cycle ended in the period."""
    e, c = EVENT.c, CASE.c
    start, end = scope.bounds
    is_end = or_(*(and_(c.kind == kind, e.type.in_(types)) for kind, types in END_EVENTS.items()))
    ends = (
        select(e.case_id.label("case_id"), func.min(e.at).label("ended_at"))
        .select_from(EVENT.join(CASE, c.id == e.case_id))
        .where(e.type.in_([t for types in END_EVENTS.values() for t in types]), is_end)
        .where(e.at >= start, e.at < end, e.at <= scope.as_of)
        .group_by(e.case_id)
        .subquery("ends")
    )
    workday, first = workday_cte(session, scope)
    opened_day, ended_day = workday.alias("opened_day"), workday.alias("ended_day")
    wd = (ended_day.c.worked - opened_day.c.worked).label("wd")
    columns: list[Any] = [c.kind.label("kind")]
    if weekly:
        columns.append(ended_day.c.week.label("week"))
    return (
        select(*columns, wd)
        .select_from(
            ends.join(CASE, c.id == ends.c.case_id)
            .join(opened_day, opened_day.c.day == local_date(session, c.opened_at, scope, first))
            .join(ended_day, ended_day.c.day == local_date(session, ends.c.ended_at, scope, first))
        )
        .subquery("cycles")
    )


def _percentile_query(cycles: Any, groups: Sequence[Any]) -> Any:
    """count, mean, and the rows around the 90th percentile, per group (window functions: both databases)."""
    ranked = select(
        *groups,
        cycles.c.wd,
        func.row_number().over(partition_by=groups, order_by=cycles.c.wd).label("rn"),
        func.count().over(partition_by=groups).label("n"),
    ).subquery("ranked")
    r = ranked.c
    position = (P90_PERMILLE * (r.n - 1)) // 1000
    keys = [r[g.name] for g in groups]
    return (
        select(
            *keys,
            func.count(),
            func.avg(r.wd * 1.0),
            func.min(case((r.rn == position + 1, r.wd))),
            func.min(case((r.rn == position + 2, r.wd))),
            func.max((P90_PERMILLE * (r.n - 1)) % 1000),
        )
        .group_by(*keys)
        .order_by(*keys)
    )


def cycle_times(session: Session, *, scope: ReportScope) -> ReportTable:
    """Mean and 90th-percentile cycle time in working days per case kind, for cases whose cycle ended in
    the period: claims from filing to payment (``record_payment``), complaints from filing to the decision
    (uphold / partly / not), inquiries from filing to the answer. A case counts once, at its first such event
    in the period; working days as in ``models.calendar.working_days_between`` on office-local dates."""
    cycles = _cycle_rows(session, scope, weekly=False)
    rows = [
        (kind, n, float(mean), interpolate(low, high, int(rem)))
        for kind, n, mean, low, high, rem in session.execute(_percentile_query(cycles, [cycles.c.kind])).all()
    ]
    return ReportTable(
        "cycle-time",
        "Cycle time in working days",
        ("kind", "cases", "mean", "p90"),
        tuple(rows),
        "Claims: filing to payment; complaints: filing to decision; inquiries: filing to answer.",
    )


def cycle_by_week(session: Session, *, scope: ReportScope, kind: str = "claim") -> list[tuple[Any, int, float, Any]]:
    """(week's Monday, cases, mean, p90) of one kind's cycle time per ISO week of the period, for the chart."""
    cycles = _cycle_rows(session, scope, weekly=True)
    query = _percentile_query(cycles, [cycles.c.kind, cycles.c.week])
    return [
        (week, n, float(mean), interpolate(low, high, int(rem)))
        for k, week, n, mean, low, high, rem in session.execute(query).all()
        if k == kind
    ]


# --- backlog -----------------------------------------------------------------------------------------------


def backlog(session: Session, *, scope: ReportScope) -> ReportTable:
    """Cases open at ``as_of`` (filed before it, not closed by then) by kind and age in working days."""
    c = CASE.c
    as_of = scope.as_of
    workday, first = workday_cte(session, scope)
    opened_day = workday.alias("opened_day")
    last_day = (as_of - timedelta(microseconds=1)).astimezone(ZoneInfo(scope.period.timezone)).date()
    today = select(workday.c.worked).where(workday.c.day == last_day).scalar_subquery()
    age = today - opened_day.c.worked
    bucket = case(
        *[(age <= high, label) for _, high, label in AGE_BUCKETS if high is not None], else_=AGE_BUCKETS[-1][2]
    )
    order = case(*[(age <= high, i) for i, (_, high, _) in enumerate(AGE_BUCKETS) if high is not None],
                 else_=len(AGE_BUCKETS))  # fmt: skip
    query = (
        select(c.kind, bucket, func.count(), func.min(order))
        .select_from(CASE.join(opened_day, opened_day.c.day == local_date(session, c.opened_at, scope, first)))
        .where(c.opened_at < as_of, or_(c.closed_at.is_(None), c.closed_at >= as_of))
        .group_by(c.kind, bucket)
    )
    rows = sorted(session.execute(query).all(), key=lambda r: (r[0], r[3]))
    return ReportTable(
        "backlog",
        f"Backlog by age (working days) at {last_day.isoformat()}",
        ("kind", "age", "cases"),
        tuple((kind, label, n) for kind, label, n, _ in rows),
    )


# --- satisfaction and complaints ---------------------------------------------------------------------------


def satisfaction(session: Session, *, scope: ReportScope, by: SatisfactionDimension) -> ReportTable:
    """Survey answers received in the period per handler (of the case) or product line.

    Columns: answers, scored answers, mean score (1-5), share of scores 4-5, share answering "solved" (of
    those who answered the question).
    """
    f, c = FEEDBACK.c, CASE.c
    start, end = scope.bounds
    query = select().select_from(FEEDBACK.join(CASE, c.id == f.case_id))
    if by == "handler":
        query = query.outerjoin(STAFF, STAFF.c.id == c.handler_id)
        group: Any = func.coalesce(STAFF.c.username, "(unassigned)")
    elif by == "product_line":
        group = func.coalesce(c.product_line, NONE)
    else:
        raise ValueError(by)
    query = (
        query.add_columns(
            group,
            func.count(),
            func.count(f.score),
            func.avg(f.score * 1.0),
            _count_if(f.score >= 4),
            func.count(f.solved),
            _count_if(f.solved.is_(True)),
        )
        .where(f.received_at >= start, f.received_at < end, f.received_at <= scope.as_of)
        .group_by(group)
        .order_by(group)
    )
    rows = [
        (g, n, scored, None if mean is None else float(mean), percent(ratio(good, scored)),
         percent(ratio(solved, asked)))
        for g, n, scored, mean, good, asked, solved in session.execute(query).all()
    ]  # fmt: skip
    return ReportTable(
        f"satisfaction-by-{by.replace('_', '-')}",
        f"Satisfaction by {by.replace('_', ' ')}",
        (by, "answers", "scored", "mean score", "scores 4-5", "solved"),
        tuple(rows),
    )


def complaint_causes(session: Session, *, scope: ReportScope) -> ReportTable:
    """Complaints filed in the period by product line and the department complained about, with outcomes.

    The cause is not read from the free-text description: a complaint's product line is its own, else that of
    the case it is about (``related_case_id``); the department complained about is the department of that
    related case (``(none)`` when the complaint names no case).
    """
    c = CASE.c
    about = CASE.alias("about")
    start, end = scope.bounds
    product = func.coalesce(c.product_line, about.c.product_line, NONE)
    department = func.coalesce(DEPARTMENT.c.code, NONE)
    upheld = c.outcome.in_(("upheld", "partly_upheld"))
    query = (
        select(
            product,
            department,
            func.count(),
            _count_if(upheld),
            _count_if(c.outcome == "not_upheld"),
            _count_if(c.outcome.is_(None)),
        )
        .select_from(
            CASE.outerjoin(about, about.c.id == c.related_case_id).outerjoin(
                DEPARTMENT, DEPARTMENT.c.id == about.c.department_id
            )
        )
        .where(c.kind == "complaint", c.opened_at >= start, c.opened_at < end, c.opened_at <= scope.as_of)
        .group_by(product, department)
        .order_by(func.count().desc(), product, department)
    )
    return ReportTable(
        "complaint-causes",
        "Complaint causes: product line and department complained about",
        ("product line", "department complained about", "complaints", "upheld (fully or partly)", "not upheld",
         "undecided"),
        tuple(tuple(row) for row in session.execute(query).all()),
        "From the complaint's product line (else the related case's) and the related case's department; "
        "the free-text description is not classified.",
    )  # fmt: skip


# --- scorecard ---------------------------------------------------------------------------------------------


def handler_figures(session: Session, *, scope: ReportScope) -> list[HandlerFigures]:
    """Per member of staff, the counts the scorecard weighs (four grouped queries, no case rows):

    - steps measured and met as in ``sla_compliance``, by the step's assignee, and their distinct cases;
    - survey answers received in the period and their score sum, by the case's handler;
    - ``reopen`` events in the period, by the case's handler;
    - wording-check failures in the period: ``fix_wording`` steps opened, by their assignee (the case's
      handler when the message was held back; each failure also writes a ``wording_check_failed`` event).
    """
    s, c, f, e = STEP.c, CASE.c, FEEDBACK.c, EVENT.c
    start, end = scope.bounds
    as_of = scope.as_of
    merged: dict[int, dict[str, int]] = {}

    def add(rows: Any, *names: str) -> None:
        for staff_id, *counts in rows:
            if staff_id is not None:
                slot = merged.setdefault(int(staff_id), {})
                slot.update({n: int(v or 0) for n, v in zip(names, counts, strict=True)})

    add(
        session.execute(
            select(s.assignee_id, func.count(), _count_if(_met()), func.count(func.distinct(s.case_id)))
            .where(_measured(scope))
            .group_by(s.assignee_id)
        ).all(),
        "steps_measured", "steps_met", "cases",
    )  # fmt: skip
    add(
        session.execute(
            select(c.handler_id, func.count(f.score), func.sum(f.score))
            .select_from(FEEDBACK.join(CASE, c.id == f.case_id))
            .where(f.received_at >= start, f.received_at < end, f.received_at <= as_of)
            .group_by(c.handler_id)
        ).all(),
        "feedback", "score_sum",
    )  # fmt: skip
    add(
        session.execute(
            select(c.handler_id, func.count())
            .select_from(EVENT.join(CASE, c.id == e.case_id))
            .where(e.type == "reopen", e.at >= start, e.at < end, e.at <= as_of)
            .group_by(c.handler_id)
        ).all(),
        "reopened",
    )
    add(
        session.execute(
            select(s.assignee_id, func.count())
            .where(s.name == "fix_wording", s.started_at >= start, s.started_at < end, s.started_at <= as_of)
            .group_by(s.assignee_id)
        ).all(),
        "wording_failures",
    )
    if not merged:
        return []
    names: dict[int, str] = dict(
        session.execute(select(STAFF.c.id, STAFF.c.username).where(STAFF.c.id.in_(list(merged)))).all()
    )
    return sorted(
        (HandlerFigures(names.get(staff_id, f"#{staff_id}"), **counts) for staff_id, counts in merged.items()),
        key=lambda h: h.handler,
    )


def scorecard(session: Session, *, scope: ReportScope, weights: ScorecardWeights | None = None) -> ReportTable:
    """The per-handler scorecard: ``models.reports.score_handler`` over ``handler_figures``, best first."""
    lines = [score_handler(h, weights) for h in handler_figures(session, scope=scope)]
    lines.sort(key=lambda line: (line.score is None, -(line.score or 0), line.handler))
    rows = tuple(
        (
            line.handler,
            line.score,
            percent(line.compliance),
            line.figures.steps_measured,
            None if line.satisfaction is None else 1 + 4 * line.satisfaction,
            line.figures.feedback,
            line.figures.reopened,
            line.figures.wording_failures,
            line.figures.cases,
        )
        for line in lines
    )
    w = weights or ScorecardWeights()
    return ReportTable(
        "scorecard",
        "Handler scorecard",
        ("handler", "score", "compliance", "steps", "mean score", "answers", "reopened", "wording failures",
         "cases"),
        rows,
        f"Score out of 100: compliance x{w.compliance}, satisfaction x{w.satisfaction}, not reopened "
        f"x{w.reopened}, no wording failures x{w.wording} (per case); parts with nothing to measure are left out.",
    )  # fmt: skip


# --- the whole report ---------------------------------------------------------------------------------------

SECTIONS: dict[str, tuple[str, ...]] = {
    "sla": ("sla-by-kind", "sla-by-step", "sla-by-handler", "sla-by-department", "breaches", "escalations"),
    "cycle": ("cycle-time", "backlog"),
    "satisfaction": ("satisfaction-by-handler", "satisfaction-by-product-line", "complaint-causes"),
    "scorecard": ("scorecard",),
}
"""Which tables each CLI command prints (the flow publishes them all)."""


def report_tables(session: Session, *, scope: ReportScope, keys: Sequence[str] | None = None) -> list[Any]:
    """The report's tables (all, or those named by ``keys``), as (key, thunk) pairs to run one by one.

    Each thunk runs its own aggregate query, so a caller can show progress between them.
    """
    makers: dict[str, Any] = {
        "sla-by-kind": lambda: sla_compliance(session, scope=scope, by="kind"),
        "sla-by-step": lambda: sla_compliance(session, scope=scope, by="step"),
        "sla-by-handler": lambda: sla_compliance(session, scope=scope, by="handler"),
        "sla-by-department": lambda: sla_compliance(session, scope=scope, by="department"),
        "breaches": lambda: breaches(session, scope=scope),
        "escalations": lambda: escalations(session, scope=scope),
        "cycle-time": lambda: cycle_times(session, scope=scope),
        "backlog": lambda: backlog(session, scope=scope),
        "satisfaction-by-handler": lambda: satisfaction(session, scope=scope, by="handler"),
        "satisfaction-by-product-line": lambda: satisfaction(session, scope=scope, by="product_line"),
        "complaint-causes": lambda: complaint_causes(session, scope=scope),
        "scorecard": lambda: scorecard(session, scope=scope),
    }
    return [(key, makers[key]) for key in (keys or list(makers))]

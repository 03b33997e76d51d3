"""The case workflow in the database: steps with their clocks, routing, people's decisions, automatic moves.

Every function takes the session first and leaves the commit to the caller: one decision, its transition,
its events, its step changes and its messages commit together or not at all. Each is idempotent against
the database state (a repeated call finds the work done and does nothing), which is what lets a case flow
run be restarted from its start at any time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy import literal as sql_literal
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session, col, select

from claimflow.db import pin
from claimflow.settings import Settings
from models.approval import Decider, DecisionKind, NotAllowed, check_decider, check_payment, who_may_decide
from models.caseview import (
    StepLine,
    case_url,
    choice_lines,
    due_words,
    form_words,
    literal,
    office_time,
    runs_url,
)
from models.clock import Pause
from models.enums import CaseKind, StaffRole, StepStatus
from models.errors import ClaimflowError, IllegalTransition, InvalidInput, NotFound
from models.lifecycle import first_moves, lifecycle_for
from models.notices import ADVANCE_STEP, owed
from models.notices import STEP as NOTICE_STEP
from models.notices import rule_for as notice_rule_for
from models.otp import MAX_WRONG_CODES, CodeRefused, after_wrong_code, verify_code
from models.outside import outside_body_name
from models.plan import Ask, Auto, Finished, InputKind, Move, next_move
from models.routing import (
    Candidate,
    NoEligibleHandler,
    RoutingRequest,
    care_plan,
    choose_handler,
    complaint_exclusions,
    documents_for,
    needs_second_approval,
    triage_reason,
)
from models.sla import Pack
from models.tables import (
    Approval,
    Case,
    CaseCreate,
    Customer,
    Department,
    DocumentRequirement,
    Event,
    Staff,
    StaffLoad,
    Step,
)
from models.watch import NO_SCHEDULE, Schedule, progress_after_reschedule
from tasks.cases import append_event, apply_transition, file_case, get_case
from tasks.deadlines import DeskRules, desk_rules
from tasks.outbox import Enqueued, enqueue
from tasks.survey import invite

# Which SLA rule times each workflow step, and whether only the regulators' packs apply (the house pack's
# review limit is met once the review ends in an investigation; the regulator's decision limit still runs).
STEP_SLA: dict[tuple[str, str], tuple[str, bool]] = {
    ("claim", "review"): ("review", False),
    ("claim", "investigation"): ("review", True),
    ("claim", "payment"): ("payment", False),
    ("complaint", "resolution"): ("resolution", False),
    ("inquiry", "answer"): ("answer", False),
    ("claim", "follow_up"): ("follow_up", False),
    ("inquiry", "follow_up"): ("follow_up", False),
    ("complaint", "complaint_review"): ("complaint_review", False),
    # a regulator's notice while undecided (models.notices): due when that regulator's own decision limit ends
    ("claim", NOTICE_STEP): ("review", True),
    ("complaint", NOTICE_STEP): ("resolution", True),
    # PRC Insurance Law art. 25: what is certain is paid in advance by day 60 while the rest is assessed
    ("claim", ADVANCE_STEP): ("advance_payment", True),
}
# Steps a supervisor takes, never the case's handler.
SUPERVISOR_STEPS = ("follow_up", "complaint_review", "second_approval")
# Steps whose clock starts when the step opens, not when the case was filed.
CLOCK_FROM_STEP = frozenset({"payment", "follow_up", "complaint_review"})
FIRST_STEP = {"claim": "review", "complaint": "resolution", "inquiry": "answer"}
OPEN = (StepStatus.open, StepStatus.paused)


@dataclass(frozen=True)
class Desk:
    """What the workflow needs besides the session: the deadline rules and the settings."""

    rules: DeskRules
    settings: Settings

    @classmethod
    def of(cls, settings: Settings) -> Desk:
        """The desk for these settings: their packs and calendar (loaded once per configuration)."""
        return cls(rules=desk_rules(settings), settings=settings)


# --- steps and their clocks -------------------------------------------------------------------------------


def current_step(session: Session, *, case_id: int, name: str) -> Step | None:
    """The step of that name that is still open or paused, if any."""
    return session.exec(
        select(Step)
        .where(Step.case_id == case_id, Step.name == name, col(Step.status).in_(OPEN))
        .order_by(col(Step.attempt).desc())
    ).first()


def _case_pauses(session: Session, case_id: int, now: datetime) -> list[Pause]:
    pauses: list[Pause] = []
    for step in session.exec(select(Step).where(Step.case_id == case_id)):
        pauses += [Pause(datetime.fromisoformat(p["from"]), datetime.fromisoformat(p["to"])) for p in step.pauses]
        if step.paused_since is not None:
            pauses.append(Pause(step.paused_since, None))
    return sorted(pauses, key=lambda p: p.start)


def _schedule(session: Session, desk: Desk, *, case: Case, step: Step, now: datetime) -> Schedule:
    assert case.id is not None
    return schedule_for(desk, case=case, name=step.name, started_at=step.started_at, extensions=step.extensions,
                        pauses=_case_pauses(session, case.id, now))  # fmt: skip


def schedule_for(
    desk: Desk, *, case: Case, name: str, started_at: datetime, extensions: Sequence[str], pauses: Sequence[Pause]
) -> Schedule:
    """The deadline, reminders and ladder by the rules of the step ``name`` opened at ``started_at``, given its
    extensions and the case's clock pauses (none for a new case)."""
    sla = STEP_SLA.get((case.kind, name))
    if sla is None:
        return NO_SCHEDULE
    sla_step, regulators_only = sla
    start = started_at if name in CLOCK_FROM_STEP else case.opened_at
    rules = desk.rules
    ladder: tuple[Pack, ...] = ()
    if regulators_only:  # the regulator's own clock; reminders and the ladder from the house where it sets none
        packs = rules.regulators.get(case.jurisdiction.upper(), ())
        if not packs:
            return NO_SCHEDULE
        ladder = (rules.house,)
        rules = DeskRules(packs[0], {case.jurisdiction.upper(): packs[1:]}, rules.calendar, rules.fallback_calendar)
    return rules.schedule(
        ladder_packs=ladder,
        kind=case.kind,
        step=sla_step,
        jurisdiction=case.jurisdiction,
        channel=case.channel,
        start=start,
        pauses=list(pauses),
        extensions=list(extensions),
    )


def schedule_columns(schedule: Schedule, *, now: datetime) -> dict[str, Any]:
    """What an open step's clock columns hold for ``schedule`` at ``now``: its deadline, the rule, the reminders
    already past and the watcher's next look."""
    done, next_check = progress_after_reschedule(schedule, now=now)
    return {"schedule": schedule.to_json(), "due_at": schedule.due, "policy_rule": schedule.rule[:200],
            "reminders_done": done, "next_check_at": next_check}  # fmt: skip


def _apply_schedule(step: Step, schedule: Schedule, *, now: datetime) -> None:
    columns = schedule_columns(schedule, now=now)
    step.schedule, step.due_at, step.policy_rule = columns["schedule"], columns["due_at"], columns["policy_rule"]
    step.reminders_done = columns["reminders_done"]
    if step.escalation_level:  # the ladder starts afresh: a new round, whose escalations are rows of their own
        step.ladder_round += 1
    step.escalation_level = 0
    step.next_check_at = columns["next_check_at"] if step.status == StepStatus.open else None


def open_step(
    session: Session,
    desk: Desk,
    *,
    case: Case,
    name: str,
    now: datetime,
    actor: str = "system",
    assignee_id: int | None = None,
    input_kind: InputKind | None = None,
    unassigned: bool = False,
    schedule: Schedule | None = None,
) -> Step:
    """Open a step with its assignee and deadline; an already open step of that name is returned as it is.

    The assignee is ``assignee_id``, else the case's handler, unless ``unassigned`` (nobody yet); the deadline is
    the rules' (``_schedule``) unless ``schedule`` is given (a repeated notice's)."""
    assert case.id is not None
    existing = current_step(session, case_id=case.id, name=name)
    if existing is not None:
        return existing
    attempts = session.exec(
        select(func.count()).select_from(Step).where(Step.case_id == case.id, Step.name == name)
    ).one()
    step = Step(
        case_id=case.id,
        name=name,
        attempt=int(attempts) + 1,
        assignee_id=None if unassigned else assignee_id if assignee_id is not None else case.handler_id,
        started_at=now,
    )
    session.add(step)
    session.flush()
    _apply_schedule(step, schedule or _schedule(session, desk, case=case, step=step, now=now), now=now)
    kind = input_kind or _input_for(case, name)
    step.waiting_key = decision_key(kind, step) if kind else None
    session.add(step)
    append_event(
        session,
        case=case,
        actor=actor,
        type="step_opened",
        data={
            "step": name,
            "attempt": step.attempt,
            "assignee": _username(session, step.assignee_id),
            "due": step.due_at,
            "rule": step.policy_rule,
        },
        now=now,
    )
    return step


def decision_key(kind: InputKind, step: Step) -> str:
    """The key a run suspends on for a decision: ``claim-review-<step>-<round>-<attempt>``.

    The round counts the step's pauses (a resumed step asks afresh); the attempt counts refusals (a key
    that was answered once cannot be asked again: Prefect would return the first answer).
    """
    return first_decision_key(kind, step.id, pauses=len(step.pauses))


def first_decision_key(kind: InputKind, step_id: int | None, *, pauses: int = 0) -> str:
    """``decision_key`` for the step with this id, before any refusal."""
    return f"{kind.value.replace('_', '-')}-{step_id}-{pauses}-1"


def key_kind(key: str) -> InputKind:
    """The form a decision key asks for (Prefect keys hold lower-case letters, digits and dashes)."""
    try:
        return InputKind(key.rsplit("-", 3)[0].replace("-", "_"))
    except ValueError:
        raise InvalidInput(f"{key!r} is not a decision key") from None


def _input_for(case: Case, step_name: str) -> InputKind | None:
    for move in (next_move(case.kind, case.status),):
        if isinstance(move, Ask) and move.step == step_name:
            return move.input_kind
    return {
        "review": InputKind.claim_review,
        "investigation": InputKind.claim_review,
        "second_approval": InputKind.second_approval,
        "payment": InputKind.payment,
        "resolution": InputKind.complaint_decision,
        "answer": InputKind.inquiry_answer,
    }.get(step_name)


def pause_step(session: Session, *, case: Case, step: Step, now: datetime, reason: str) -> None:
    """Stop the step's clock (the case waits on the customer)."""
    if step.status == StepStatus.paused:
        return
    step.status = StepStatus.paused
    step.paused_since = now
    step.next_check_at = None
    step.waiting_key = decision_key(InputKind.documents, step)
    session.add(step)
    append_event(
        session, case=case, actor="system", type="clock_paused", data={"step": step.name, "reason": reason}, now=now
    )


def resume_step(session: Session, desk: Desk, *, case: Case, step: Step, now: datetime) -> None:
    """Start the step's clock again; the deadline moves by the time it stood still."""
    if step.status != StepStatus.paused or step.paused_since is None:
        return
    step.pauses = [*step.pauses, {"from": step.paused_since.isoformat(), "to": now.isoformat()}]
    step.paused_seconds += int((now - step.paused_since).total_seconds())
    step.paused_since = None
    step.status = StepStatus.open
    _apply_schedule(step, _schedule(session, desk, case=case, step=step, now=now), now=now)
    kind = _input_for(case, step.name)
    step.waiting_key = decision_key(kind, step) if kind else None
    session.add(step)
    append_event(
        session,
        case=case,
        actor="system",
        type="clock_resumed",
        data={"step": step.name, "due": step.due_at, "rule": step.policy_rule},
        now=now,
    )


def documents_in(
    session: Session, desk: Desk, *, case: Case, step: Step, actor: str, now: datetime, data: Mapping[str, Any]
) -> None:
    """The documents the case waited for are in: the case goes back under review, every requirement still open
    is ticked, and the paused step's clock starts again (its deadline moves by the time it stood still). The
    handler's documents form does this; so does the customer's last missing upload on the status page."""
    _move(session, case=case, action="documents_received", actor=actor, now=now, data=data)
    for requirement in session.exec(
        select(DocumentRequirement).where(
            DocumentRequirement.case_id == case.id, col(DocumentRequirement.received_at).is_(None)
        )
    ):
        requirement.received_at = now
        session.add(requirement)
    resume_step(session, desk, case=case, step=step, now=now)


def paused_for_documents(session: Session, case: Case) -> Step | None:
    """The step whose clock stands still while the case waits for the customer's documents, if it does."""
    if case.status != "awaiting_documents":
        return None
    return session.exec(
        select(Step).where(Step.case_id == case.id, Step.status == StepStatus.paused).order_by(col(Step.id).desc())
    ).first()


def close_step(session: Session, *, case: Case, step: Step, now: datetime, outcome: str, actor: str) -> None:
    if step.status not in OPEN:
        return
    step.status = StepStatus.done
    step.completed_at = now
    step.outcome = outcome[:64]
    step.next_check_at = None
    step.waiting_key = None
    session.add(step)
    append_event(
        session,
        case=case,
        actor=actor,
        type="step_completed",
        data={"step": step.name, "outcome": outcome, "late": bool(step.due_at and now > step.due_at)},
        now=now,
    )


def _close_open_steps(session: Session, *, case: Case, now: datetime, outcome: str, actor: str) -> None:
    for step in session.exec(select(Step).where(Step.case_id == case.id, col(Step.status).in_(OPEN))):
        close_step(session, case=case, step=step, now=now, outcome=outcome, actor=actor)


# --- routing ---------------------------------------------------------------------------------------------


def _username(session: Session, staff_id: int | None) -> str | None:
    if staff_id is None:
        return None
    member = session.get(Staff, staff_id)
    return member.username if member else None


def candidates(session: Session) -> list[Candidate]:
    """Every staff member with their open load (open or paused steps assigned to them), as the database keeps
    it (``StaffLoad``: one row per person, not a count of every open step)."""
    loads, every_department, everyone = _candidate_statements()
    load = dict(session.exec(loads).all())
    departments = {d.id: d.code for d in session.exec(every_department)}
    staff = list(session.exec(everyone))
    pin(session, *staff)  # routing and the messages after it get the handler again
    return [
        Candidate(
            staff_id=s.id or 0,
            username=s.username,
            role=s.role,
            department=departments.get(s.department_id),
            skills=frozenset(s.skills),
            languages=frozenset(s.languages),
            active=s.active,
            capacity=s.capacity,
            open_load=int(load.get(s.id or 0, 0)),
        )
        for s in staff
    ]


def lock_loads(session: Session) -> None:
    """Take every person's load row now, in the order of their ids (PostgreSQL): the triggers that count open
    steps change the row of whoever a step is assigned to, so a transaction that files many cases would otherwise
    take them in routing order and could wait, holding one, for another that a second such transaction holds."""
    if session.get_bind().dialect.name != "postgresql":
        return
    made, taken = _load_lock_statements()
    session.execute(made)
    session.execute(taken).all()


@cache
def _candidate_statements() -> tuple[Any, Any, Any]:
    """``candidates``' queries, built once (every batch of filings runs them; a statement built afresh costs
    SQLAlchemy its cache key each time)."""
    return select(StaffLoad.staff_id, StaffLoad.open_steps), select(Department), select(Staff)


@cache
def _load_lock_statements() -> tuple[Any, Any]:
    """``lock_loads``' two statements, built once: every person's load row made if missing, then all taken."""
    table = StaffLoad.__table__  # type: ignore[attr-defined]
    made = (
        pg_insert(table)
        .from_select(["staff_id", "open_steps"], select(Staff.id, sql_literal(0)))
        .on_conflict_do_nothing()
    )
    return made, select(table.c.staff_id).order_by(table.c.staff_id).with_for_update()


def route(session: Session, *, case: Case, now: datetime, retry: bool = False) -> Staff | None:
    """Assign the case to a handler (once); a complaint never to the handler or department it is about.

    When nobody may take it (no staff imported, every handler at capacity or excluded) the case is still
    filed, unassigned: its log says why and the supervisors are told, and ``route_deferred`` tries again
    (``retry``: a later attempt, which records nothing when it fails again).
    """
    if case.handler_id is not None:
        return session.get(Staff, case.handler_id)
    customer = session.get(Customer, case.customer_id)
    excluded_staff: frozenset[int] = frozenset()
    excluded_departments: frozenset[str] = frozenset()
    if case.kind == CaseKind.complaint and case.related_case_id is not None:
        about = session.get(Case, case.related_case_id)
        if about is not None:
            department = session.get(Department, about.department_id) if about.department_id else None
            excluded_staff, excluded_departments = complaint_exclusions(
                about_handler=about.handler_id, about_department=department.code if department else None
            )
    triage = triage_reason(case.kind, case.product_line)
    if triage is not None:
        if not retry:
            _defer(session, case=case, reason=triage, now=now, triage=True)
        return None
    pool = candidates(session)
    request = RoutingRequest(
        kind=CaseKind(case.kind),
        product_line=case.product_line,
        language=customer.language if customer else "zh-CN",
        excluded_staff=excluded_staff,
        excluded_departments=excluded_departments,
    )
    try:
        if not pool:
            raise NoEligibleHandler("no staff imported", code="no_staff")
        assignment = choose_handler(request, pool)
    except NoEligibleHandler as exc:
        if not retry:
            _defer(session, case=case, reason=str(exc), code=exc.code, now=now)
        return None
    handler = session.get(Staff, assignment.staff_id)
    assert handler is not None
    case.handler_id = handler.id
    case.department_id = handler.department_id
    session.add(case)
    append_event(
        session,
        case=case,
        actor="system",
        type="assigned",
        data={"handler": handler.username, "department": assignment.department, "reason": assignment.reason},
        now=now,
    )
    return handler


def unassigned_context(case: Case, reason: str, triage: bool, code: str) -> dict[str, Any]:
    """The supervisors' ``staff_unassigned`` message about a case nobody could take: ``reason`` in English (the
    audit trail's words), ``reason_code`` for the message to say it in its reader's language."""
    return {"case_number": case.number, "kind": case.kind, "priority": case.priority, "reason": reason,
            "reason_code": code, "triage": triage}  # fmt: skip


def _defer(session: Session, *, case: Case, reason: str, now: datetime, triage: bool = False, code: str = "") -> None:
    append_event(session, case=case, actor="system", type="routing_deferred", data={"reason": reason, "triage": triage},
                 now=now)  # fmt: skip
    enqueue(
        session,
        template="staff_unassigned",
        recipient="role:supervisor",
        context=unassigned_context(case, reason, triage, code),
        idempotency_key=f"unassigned:{case.number}",
        now=now,
        case=case,
    )


def route_deferred(session: Session, *, now: datetime, limit: int = 100) -> list[str]:
    """Try again to assign open cases that nobody could take when they were filed (the oldest first).

    A case that finds a handler gets its open unassigned steps (not the supervisors' follow-ups) and the
    handler is told. Returns the numbers of the cases assigned.
    """
    waiting = session.exec(
        select(Case)
        .where(col(Case.handler_id).is_(None), col(Case.closed_at).is_(None))
        .order_by(col(Case.opened_at))
        .limit(limit)
        .with_for_update(skip_locked=True)  # a case someone is working on now is assigned on the next pass
    ).all()
    assigned = []
    for case in waiting:
        handler = route(session, case=case, now=now, retry=True)
        if handler is None:
            continue
        assign_open_steps(session, case=case, handler=handler, now=now)
        assigned.append(case.number)
    return assigned


def assign_open_steps(session: Session, *, case: Case, handler: Staff, now: datetime) -> None:
    """Give a freshly routed case's open unassigned steps (not the supervisors' follow-ups) to its handler, and
    tell them."""
    steps = session.exec(
        select(Step).where(
            Step.case_id == case.id,
            col(Step.assignee_id).is_(None),
            col(Step.status).in_(OPEN),
            col(Step.name).not_in(SUPERVISOR_STEPS),
        )
    ).all()
    for step in steps:
        step.assignee_id = handler.id
        session.add(step)
        append_event(session, case=case, actor="system", type="step_assigned",
                     data={"step": step.name, "assignee": handler.username}, now=now)  # fmt: skip
        _tell_handler(session, case=case, step=step, now=now)


# --- intake and automatic moves ---------------------------------------------------------------------------


def intake(
    session: Session,
    desk: Desk,
    *,
    data: CaseCreate,
    actor: str,
    now: datetime,
    customer: Customer | None = None,
    acknowledgement: Mapping[str, Any] | None = None,
) -> Case:
    """File a case and do at once what needs no person: route it, open its first step with its deadline,
    tell the handler, and queue the customer's acknowledgement with the promised date. ``customer``: one
    already on file (see ``file_case``); ``acknowledgement``: more for the acknowledgement to say (the mail
    intake's ``not_accepted`` attachments)."""
    case = file_case(session, data=data, actor=actor, now=now, customer=customer)
    start(session, desk, case=case, now=now)
    step = current_step(session, case_id=case.id or 0, name=FIRST_STEP[case.kind])
    customer = session.get(Customer, case.customer_id)
    if step is not None and step.due_at is not None and customer is not None:
        enqueue(
            session,
            template=f"acknowledgement_{case.kind}",
            recipient=f"customer:{customer.id}",
            context={
                "case_number": case.number,
                "channel": case.channel,
                "received_at": case.opened_at,
                "due_at": step.due_at,
                **(acknowledgement or {}),
            },
            idempotency_key=f"ack:{case.number}",
            now=now,
            case=case,
        )
    return case


def staff_links_for(number: str, username: str) -> dict[str, str]:
    """What a staff message links to: the case's runs in the Prefect UI (by its number, so the link survives a
    replaced run) and the person's waiting cases (``CLAIMFLOW_UI_URL``)."""
    from claimflow.settings import get_settings

    ui = get_settings().resolved_ui_url
    return {"case_url": case_url(ui, number), "worklist_url": runs_url(ui, tags=[f"assignee:{username}"])}


def _tell_handler(session: Session, *, case: Case, step: Step, now: datetime) -> None:
    handler = session.get(Staff, step.assignee_id) if step.assignee_id else None
    if handler is None or step.due_at is None:
        return
    enqueue(
        session,
        template="staff_new_assignment",
        recipient=f"staff:{handler.username}",
        context={
            "case_number": case.number,
            "kind": case.kind,
            "priority": case.priority,
            "handler_name": handler.name,
            "due_at": step.due_at,
            **staff_links_for(case.number, handler.username),
        },
        idempotency_key=f"assigned:{case.number}:{step.name}:{step.attempt}:{handler.username}",
        now=now,
        case=case,
    )


def _move(
    session: Session, *, case: Case, action: str, actor: str, now: datetime, data: Mapping[str, Any] | None = None
) -> None:
    updated, _ = apply_transition(session, number=case.number, action=action, actor=actor, now=now, data=data)
    case.status, case.outcome, case.closed_at = updated.status, updated.outcome, updated.closed_at
    settle_notice(session, case=case, now=now)


def settle_notice(session: Session, *, case: Case, now: datetime) -> None:
    """A decided case owes no notice that more time is needed, and no advance payment (its payment, or its
    rejection, follows): an open ``progress_notice`` or ``advance_payment`` is moot."""
    if owed(case.kind, case.status):
        return
    for name in (NOTICE_STEP, ADVANCE_STEP):
        step = current_step(session, case_id=case.id or 0, name=name)
        if step is not None:
            close_step(session, case=case, step=step, now=now, outcome="not_needed", actor="system")


def notice_owed(case: Case) -> bool:
    """Whether a regulator of the case's jurisdiction wants a notice while the case is undecided
    (``models.notices``), and it is still owed at the case's status."""
    return notice_rule_for(case.kind, case.jurisdiction) is not None and owed(case.kind, case.status)


def advance_owed(desk: Desk, case: Case) -> bool:
    """Whether the claim is one a regulator wants paid in advance while it is assessed, at its status."""
    return case.kind == CaseKind.claim and owed(case.kind, case.status) and _advance_owed(desk, case)


def start(session: Session, desk: Desk, *, case: Case, now: datetime) -> None:
    """The automatic first moves of a case, from wherever it stands (idempotent)."""
    route(session, case=case, now=now)
    for action in first_moves(case.kind, case.status):
        _move(session, case=case, action=action, actor="system", now=now)
    name = FIRST_STEP[case.kind]
    if current_step(session, case_id=case.id or 0, name=name) is None and not lifecycle_for(case.kind).is_closed(
        case.status
    ):
        step = open_step(session, desk, case=case, name=name, now=now)
        _tell_handler(session, case=case, step=step, now=now)
        _care_for(session, desk, case=case, now=now)
    if notice_owed(case) and current_step(session, case_id=case.id or 0, name=NOTICE_STEP) is None:
        open_step(session, desk, case=case, name=NOTICE_STEP, now=now)
    if (advance_owed(desk, case)
            and session.exec(select(Step.id).where(Step.case_id == case.id, Step.name == ADVANCE_STEP)).first()
            is None):  # fmt: skip
        open_step(session, desk, case=case, name=ADVANCE_STEP, now=now)


def _advance_owed(desk: Desk, case: Case) -> bool:
    """Whether a regulator of the case's jurisdiction sets a limit for paying in advance (``cn-regulatory``)."""
    return any(pack.rule(CaseKind.claim, ADVANCE_STEP) is not None
               for pack in desk.rules.regulators.get(case.jurisdiction.upper(), ()))  # fmt: skip


def _care_for(session: Session, desk: Desk, *, case: Case, now: datetime) -> None:
    """Elderly or vulnerable customers: phone first, simplified documents, and a home visit offered (a step
    for the handler, closed when done or with the case)."""
    customer = session.get(Customer, case.customer_id)
    if customer is None:
        return
    plan = care_plan(elderly=customer.elderly, vulnerable=customer.vulnerable, preferred=customer.preferred_channel)
    if not plan.offer_home_visit or case.kind != CaseKind.claim:
        return
    if session.exec(select(Step).where(Step.case_id == case.id, Step.name == "home_visit")).first() is not None:
        return
    open_step(session, desk, case=case, name="home_visit", now=now)
    append_event(
        session,
        case=case,
        actor="system",
        type="care_plan",
        data={"for": list(plan.reasons), "contact_first": plan.contact_first, "simplified_documents": True,
              "home_visit": "offered"},
        now=now,
    )  # fmt: skip


VISIT_OUTCOMES = {"visited": "visited", "declined": "declined by the customer", "unreachable": "customer unreachable"}


def record_home_visit(session: Session, *, number: str, username: str, outcome: str, note: str, now: datetime) -> Step:
    """Close the home-visit step offered to an elderly or vulnerable customer, with what came of it.

    Raises:
        NotFound: no such case, no active staff member of that name, or no home visit open on the case.
        InvalidInput: an unknown outcome or an empty note.
    """
    if outcome not in VISIT_OUTCOMES:
        raise InvalidInput(f"outcome {outcome!r}: one of {', '.join(VISIT_OUTCOMES)}")
    if not note.strip():
        raise InvalidInput("--note: say what was done or agreed")
    case = get_case(session, number, for_update=True)
    member = session.exec(select(Staff).where(Staff.username == username)).first()
    if member is None or not member.active:
        raise NotFound(f"no active staff member {username!r}")
    step = current_step(session, case_id=case.id or 0, name="home_visit")
    if step is None:
        raise NotFound(f"{number} has no home visit open (offered to elderly or vulnerable customers' claims)")
    close_step(session, case=case, step=step, now=now, outcome=f"{VISIT_OUTCOMES[outcome]}: {note.strip()[:300]}",
               actor=username)  # fmt: skip
    return step


def finish(session: Session, desk: Desk, *, case: Case, now: datetime) -> None:
    """Close a case whose outcome is settled (paid, rejected, resolved, answered, referred, withdrawn); a paid,
    rejected or resolved case first goes through ``feedback``, which sends the customer the survey link."""
    if case.status in ("paid", "rejected", "resolved"):
        _move(session, case=case, action="request_feedback", actor="system", now=now)
    if case.status == "feedback":
        invite(session, desk.settings, case=case, reason="resolution", now=now)
    if case.status in ("feedback", "answered", "referred", "withdrawn", "paid", "rejected", "resolved"):
        _close_open_steps(session, case=case, now=now, outcome="case closed", actor="system")
        _move(session, case=case, action="close", actor="system", now=now)


# --- what the flow sees ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseView:
    """A case as its flow needs it: no personal data."""

    case_id: int
    number: str
    kind: str
    status: str
    move: Move
    waiting_key: str | None
    description: str


def _pending_approval(session: Session, case_id: int) -> Approval | None:
    return session.exec(
        select(Approval).where(
            Approval.case_id == case_id, Approval.subject == "decision", col(Approval.decision).is_(None)
        )
    ).first()


def view(session: Session, desk: Desk, *, case_id: int, now: datetime) -> CaseView:
    """Read the case, work out the next move and, for a decision, make sure its step is open.

    The case's row is held until the caller commits: opening the step appends to the case's chain, and two
    runs of one case (a restarted run beside a late one) open it once.
    """
    case = session.get(Case, case_id, with_for_update=True)
    if case is None:
        raise NotFound(f"no case with id {case_id}")
    paused = session.exec(select(Step).where(Step.case_id == case_id, Step.status == StepStatus.paused)).first()
    move = next_move(
        case.kind,
        case.status,
        pending_second_approval=_pending_approval(session, case_id) is not None,
        waiting_on_documents_in=paused.name if paused else None,
    )
    key = None
    if isinstance(move, Ask):
        step = current_step(session, case_id=case_id, name=move.step)
        if step is None:
            step = open_step(session, desk, case=case, name=move.step, now=now, input_kind=move.input_kind)
            _tell_handler(session, case=case, step=step, now=now)
        key = step.waiting_key
    return CaseView(case_id, case.number, case.kind, case.status, move, key, _describe(session, desk, case, move, now))


def last_refusal(session: Session, case_id: int, stem: str, language: str = "en") -> list[str]:
    """ "Last attempt refused: ..." for the form, where the previous answer to this decision was refused."""
    refused = session.exec(
        select(Event)
        .where(Event.case_id == case_id, Event.type == "decision_refused")
        .order_by(col(Event.sequence).desc())
    ).all()
    for event in refused:
        if str(event.data.get("key", "")).startswith(stem):
            words = form_words(language)
            return [f"**{words['refused']}** ({literal(event.actor)}): {literal(event.data.get('reason'))}"]
    return []


def _describe(session: Session, desk: Desk, case: Case, move: Move, now: datetime) -> str:
    """What the person deciding sees above the form (markdown; no personal data): the case, the step's due time
    in the office's zone and how far away, who may decide, what each choice does (and what the customer is
    told), and why the last answer was refused; in the desk's language."""
    if not isinstance(move, Ask):
        return ""
    language, tz = desk.settings.default_language, ZoneInfo(desk.settings.office_timezone)
    words = form_words(language)
    lines = [f"**{case.number}** · {case.kind} · {case.status} · {words['priority']} {case.priority}"]
    if case.product_line:  # text from a source or a customer: shown as written, never as a link or an image
        lines.append(f"{words['product']}: {literal(case.product_line)}; {words['policy']} "
                     f"{literal(case.policy_number)}")  # fmt: skip
    if case.amount_claimed is not None:
        lines.append(f"{words['claimed']}: {case.amount_claimed} {case.currency}")
    step = current_step(session, case_id=case.id or 0, name=move.step)
    if step is not None and step.due_at is not None:
        lines.append(f"{words['due']}: {due_line(step, now=now, tz=tz, language=language)}")
    approval = _pending_approval(session, case.id or 0)
    if approval is not None and move.input_kind == InputKind.second_approval:
        lines.append(
            f"{words['proposed']}: {approval.subject_ref} {approval.amount} {case.currency} ({words['by']} "
            f"{_username(session, approval.requested_by_id)}): {literal(approval.comment)}"
        )
    handler = _username(session, case.handler_id)
    requester = _username(session, approval.requested_by_id) if approval else None
    lines.append(f"{words['decides']}: " + who_may_decide(DECISION_KIND[move.input_kind], handler=handler,
                                                          requester=requester, language=language))  # fmt: skip
    lines.append(f"{words['choices']}:\n\n" + "\n".join(choice_lines(move.input_kind.value, language)))
    if step is not None and step.waiting_key and not step.waiting_key.endswith("-1"):
        lines += last_refusal(session, case.id or 0, step.waiting_key.rsplit("-", 1)[0] + "-", language)
    lines.append(words["sign"])
    return "\n\n".join(lines)


def due_line(step: Step, *, now: datetime, tz: ZoneInfo, language: str) -> str:
    """``2026-03-05 Thu 16:00 (Asia/Shanghai) · in 2 d 3 h · <rule>``: a step's deadline as a form shows it."""
    assert step.due_at is not None
    line = StepLine(step.name, str(step.status), None, step.due_at, step.policy_rule, step.escalation_level)
    return (f"{office_time(step.due_at, tz=tz, language=language)} ({tz.key}) · "
            f"{due_words(line, now=now, language=language)} · {literal(step.policy_rule)}")  # fmt: skip


# --- a person's decision ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionResult:
    """``applied``: the decision changed the case; ``refused``: why not (the flow waits again, new key);
    ``stale``: the key was already answered (a restarted run replaying a stored answer)."""

    applied: bool
    refused: str | None = None
    stale: bool = False


@dataclass(frozen=True)
class Given:
    """A person's decision on a step, as the workflow applies it."""

    case: Case
    step: Step
    member: Staff
    answer: Mapping[str, Any]
    now: datetime

    @property
    def actor(self) -> str:
        return self.member.username

    @property
    def choice(self) -> str:
        return str(self.answer.get("decision", "") or "")

    def parts(self) -> tuple[Case, Step, Staff, Mapping[str, Any], datetime, str]:
        """(case, step, member, answer, now, choice), for the functions that apply each kind of decision."""
        return self.case, self.step, self.member, self.answer, self.now, self.choice


DECISION_KIND = {
    InputKind.claim_review: DecisionKind.review,
    InputKind.documents: DecisionKind.documents,
    InputKind.payment: DecisionKind.review,
    InputKind.complaint_decision: DecisionKind.review,
    InputKind.inquiry_answer: DecisionKind.review,
    InputKind.second_approval: DecisionKind.second_approval,
}


def holder_or_supervisor(session: Session, desk: Desk, *, case: Case, by: str, code: str, now: datetime) -> Staff:
    """``by`` with their current code, who must be the case's handler or a supervisor or manager.

    Raises:
        CodeRefused: the code. NotAllowed: neither the case's handler nor a supervisor or manager.
    """
    member = authenticate(session, desk, username=by, code=code, now=now)
    if member.id != case.handler_id and StaffRole(member.role) not in (StaffRole.supervisor, StaffRole.manager):
        raise NotAllowed(f"{member.username} is not the handler of {case.number}, nor a supervisor or manager")
    return member


def authenticate(session: Session, desk: Desk, *, username: str, code: str, now: datetime) -> Staff:
    """The staff member behind a form: enrolled, active, and holding their current code (used once)."""
    from claimflow.secrets import decrypt

    # the member's row is locked until the decision commits: the same code given to two cases at the same moment
    # is accepted once (the second reads the counter the first stored), on PostgreSQL as on SQLite
    member = session.exec(
        select(Staff)
        .where(Staff.username == username.strip())
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if member is None:
        raise NotAllowed(f"no staff member '{username}'")
    if not member.totp_secret:
        raise NotAllowed(f"{member.username} is not enrolled for approval codes (claimflow staff enroll)")
    if member.codes_locked_until is not None and member.codes_locked_until > now:
        raise CodeRefused(f"{member.username}'s approval codes are locked after {MAX_WRONG_CODES} wrong ones, until "
                          f"{member.codes_locked_until:%H:%M} UTC")  # fmt: skip
    try:
        counter = verify_code(
            decrypt(desk.settings, member.totp_secret), code, now=now, last_counter=member.totp_last_counter
        )
    except CodeRefused:  # counted (the refusal's transaction commits it), locked at MAX_WRONG_CODES in a row
        member.codes_refused, member.codes_locked_until = after_wrong_code(member.codes_refused, now=now)
        session.add(member)
        raise
    member.totp_last_counter = counter
    member.codes_refused, member.codes_locked_until = 0, None
    session.add(member)
    return member


def decide(
    session: Session, desk: Desk, *, case_id: int, key: str, answer: Mapping[str, Any], now: datetime
) -> DecisionResult:
    """Apply a person's decision given under ``key``; refuse it (recorded, new key) if they may not."""
    case = session.get(Case, case_id, with_for_update=True)
    if case is None:
        raise NotFound(f"no case with id {case_id}")
    step = session.exec(select(Step).where(Step.case_id == case_id, Step.waiting_key == key)).first()
    if step is None:
        return DecisionResult(applied=False, stale=True)
    input_kind = key_kind(key)
    try:
        member = authenticate(
            session, desk, username=str(answer.get("staff", "")), code=str(answer.get("approval_code", "")), now=now
        )
        approval = _pending_approval(session, case_id)
        check_decider(
            Decider(member.id or 0, member.username, member.role, member.active),
            kind=DECISION_KIND[input_kind],
            handler_id=case.handler_id,
            assignee_id=step.assignee_id,
            requester_id=approval.requested_by_id if approval else None,
        )
        with session.begin_nested():  # a refusal part-way undoes what the decision had changed (the code stays used)
            _apply(session, desk, Given(case, step, member, answer, now), input_kind)
    except (CodeRefused, NotAllowed, IllegalTransition, InvalidInput) as refused:
        _refuse(session, case=case, step=step, key=key, who=str(answer.get("staff", "")), reason=str(refused), now=now)
        return DecisionResult(applied=False, refused=str(refused))
    return DecisionResult(applied=True)


def _refuse(session: Session, *, case: Case, step: Step, key: str, who: str, reason: str, now: datetime) -> None:
    """Record a refused attempt and wait again under a new key (a key answered once cannot be asked again)."""
    stem, _, attempt = key.rpartition("-")
    step.waiting_key = f"{stem}-{int(attempt) + 1}" if attempt.isdigit() else f"{key}-2"
    session.add(step)
    append_event(
        session,
        case=case,
        actor=who[:64] or "unknown",
        type="decision_refused",
        data={"step": step.name, "key": key, "reason": reason},
        now=now,
    )


def _amount(answer: Mapping[str, Any], field: str = "amount") -> Decimal:
    try:
        value = Decimal(str(answer.get(field)))
    except InvalidOperation:
        raise InvalidInput(f"{field}: {answer.get(field)!r} is not an amount") from None
    if not value.is_finite() or value < 0:
        raise InvalidInput(f"{field}: {value} is not an amount of money")
    return value.quantize(Decimal("0.01"))


def _approved_amount(session: Session, case: Case) -> Decimal | None:
    """The amount of the claim's last approval (its ``approve`` or ``approve_partly`` move, made after a second
    approval where one was needed), or None."""
    last = session.exec(
        select(Event)
        .where(Event.case_id == case.id, col(Event.type).in_(("approve", "approve_partly")))
        .order_by(col(Event.sequence).desc())
    ).first()
    amount = last.data.get("amount") if last is not None else None
    return Decimal(str(amount)).quantize(Decimal("0.01")) if amount is not None else None


def advanced_amount(session: Session, case: Case) -> Decimal:
    """What was paid on the claim in advance (``advance_paid`` events: PRC Insurance Law art. 25)."""
    events = session.exec(select(Event).where(Event.case_id == case.id, Event.type == "advance_paid"))
    return sum((Decimal(str(e.data.get("amount", "0"))) for e in events), Decimal(0)).quantize(Decimal("0.01"))


def _apply(session: Session, desk: Desk, given: Given, input_kind: InputKind) -> None:
    case, step, answer, now, actor = given.case, given.step, given.answer, given.now, given.actor
    if input_kind == InputKind.claim_review:
        _claim_review(session, desk, given)
    elif input_kind == InputKind.documents:
        documents_in(session, desk, case=case, step=step, actor=actor, now=now,
                     data={"documents": list(answer.get("documents") or [])})  # fmt: skip
    elif input_kind == InputKind.second_approval:
        _second_approval(session, desk, given)
    elif input_kind == InputKind.payment:
        amount = _amount(answer)
        check_payment(amount, approved=_approved_amount(session, case), advanced=advanced_amount(session, case))
        _move(
            session,
            case=case,
            action="record_payment",
            actor=actor,
            now=now,
            data={"amount": str(amount), "reference": str(answer.get("reference", ""))},
        )
        close_step(session, case=case, step=step, now=now, outcome="paid", actor=actor)
        _tell_customer(
            session,
            case=case,
            template="payment_made",
            now=now,
            key=f"paid:{case.number}",
            context={
                "amount": str(amount),
                "currency": case.currency,
                "paid_at": now,
                "account_hint": str(answer.get("account_hint", "") or "-"),
            },
        )
    elif input_kind == InputKind.complaint_decision:
        _complaint_decision(session, desk, given)
    elif input_kind == InputKind.inquiry_answer:
        _answer_inquiry(session, given)


def _answer_inquiry(session: Session, given: Given) -> None:
    """The handler's answer goes to the customer (their channel, their language, through the wording check) and
    the step is met when it is queued. An answer the wording check holds back is refused: the handler rewrites it
    in the form, rather than the customer waiting on a ``fix_wording`` step."""
    case, step, _member, answer, now, _choice = given.parts()
    text = str(answer.get("answer", "") or "").strip()
    if not text:
        raise InvalidInput("answer: the answer the customer is sent is empty")
    _move(session, case=case, action="answer", actor=given.actor, now=now, data={"answer": text})
    queued = _tell_customer(session, case=case, template="inquiry_answer", now=now, key=f"answer:{case.number}",
                            context={"answer": text}, actor=given.actor)  # fmt: skip
    if queued.violations:
        raise InvalidInput("answer: the wording check held it back: "
                           + "; ".join(f"{v.rule_id}: {v.explanation}" for v in queued.violations))  # fmt: skip
    close_step(session, case=case, step=step, now=now, outcome="answered", actor=given.actor)


def _claim_review(session: Session, desk: Desk, given: Given) -> None:
    case, step, member, answer, now, choice = given.parts()
    actor = member.username
    reasons, clause = str(answer.get("reasons", "")).strip(), str(answer.get("clause", "")).strip()
    if choice == "request_documents":
        customer = session.get(Customer, case.customer_id)
        plan = care_plan(
            elderly=bool(customer and customer.elderly),
            vulnerable=bool(customer and customer.vulnerable),
            preferred=customer.preferred_channel if customer else "email",
        )
        typed = [d.strip() for d in str(answer.get("documents", "") or "").split(";") if d.strip()]
        documents = typed or list(documents_for(case.product_line, simplified=plan.simplified_documents))
        already = session.exec(select(DocumentRequirement).where(DocumentRequirement.case_id == case.id)).first()
        if already is not None:
            raise InvalidInput("the complete list of missing documents was already sent once; it cannot be sent again")
        _move(
            session,
            case=case,
            action="request_documents",
            actor=actor,
            now=now,
            data={"documents": documents},
        )
        for document in documents:
            session.add(DocumentRequirement(case_id=case.id or 0, document_type=document[:64], requested_at=now))
        pause_step(session, case=case, step=step, now=now, reason="awaiting documents from the customer")
        _tell_customer(
            session,
            case=case,
            template="missing_documents",
            now=now,
            key=f"documents:{case.number}",
            context={"documents": documents, "due_at": now + timedelta(days=desk.settings.documents_reply_days)},
        )
        return
    if choice == "investigate":
        if case.status != "under_review":
            raise InvalidInput("the claim is already under investigation")
        _move(session, case=case, action="start_investigation", actor=actor, now=now)
        close_step(session, case=case, step=step, now=now, outcome="investigate", actor=actor)
        open_step(session, desk, case=case, name="investigation", now=now, actor=actor)
        return
    if choice not in ("approve", "approve_partly", "reject"):
        raise InvalidInput(
            f"decision: {choice!r} is not one of approve, approve_partly, reject, request_documents, investigate"
        )
    amount = _amount(answer) if choice != "reject" else Decimal("0.00")
    if choice == "reject" and (not reasons or not clause):
        raise InvalidInput("a rejection states its reasons and the clause relied on")
    if choice == "approve_partly" and (not reasons or not clause):  # the letter must state both (wording rules)
        raise InvalidInput("a partial approval states its reasons and the clause relied on")
    advanced = advanced_amount(session, case) if choice != "reject" else Decimal(0)
    if advanced and amount < advanced:  # the final payment is the difference: it cannot be below zero
        raise InvalidInput(f"amount: {amount} is below the {advanced} already paid in advance (art. 25)")
    if choice != "reject" and needs_second_approval(amount, desk.settings.second_approval_threshold):
        session.add(
            Approval(
                case_id=case.id or 0,
                subject="decision",
                subject_ref=choice,
                amount=amount,
                requested_by_id=member.id or 0,
                comment=reasons or None,
                requested_at=now,
            )
        )
        close_step(session, case=case, step=step, now=now, outcome=f"{choice} (needs second approval)", actor=actor)
        append_event(
            session,
            case=case,
            actor=actor,
            type="second_approval_requested",
            data={"decision": choice, "amount": amount, "reasons": reasons, "clause": clause},
            now=now,
        )
        open_step(
            session,
            desk,
            case=case,
            name="second_approval",
            now=now,
            actor=actor,
            assignee_id=None,
            input_kind=InputKind.second_approval,
        )
        return
    _decide_claim(
        session, case=case, choice=choice, amount=amount, reasons=reasons, clause=clause, actor=actor, now=now
    )
    close_step(session, case=case, step=step, now=now, outcome=choice, actor=actor)


def _decide_claim(
    session: Session, *, case: Case, choice: str, amount: Decimal, reasons: str, clause: str, actor: str, now: datetime
) -> None:
    data: dict[str, Any] = {"amount": str(amount)} if choice != "reject" else {}
    if reasons:
        data["reasons"] = reasons
    if clause:
        data["clause"] = clause
    _move(session, case=case, action=choice, actor=actor, now=now, data=data)
    _tell_customer(
        session,
        case=case,
        template="decision",
        now=now,
        key=f"decision:{case.number}:{choice}",
        context={
            "outcome": case.outcome,
            "amount": str(amount),
            "currency": case.currency,
            "reasons": reasons,
            "clause": clause,
            "jurisdiction": case.jurisdiction,
        },
    )
    advanced = advanced_amount(session, case) if choice != "reject" else Decimal(0)
    if advanced and amount.quantize(Decimal("0.01")) == advanced:  # the advance paid it all: nothing left to pay
        _move(session, case=case, action="record_payment", actor="system", now=now,
              data={"amount": "0.00", "reference": "", "settled_by_advance": str(advanced)})  # fmt: skip


def _second_approval(session: Session, desk: Desk, given: Given) -> None:
    case, step, member, answer, now, choice = given.parts()
    approval = _pending_approval(session, case.id or 0)
    if approval is None:
        raise InvalidInput("there is no decision waiting for a second approval")
    if choice not in ("approve", "reject"):
        raise InvalidInput(f"decision: {choice!r} is not one of approve, reject")
    approval.approver_id = member.id
    approval.decision = "approved" if choice == "approve" else "rejected"
    approval.comment = "; ".join(x for x in (approval.comment, str(answer.get("comment", "")).strip()) if x) or None
    approval.decided_at = now
    session.add(approval)
    append_event(
        session,
        case=case,
        actor=member.username,
        type="second_approval_decided",
        data={"decision": approval.decision, "proposal": approval.subject_ref, "amount": approval.amount},
        now=now,
    )
    close_step(session, case=case, step=step, now=now, outcome=approval.decision, actor=member.username)
    if choice == "approve":
        requester = _username(session, approval.requested_by_id) or member.username
        asked = _proposal(session, case.id or 0)  # what the handler decided, as the customer is to be told it
        _decide_claim(
            session,
            case=case,
            choice=approval.subject_ref or "approve",
            amount=approval.amount or Decimal(0),
            reasons=str(asked.get("reasons") or ""),
            clause=str(asked.get("clause") or ""),
            actor=requester,
            now=now,
        )
    else:
        name = "investigation" if case.status == "investigating" else "review"
        open_step(session, desk, case=case, name=name, now=now, actor=member.username)


def _proposal(session: Session, case_id: int) -> Mapping[str, Any]:
    """The decision last put to a second approver: its reasons and clause go into the customer's letter (the
    approvers' own comments stay on the approval, for the audit, and are not sent)."""
    event = session.exec(
        select(Event)
        .where(Event.case_id == case_id, Event.type == "second_approval_requested")
        .order_by(col(Event.sequence).desc())
    ).first()
    return event.data if event is not None else {}


def _complaint_decision(session: Session, desk: Desk, given: Given) -> None:
    case, step, member, answer, now, choice = given.parts()
    actor = member.username
    remedy, reasons = str(answer.get("remedy", "")).strip(), str(answer.get("reasons", "")).strip()
    if choice == "mediate":
        _move(session, case=case, action="start_mediation", actor=actor, now=now)
        _fresh_key(session, step)
        return
    if choice == "refer_outside":
        body = str(answer.get("body", "")).strip() or outside_body(desk, case)
        _move(session, case=case, action="refer_outside", actor=actor, now=now, data={"body": body})
        close_step(session, case=case, step=step, now=now, outcome="referred", actor=actor)
        return
    data = {k: v for k, v in (("remedy", remedy), ("reasons", reasons)) if v}
    _move(session, case=case, action=choice, actor=actor, now=now, data=data)
    close_step(session, case=case, step=step, now=now, outcome=case.outcome or choice, actor=actor)
    _tell_customer(
        session,
        case=case,
        template="complaint_outcome",
        now=now,
        key=f"outcome:{case.number}",
        context={
            "outcome": case.outcome,
            "findings": reasons or remedy,
            "remedy": remedy or "-",
            "jurisdiction": case.jurisdiction,
        },
    )


def outside_body(desk: Desk, case: Case) -> str:
    """Where the complainant can go next in the case's jurisdiction, in the desk's language (as recorded)."""
    return outside_body_name(desk.settings.outside_bodies, case.jurisdiction, desk.settings.default_language)


def _fresh_key(session: Session, step: Step) -> None:
    """A move that keeps the step open needs a fresh key for the next decision on it."""
    stem, _, attempt = (step.waiting_key or "").rpartition("-")
    step.waiting_key = f"{stem}-{int(attempt) + 1}" if attempt.isdigit() else step.waiting_key
    session.add(step)


def _tell_customer(
    session: Session,
    *,
    case: Case,
    template: str,
    context: Mapping[str, Any],
    key: str,
    now: datetime,
    actor: str = "system",
) -> Enqueued:
    return enqueue(
        session,
        template=template,
        recipient=f"customer:{case.customer_id}",
        context={"case_number": case.number, **context},
        idempotency_key=key,
        now=now,
        case=case,
        actor=actor,
    )


class CaseNotMovable(ClaimflowError):
    """An automatic move was asked of a case that needs a person."""


def advance(session: Session, desk: Desk, *, case_id: int, action: str, now: datetime) -> None:
    """Run an automatic move (``start`` or ``finish``) on the case."""
    case = session.get(Case, case_id, with_for_update=True)
    if case is None:
        raise NotFound(f"no case with id {case_id}")
    move = next_move(case.kind, case.status, pending_second_approval=_pending_approval(session, case_id) is not None)
    if isinstance(move, Finished) or (isinstance(move, Auto) and move.action != action):
        return  # done already, or another move is due: the flow reads the state again
    if isinstance(move, Ask):
        raise CaseNotMovable(f"{case.number} waits for a person ({move.input_kind.value}); nothing to do automatically")
    if action == "start":
        start(session, desk, case=case, now=now)
    elif action == "finish":
        finish(session, desk, case=case, now=now)
    else:
        raise InvalidInput(f"unknown automatic move {action!r}")

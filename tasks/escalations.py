"""The SLA watcher's pass and the supervisors' escalation decisions, in the database.

The watcher asks only for open steps whose ``next_check_at`` has come (a partial index on open steps), so
its cost follows what is due, not what is open. For each it records the reminders and escalations that came
due, tells the handler or the supervisors, and moves ``next_check_at`` to the next point in the schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm.attributes import flag_modified
from sqlmodel import Session, col, select

from models.approval import Decider, DecisionKind, NotAllowed, check_decider
from models.enums import StaffRole, StepStatus
from models.errors import IllegalTransition, InvalidInput, NotFound
from models.otp import CodeRefused
from models.tables import Approval, Case, Escalation, Event, Staff, Step
from models.watch import Schedule, WatchOutcome, what_is_due
from tasks.cases import append_event
from tasks.outbox import default_config, enqueue
from tasks.workflow import Desk, _apply_schedule, _schedule, _username, authenticate, last_refusal


@dataclass
class WatchReport:
    steps_checked: int = 0
    reminders: list[tuple[str, str, float]] = field(default_factory=list)
    escalations: list[int] = field(default_factory=list)
    """Ids of the escalations raised in this pass (their runs start after the commit)."""
    lines: list[str] = field(default_factory=list)


def due_steps(session: Session, *, now: datetime, limit: int) -> list[Step]:
    """Open steps whose next reminder or deadline has come, oldest first, locked against other watchers."""
    statement = (
        select(Step)
        .where(Step.status == StepStatus.open, col(Step.next_check_at) <= now)
        .order_by(col(Step.next_check_at))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return list(session.exec(statement))


_PROGRESS = ("reminders_done", "escalation_level", "next_check_at")


def _last_escalations(session: Session, step_ids: list[int]) -> dict[int, Escalation]:
    """The highest escalation raised so far for each of these steps (one query for the whole pass)."""
    last: dict[int, Escalation] = {}
    if step_ids:
        for escalation in session.exec(select(Escalation).where(col(Escalation.step_id).in_(step_ids))):
            if escalation.step_id not in last or escalation.level > last[escalation.step_id].level:
                last[escalation.step_id] = escalation
    return last


def _usernames(session: Session, staff_ids: set[int]) -> dict[int, str]:
    if not staff_ids:
        return {}
    rows = session.exec(select(Staff.id, Staff.username).where(col(Staff.id).in_(staff_ids)))
    return {staff_id: username for staff_id, username in rows if staff_id is not None}


def watch_pass(session: Session, *, now: datetime, limit: int = 1000) -> WatchReport:
    """One pass of the watcher at ``now``; the caller commits, then starts the escalation runs.

    Its cost follows what is due: one query for the due steps, one each for their cases, their last
    escalations and their assignees, then per step only the writes (events, messages, escalations). The
    steps' own progress (and superseded escalations) is written at the end, in one flush.
    """
    report = WatchReport()
    steps = due_steps(session, now=now, limit=limit)
    if not steps:
        return report
    cases = {c.id: c for c in session.exec(select(Case).where(col(Case.id).in_({s.case_id for s in steps})))}
    last_escalations = _last_escalations(session, [s.id for s in steps if s.id is not None])
    usernames = _usernames(session, {s.assignee_id for s in steps if s.assignee_id is not None})
    config = default_config()
    progress: list[tuple[Step, WatchOutcome]] = []
    superseded: list[Escalation] = []
    for step in steps:
        report.steps_checked += 1
        case = cases.get(step.case_id)
        assert case is not None
        last = last_escalations.get(step.id or 0)
        schedule = Schedule.from_json(step.schedule)
        outcome = what_is_due(
            schedule,
            reminders_done=step.reminders_done,
            escalation_level=step.escalation_level,
            now=now,
            last_escalation_decided=last is not None and last.decision is not None,
        )
        assignee = usernames.get(step.assignee_id) if step.assignee_id is not None else None
        for reminder in outcome.reminders:
            percent = round(reminder.fraction * 100)
            append_event(session, case=case, actor="sla-watch", type="reminder",
                         data={"step": step.name, "percent": percent, "due": step.due_at}, now=now)  # fmt: skip
            if assignee:
                enqueue(
                    session, template="staff_reminder", recipient=f"staff:{assignee}", case=case, now=now,
                    context={"case_number": case.number, "step": step.name, "percent": percent,
                             "handler_name": assignee, "due_at": step.due_at,
                             "case_url": f"claimflow case show {case.number}"},
                    idempotency_key=f"reminder:{step.id}:{step.attempt}:{step.due_at}:{percent}", config=config,
                )  # fmt: skip
            report.reminders.append((case.number, step.name, reminder.fraction))
            report.lines.append(f"{case.number} {step.name}: reminder at {percent}% to {assignee or 'nobody'}")
        ladder = schedule.escalations
        for point in outcome.escalations:
            if last is not None and last.decision is None:
                superseded.append(last)
            following = [e.at for e in ladder if e.level > point.level]
            escalation = Escalation(
                step_id=step.id or 0, case_id=case.id or 0, level=point.level, role=StaffRole(point.role),
                reason=f"{step.name} due {step.due_at.isoformat() if step.due_at else '-'} passed ({step.policy_rule})",
                raised_at=now, decide_by=min(following, default=None),
            )  # fmt: skip
            session.add(escalation)
            session.flush()
            last = escalation
            append_event(session, case=case, actor="sla-watch", type="escalated",
                         data={"step": step.name, "level": point.level, "role": point.role,
                               "escalation": escalation.id, "due": step.due_at}, now=now)  # fmt: skip
            enqueue(
                session, template="staff_breach_escalation", recipient=f"role:{point.role}", case=case, now=now,
                context={"case_number": case.number, "step": step.name, "handler_name": assignee or "-",
                         "supervisor_name": point.role, "due_at": step.due_at,
                         "approval_url": "Prefect UI: flow run "
                         f"{case.number}-escalation-{point.level}",
                         "approval_command": f"claimflow escalation decide {escalation.id} --staff USERNAME "
                         "--code CODE --decision extend|reassign|take_over"},
                idempotency_key=f"escalation:{escalation.id}", config=config,
            )  # fmt: skip
            report.escalations.append(escalation.id or 0)
            report.lines.append(f"{case.number} {step.name}: breached, escalated to level {point.level} ({point.role})")
        progress.append((step, outcome))
    # Written last so that the per-event flushes above do not each carry an UPDATE: one flush, batched.
    for escalation in superseded:
        escalation.decision, escalation.decided_at = "superseded", now
        session.add(escalation)
    for step, outcome in progress:
        step.reminders_done = outcome.reminders_done
        step.escalation_level = outcome.escalation_level
        step.next_check_at = outcome.next_check_at
        for name in _PROGRESS:  # every row the same UPDATE, so the flush sends them as one executemany
            flag_modified(step, name)
        session.add(step)
    session.flush()
    return report


# --- a supervisor's decision -------------------------------------------------------------------------------


def escalation_key(session: Session, escalation: Escalation) -> str:
    """The key the escalation run waits on: a new one after every refused attempt."""
    refused = session.exec(
        select(Event).where(Event.case_id == escalation.case_id, Event.type == "decision_refused")
    ).all()
    stem = f"escalation-{escalation.id}-"
    attempts = sum(1 for e in refused if str(e.data.get("key", "")).startswith(stem))
    return f"{stem}{attempts + 1}"


@dataclass(frozen=True)
class EscalationView:
    escalation_id: int
    case_number: str
    level: int
    role: str
    open: bool
    key: str
    description: str


def escalation_view(session: Session, *, escalation_id: int) -> EscalationView:
    escalation = session.get(Escalation, escalation_id)
    if escalation is None:
        raise NotFound(f"no escalation {escalation_id}")
    case = session.get(Case, escalation.case_id)
    step = session.get(Step, escalation.step_id)
    assert case is not None and step is not None
    description = "\n\n".join(
        [
            f"**{case.number}** · {case.kind} · step **{step.name}** breached · level {escalation.level} "
            f"({escalation.role})",
            f"Due was {step.due_at.isoformat(timespec='minutes') if step.due_at else '-'} ({step.policy_rule})",
            f"Handler: {_username(session, step.assignee_id) or '-'}; extensions so far: "
            f"{', '.join(step.extensions) or 'none'}",
            "Decide: extend the deadline (the customer is told), reassign, or take over. Name yourself and give "
            "your current approval code; the case's handler cannot decide.",
            *last_refusal(session, escalation.case_id, f"escalation-{escalation.id}-"),
        ]
    )
    return EscalationView(
        escalation_id, case.number, escalation.level, escalation.role, escalation.decision is None,
        escalation_key(session, escalation), description,
    )  # fmt: skip


@dataclass(frozen=True)
class EscalationResult:
    applied: bool
    refused: str | None = None
    stale: bool = False


def decide_escalation(
    session: Session, desk: Desk, *, escalation_id: int, key: str, answer: Mapping[str, Any], now: datetime
) -> EscalationResult:
    """Apply a supervisor's (or, from level 2, a manager's) decision: extend, reassign or take over.

    Every decision is an ``Approval`` and an ``Event``; the approver is never the case's handler. A refused
    attempt is recorded and the run waits again under a new key.
    """
    escalation = session.get(Escalation, escalation_id, with_for_update=True)
    if escalation is None:
        raise NotFound(f"no escalation {escalation_id}")
    if escalation.decision is not None or key != escalation_key(session, escalation):
        return EscalationResult(applied=False, stale=True)
    case = session.get(Case, escalation.case_id)
    step = session.get(Step, escalation.step_id)
    assert case is not None and step is not None
    who = str(answer.get("staff", ""))
    try:
        member = authenticate(session, desk, username=who, code=str(answer.get("approval_code", "")), now=now)
        check_decider(Decider(member.id or 0, member.username, member.role, member.active),
                      kind=DecisionKind.escalation, handler_id=case.handler_id, level=escalation.level)  # fmt: skip
        _apply_escalation(session, desk, case=case, step=step, escalation=escalation, member=member,
                          answer=answer, now=now)  # fmt: skip
    except (CodeRefused, NotAllowed, InvalidInput, IllegalTransition) as refused:
        append_event(session, case=case, actor=who[:64] or "unknown", type="decision_refused",
                     data={"step": step.name, "key": key, "reason": str(refused)}, now=now)  # fmt: skip
        return EscalationResult(applied=False, refused=str(refused))
    return EscalationResult(applied=True)


def _apply_escalation(session: Session, desk: Desk, *, case: Case, step: Step, escalation: Escalation,
                      member: Staff, answer: Mapping[str, Any], now: datetime) -> None:  # fmt: skip
    choice = str(answer.get("decision", ""))
    reason = str(answer.get("reason", "")).strip()
    detail: dict[str, Any] = {"step": step.name, "level": escalation.level}
    requester = escalation_requester(session, step, member)
    if choice == "extend":
        name = str(answer.get("extension", "")).strip() or "supervisor-extension"
        if not reason:
            raise InvalidInput("an extension states its reason (the customer is told)")
        previous = step.due_at
        step.extensions = [*step.extensions, name]
        _apply_schedule(step, _schedule(session, desk, case=case, step=step, now=now), now=now)
        if step.due_at is None or (previous is not None and step.due_at <= previous):
            raise InvalidInput(f"extension '{name}' does not move the deadline of {step.name} under the packs in force")
        detail.update(extension=name, previous_due=previous, due=step.due_at, reason=reason)
        enqueue(
            session, template="extension_notice", recipient=f"customer:{case.customer_id}", case=case, now=now,
            context={"case_number": case.number, "previous_due_at": previous, "due_at": step.due_at,
                     "reason": reason},
            idempotency_key=f"extension:{step.id}:{len(step.extensions)}",
        )  # fmt: skip
    elif choice in ("reassign", "take_over"):
        if choice == "take_over":
            new = member
        else:
            target = str(answer.get("reassign_to", "")).strip()
            found = session.exec(select(Staff).where(Staff.username == target)).first()
            if found is None or not found.active or found.role != StaffRole.handler:
                raise InvalidInput(f"reassign_to: '{target}' is not an active handler")
            new = found
        detail.update(previous=_username(session, step.assignee_id), assignee=new.username, reason=reason)
        step.assignee_id = new.id
        case.handler_id = new.id
        case.department_id = new.department_id
        session.add(case)
    else:
        raise InvalidInput(f"decision: {choice!r} is not one of extend, reassign, take_over")
    session.add(step)
    session.add(
        Approval(
            case_id=case.id or 0,
            subject="escalation",
            subject_ref=f"{choice}:{escalation.id}",
            requested_by_id=requester,
            approver_id=member.id,
            decision="approved",
            comment=reason or None,
            requested_at=escalation.raised_at,
            decided_at=now,
        )
    )
    escalation.decided_by_id = member.id
    escalation.decision = choice
    escalation.decided_at = now
    session.add(escalation)
    append_event(session, case=case, actor=member.username, type="escalation_decided",
                 data={"decision": choice, **detail}, now=now)  # fmt: skip


def escalation_requester(session: Session, step: Step, approver: Staff) -> int:
    """Who "asked" for an escalation decision: the step's assignee (the breach is theirs); where that is
    the approver themselves (a take-over of their own step cannot happen: they are not the handler), any
    other active member, so that the four-eyes constraint on ``approval`` holds."""
    if step.assignee_id is not None and step.assignee_id != approver.id:
        return step.assignee_id
    other = session.exec(select(Staff).where(Staff.id != approver.id, col(Staff.active).is_(True))).first()
    if other is None or other.id is None:
        raise InvalidInput("an escalation decision needs a second member of staff on record")
    return other.id

"""The SLA watcher's pass and the supervisors' escalation decisions, in the database.

The watcher asks only for open steps whose ``next_check_at`` has come (a partial index on open steps), so
its cost follows what is due, not what is open. For each it records the reminders and escalations that came
due, tells the handler or the supervisors, and moves ``next_check_at`` to the next point in the schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from claimflow.db import deferred_writes, describe_failure, insert_rows, one_of, update_rows
from claimflow.settings import get_settings
from models.approval import Decider, DecisionKind, NotAllowed, check_decider
from models.caseview import choice_lines, form_words, office_time, runs_url
from models.enums import StaffRole, StepStatus
from models.errors import IllegalTransition, InvalidInput, NotFound
from models.otp import CodeRefused
from models.tables import Approval, Case, Escalation, Event, Staff, Step
from models.watch import Schedule, WatchOutcome, escalation_run_name, what_is_due
from tasks.cases import NewEvent, append_event, append_events, chain_tips, new_run_key
from tasks.extensions import apply_extension
from tasks.outbox import Message, default_config, look_up, prepare_messages, queue_messages
from tasks.workflow import (
    Desk,
    _username,
    authenticate,
    due_line,
    last_refusal,
    staff_links_for,
)


@dataclass
class WatchReport:
    steps_checked: int = 0
    reminders: list[tuple[str, str, float]] = field(default_factory=list)
    escalations: list[int] = field(default_factory=list)
    """Ids of the escalations raised in this pass (their runs start after the commit)."""
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """The steps that could not be watched in this pass, a line each (case number, step, a reason free of
    personal data, when it is tried again): what an operator must look at."""

    def add(self, other: WatchReport) -> None:
        """Take in what another part of the same pass recorded (the steps it checked are counted already)."""
        self.reminders += other.reminders
        self.escalations += other.escalations
        self.lines += other.lines
        self.failures += other.failures


@dataclass(slots=True)
class DueStep:
    """What a pass reads of a due step, with its case's number and its assignee's username: one row of one
    query, not a ``Step``, a ``Case`` and a ``Staff`` loaded as objects."""

    id: int
    case_id: int
    name: str
    attempt: int
    assignee_id: int | None
    due_at: datetime | None
    policy_rule: str
    schedule: dict[str, Any]
    reminders_done: int
    escalation_level: int
    ladder_round: int
    next_check_at: datetime | None
    number: str
    """The case's number."""
    assignee: str | None
    """The assignee's username."""
    case: _CaseKey = field(init=False)
    """The step's case, as its events and messages name it."""

    def __post_init__(self) -> None:
        self.case = _CaseKey(self.case_id, self.number)


@dataclass(frozen=True, slots=True)
class _CaseKey:
    id: int
    number: str


_WATCHED = (Step.id, Step.case_id, Step.name, Step.attempt, Step.assignee_id, Step.due_at, Step.policy_rule,
            Step.schedule, Step.reminders_done, Step.escalation_level, Step.ladder_round,
            Step.next_check_at)  # fmt: skip
"""What a pass reads of a step: its pauses, extensions and the rest are not decoded for every due step."""


def due_steps(session: Session, *, now: datetime, limit: int) -> list[DueStep]:
    """Open steps whose next reminder or deadline has come, oldest first, each locked with its case.

    PostgreSQL: ``FOR UPDATE OF step, case SKIP LOCKED``. A second watcher takes the steps the first left; a
    step whose case someone holds now (a decision, a reply being filed) waits for the next pass, a minute
    later, instead of racing them for the case's next event or waiting on them.
    """
    statement = (
        select(*_WATCHED, Case.number, Staff.username)  # type: ignore[call-overload]
        .join(Case, col(Case.id) == col(Step.case_id))
        .outerjoin(Staff, col(Staff.id) == col(Step.assignee_id))
        .where(Step.status == StepStatus.open, col(Step.next_check_at) <= now)
        .order_by(col(Step.next_check_at))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(of=[Step.__table__, Case.__table__], skip_locked=True)  # type: ignore[attr-defined]
    return [DueStep(*row) for row in session.execute(statement)]


@dataclass(frozen=True, slots=True)
class _Raised:
    """An escalation raised before: what a pass needs to know of it."""

    id: int
    round: int
    level: int
    decided: bool


_NONE = _Raised(0, 0, 0, decided=True)


def _last_escalations(session: Session, step_ids: list[int]) -> dict[int, _Raised]:
    """The last escalation raised so far for each of these steps, the highest level of its latest round (one
    query for the whole pass)."""
    last: dict[int, _Raised] = {}
    if step_ids:
        columns = (Escalation.id, Escalation.step_id, Escalation.round, Escalation.level, Escalation.decision)
        rows = session.execute(
            select(*columns).where(one_of(session, col(Escalation.step_id), step_ids))  # type: ignore[call-overload]
        )
        for escalation_id, step_id, ladder_round, level, decision in rows:
            if step_id not in last or (ladder_round, level) > (last[step_id].round, last[step_id].level):
                last[step_id] = _Raised(escalation_id, ladder_round, level, decision is not None)
    return last


@dataclass
class _Due:
    """One due step in a pass: what the rule says, and the escalations it raises (ids once inserted)."""

    step: DueStep
    outcome: WatchOutcome
    raised: list[dict[str, Any]] = field(default_factory=list)


RETRY_FAILED_AFTER = timedelta(minutes=15)
"""A due step that could not be watched is looked at again this much later (not in every pass)."""


def watch_pass(session: Session, *, now: datetime, limit: int = 1000) -> WatchReport:
    """One pass of the watcher at ``now``; the caller commits, then starts the escalation runs.

    Its cost follows what is due, and the number of statements does not: one query each for the due steps
    with their cases' numbers and their assignees, their last escalations, their cases' chain tips and the
    message keys already used; one insert each for the escalations, the events (chained per case in the order
    below) and the messages; one update each for the superseded escalations and the steps' progress. Per
    step, in order: its reminders (event, message to the assignee), then each escalation level that came due
    (event, message to the role), as the rule ``what_is_due`` says. The rows are read and written as rows,
    not loaded as ORM objects; steps and escalations the session already holds are expired, so they read
    what the pass wrote.

    The writes after the reads return nothing and run in ``deferred_writes``: on PostgreSQL the database
    updates the steps while this process renders the messages, and inserts the messages while it chains the
    events (the slowest part of the pass was each side waiting for the other on one connection).

    One step never stops the pass: a step whose schedule cannot be read is left out of the batch, and when the
    database refuses the batch's writes (a row someone wrote meanwhile, a constraint) they are undone (a
    savepoint) and the steps are written again one at a time, each in its own savepoint. A step that fails is
    recorded on its case (a ``watch_failed`` event naming the step and the kind of fault, no values), looked at
    again ``RETRY_FAILED_AFTER`` later, and listed in the report's ``failures``; the rest of the pass is written.
    """
    steps = due_steps(session, now=now, limit=limit)
    report = WatchReport(steps_checked=len(steps))
    if not steps:
        return report
    last_escalations = _last_escalations(session, [s.id for s in steps])
    due, superseded, unreadable = _decide(steps, last_escalations, now=now)
    try:
        with session.begin_nested():
            batch = _write_pass(session, due, superseded, now=now)
    except SQLAlchemyError:
        batch = WatchReport()
        for one in due:
            one.raised = [{key: value for key, value in row.items() if key != "id"} for row in one.raised]
            try:
                with session.begin_nested():
                    mine = [i for i in superseded if i == last_escalations.get(one.step.id, _NONE).id]
                    batch.add(_write_pass(session, [one], mine, now=now))
            except SQLAlchemyError as refused:
                unreadable.append((one.step, refused))
    report.add(batch)
    for step, error in unreadable:
        _record_failure(session, step, error, report, now=now)
    _expire_held(session, {s.id for s in steps})
    return report


def _write_pass(session: Session, due: list[_Due], superseded: list[int], *, now: datetime) -> WatchReport:
    """Write what a pass decided for these steps: escalations, events, messages, progress."""
    report = WatchReport()
    tips = chain_tips(session, {d.step.case_id for d in due})
    _insert_escalations(session, [row for d in due for row in d.raised])
    events, messages = _notices(due, report)
    looked_up = look_up(session, messages)
    with deferred_writes(session):
        _supersede(session, superseded, now=now)
        _record_progress(session, due)
        queue_messages(session, prepare_messages(looked_up, now=now, config=default_config()), now=now)
        append_events(session, events, now=now, tips=tips)
    return report


def _record_failure(session: Session, step: DueStep, error: Exception, report: WatchReport, *, now: datetime) -> None:
    """A step that could not be watched: an event on its case, its next look ``RETRY_FAILED_AFTER`` later, and a
    line in the report. The reason names the kind of fault only (a database error's text quotes values)."""
    reason = describe_failure(error)
    if not isinstance(error, SQLAlchemyError):
        reason = f"its stored schedule cannot be read: {reason}"
    retry_at = now + RETRY_FAILED_AFTER
    settings = get_settings()
    again = office_time(retry_at, tz=ZoneInfo(settings.office_timezone), language="en")
    report.failures.append(f"{step.number} {step.name}: not watched ({reason}); tried again at {again} "
                           f"({settings.office_timezone})")  # fmt: skip
    try:
        with session.begin_nested():
            session.execute(update(Step.__table__).where(col(Step.id) == step.id)  # type: ignore[attr-defined]
                            .values(next_check_at=retry_at))  # fmt: skip
            append_events(session, [NewEvent(step.case, "sla-watch", "watch_failed",
                                             {"step": step.name, "error": reason, "retry_at": retry_at})],
                          now=now, tips=chain_tips(session, {step.case_id}))  # fmt: skip
    except SQLAlchemyError as unrecorded:  # the case's own rows refuse it too: the next pass tries the step again
        report.failures.append(f"{step.number} {step.name}: the failure could not be recorded on the case "
                               f"({describe_failure(unrecorded)}); tried again in the next pass")  # fmt: skip


def _notices(due: list[_Due], report: WatchReport) -> tuple[list[NewEvent], list[Message]]:
    """The events and messages of a pass's due steps, in order; each noted in the report."""
    events: list[NewEvent] = []
    messages: list[Message] = []
    for d in due:
        step, case, assignee = d.step, d.step.case, d.step.assignee
        for reminder in d.outcome.reminders:
            percent = round(reminder.fraction * 100)
            events.append(NewEvent(case, "sla-watch", "reminder", {"step": step.name, "percent": percent,
                                                                   "due": step.due_at}))  # fmt: skip
            if assignee:
                messages.append(Message(
                    "staff_reminder", f"staff:{assignee}",
                    {"case_number": case.number, "step": step.name, "percent": percent, "handler_name": assignee,
                     "due_at": step.due_at, **staff_links_for(case.number, assignee)},
                    f"reminder:{step.id}:{step.attempt}:{step.due_at}:{percent}", case=case,
                ))  # fmt: skip
            report.reminders.append((case.number, step.name, reminder.fraction))
            report.lines.append(f"{case.number} {step.name}: reminder at {percent}% to {assignee or 'nobody'}")
        for row in d.raised:
            escalation_id, level, role = row["id"], row["level"], row["role"]
            events.append(NewEvent(case, "sla-watch", "escalated",
                                   {"step": step.name, "level": level, "role": role, "escalation": escalation_id,
                                    "due": step.due_at}))  # fmt: skip
            messages.append(Message(
                "staff_breach_escalation", f"role:{role}",
                {"case_number": case.number, "step": step.name, "handler_name": assignee or "-",
                 "supervisor_name": role, "due_at": step.due_at,
                 "approval_url": runs_url(get_settings().resolved_ui_url, search=escalation_run_name(
                     case.number, level=level, ladder_round=step.ladder_round)),
                 "approval_command": f"claimflow escalation decide {escalation_id} --staff USERNAME "
                 "--code CODE --decision extend|reassign|take_over"},
                f"escalation:{escalation_id}", case=case,
            ))  # fmt: skip
            report.escalations.append(escalation_id)
            report.lines.append(f"{case.number} {step.name}: breached, escalated to level {level} ({role})")
    return events, messages


def _decide(
    steps: list[DueStep], last_escalations: Mapping[int, _Raised], *, now: datetime
) -> tuple[list[_Due], list[int], list[tuple[DueStep, Exception]]]:
    """What the rule says for each step, the escalation rows to raise, the ids of the earlier escalations
    they supersede, and the steps whose stored schedule cannot be read (with the error).

    A step that climbs two levels in one pass raises both; the lower one is superseded at once, as the
    higher one is raised.
    """
    due: list[_Due] = []
    superseded: list[int] = []
    unreadable: list[tuple[DueStep, Exception]] = []
    for step in steps:
        last = last_escalations.get(step.id)
        try:
            schedule = Schedule.from_json(step.schedule)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            unreadable.append((step, error))
            continue
        outcome = what_is_due(
            schedule,
            reminders_done=step.reminders_done,
            escalation_level=step.escalation_level,
            now=now,
            # a decision in an earlier round (the extension that started this one) does not stop this round
            last_escalation_decided=last is not None and last.round == step.ladder_round and last.decided,
        )
        item = _Due(step, outcome)
        open_row: dict[str, Any] | None = None
        for point in outcome.escalations:
            if open_row is not None:
                open_row.update(decision="superseded", decided_at=now)
            elif last is not None and not last.decided:
                superseded.append(last.id)
            following = [e.at for e in schedule.escalations if e.level > point.level]
            due_at = step.due_at.isoformat() if step.due_at else "-"
            open_row = {
                "step_id": step.id, "case_id": step.case_id, "round": step.ladder_round, "level": point.level,
                "role": StaffRole(point.role).value, "reason": f"{step.name} due {due_at} passed ({step.policy_rule})",
                "raised_at": now, "decide_by": min(following, default=None), "decided_by_id": None,
                "decision": None, "decided_at": None, "flow_run_id": None, "run_key": new_run_key(),
            }  # fmt: skip
            item.raised.append(open_row)
        due.append(item)
    return due, superseded, unreadable


def _insert_escalations(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert the escalations a pass raises, in one statement; each row gets its ``id``."""
    table = Escalation.__table__  # type: ignore[attr-defined]
    written = insert_rows(session, table, rows, returning=(table.c.id, table.c.step_id, table.c.level))
    ids = {(step_id, level): escalation_id for escalation_id, step_id, level in written}
    for row in rows:
        row["id"] = ids[(row["step_id"], row["level"])]


def _supersede(session: Session, escalation_ids: list[int], *, now: datetime) -> None:
    """Mark undecided escalations superseded by a higher level (one update)."""
    if escalation_ids:
        session.execute(
            update(Escalation.__table__)  # type: ignore[attr-defined]
            .where(one_of(session, col(Escalation.id), escalation_ids))
            .values(decision="superseded", decided_at=now)
        )


_PROGRESS = ("reminders_done", "escalation_level", "next_check_at")


def _record_progress(session: Session, due: list[_Due]) -> None:
    """Move every due step on: what it has recorded and when to look again (one update)."""
    progress = [{"id": d.step.id, **{name: getattr(d.outcome, name) for name in _PROGRESS}} for d in due]
    update_rows(session, Step.__table__, progress)  # type: ignore[attr-defined]


def _expire_held(session: Session, step_ids: set[int]) -> None:
    """The pass wrote rows, not objects: any of these steps (and any escalation) the session holds is expired,
    so it reads the rows again when next used."""
    for held in list(session.identity_map.values()):
        if (isinstance(held, Step) and held.id in step_ids) or isinstance(held, Escalation):
            session.expire(held)


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


def escalation_view(session: Session, *, escalation_id: int, desk: Desk | None = None,
                    now: datetime | None = None) -> EscalationView:  # fmt: skip
    """The escalation as its form shows it (in the desk's language, times in the office's zone)."""
    escalation = session.get(Escalation, escalation_id)
    if escalation is None:
        raise NotFound(f"no escalation {escalation_id}")
    case = session.get(Case, escalation.case_id)
    step = session.get(Step, escalation.step_id)
    assert case is not None and step is not None
    settings = desk.settings if desk is not None else None
    language = settings.default_language if settings else "en"
    tz = ZoneInfo(settings.office_timezone if settings else "UTC")
    words = form_words(language)
    due = due_line(step, now=now or escalation.raised_at, tz=tz, language=language) if step.due_at else "-"
    description = "\n\n".join(
        [
            f"**{case.number}** · {case.kind} · {words['breached'].format(step.name)} · "
            + words["level"].format(escalation.level, escalation.role),
            f"{words['due_was']}: {due}",
            f"{words['handler']}: {_username(session, step.assignee_id) or '-'}; {words['extensions']}: "
            f"{', '.join(step.extensions) or words['none']}",
            f"{words['choices']}:\n\n" + "\n".join(choice_lines("escalation", language)),
            words["escalation"],
            *last_refusal(session, escalation.case_id, f"escalation-{escalation.id}-", language),
            words["sign"],
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
    raised = session.get(Escalation, escalation_id)
    if raised is None:
        raise NotFound(f"no escalation {escalation_id}")
    # the case's row first, then the escalation's: the order the watcher takes them in (a decision on the
    # case and a watcher pass never wait on each other crosswise), and the case's events chain in turn
    case = session.get(Case, raised.case_id, with_for_update=True)
    escalation = session.get(Escalation, escalation_id, with_for_update=True, populate_existing=True)
    assert case is not None and escalation is not None
    if escalation.decision is not None or key != escalation_key(session, escalation):
        return EscalationResult(applied=False, stale=True)
    step = session.get(Step, escalation.step_id)
    assert step is not None
    who = str(answer.get("staff", ""))
    try:
        member = authenticate(session, desk, username=who, code=str(answer.get("approval_code", "")), now=now)
        check_decider(Decider(member.id or 0, member.username, member.role, member.active),
                      kind=DecisionKind.escalation, handler_id=case.handler_id, assignee_id=step.assignee_id,
                      level=escalation.level)  # fmt: skip
        with session.begin_nested():  # a refusal part-way (an extension the packs do not allow) undoes it all
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
        previous, due = apply_extension(session, desk, case=case, step=step, name=name, reason=reason, now=now)
        detail.update(extension=name, previous_due=previous, due=due, reason=reason)
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

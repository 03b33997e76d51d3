"""Extending a step's deadline: at breach by the supervisor deciding the escalation (``tasks.escalations``), or
before the deadline passes, asked for by the handler (``extend_step``: ``claimflow case extend``, the UI's
``extend-step`` deployment).

An extension is one of the rules the packs in force give the step (``extensions:`` in ``policies/*.yaml``: how
much, how often, approved by whom). Where a rule names an approver (``approved_by``), the extension is made by a
supervisor or manager who is neither the step's assignee nor the case's handler (four eyes): the handler asks
them, and they extend. Where it names none (a regulator's own extension, e.g. a complex complaint), the handler
extends it themselves. Either way the customer is told the new date and the reason at once, before the old date
passes, and the step's reminders and escalation ladder start afresh from the new deadline.

Each function takes the session first and leaves the commit to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from models.approval import NotAllowed
from models.enums import StaffRole, StepStatus
from models.errors import InvalidInput
from models.sla import Extension
from models.tables import Approval, Case, Step
from tasks.cases import append_event, get_case
from tasks.outbox import enqueue
from tasks.workflow import STEP_SLA, Desk, _apply_schedule, _schedule, authenticate

SUPERVISORS = (StaffRole.supervisor, StaffRole.manager)


@dataclass(frozen=True)
class Extended:
    """What an extension did: the step, the rule applied, the deadline before and after."""

    number: str
    step: str
    extension: str
    previous_due: datetime | None
    due: datetime


def extension_rules(desk: Desk, case: Case, step: Step) -> list[tuple[str, Extension]]:
    """The extensions the packs in force give this step: (pack, rule), the house pack's first."""
    sla = STEP_SLA.get((case.kind, step.name))
    if sla is None:
        return []
    found: dict[str, tuple[str, Extension]] = {}
    for pack in desk.rules.packs_for(case.jurisdiction):
        rule = pack.rule(case.kind, sla[0])
        for extension in rule.extensions if rule is not None else ():
            found.setdefault(extension.name, (pack.name, extension))
    return list(found.values())


def apply_extension(
    session: Session, desk: Desk, *, case: Case, step: Step, name: str, reason: str, now: datetime
) -> tuple[datetime | None, datetime]:
    """Grant extension ``name`` on ``step``: the new deadline under the packs in force, and the customer told the
    new date and the reason (``extension_notice``). Returns (previous deadline, new deadline).

    Raises:
        InvalidInput: no reason, an extension the packs do not allow (or allow no more), or one that does not
            move the deadline.
    """
    if not reason.strip():
        raise InvalidInput("an extension states its reason (the customer is told)")
    previous = step.due_at
    step.extensions = [*step.extensions, name]
    _apply_schedule(step, _schedule(session, desk, case=case, step=step, now=now), now=now)
    if step.due_at is None or (previous is not None and step.due_at <= previous):
        raise InvalidInput(f"extension '{name}' does not move the deadline of {step.name} under the packs in force")
    session.add(step)
    enqueue(
        session, template="extension_notice", recipient=f"customer:{case.customer_id}", case=case, now=now,
        context={"case_number": case.number, "previous_due_at": previous, "due_at": step.due_at,
                 "reason": reason.strip(), "jurisdiction": case.jurisdiction},
        idempotency_key=f"extension:{step.id}:{len(step.extensions)}",
    )  # fmt: skip
    return previous, step.due_at


def extend_step(
    session: Session,
    desk: Desk,
    *,
    number: str,
    by: str,
    code: str,
    reason: str,
    now: datetime,
    step_name: str | None = None,
    extension: str | None = None,
) -> Extended:
    """Extend an open step's deadline before it passes (see the module's description); the caller commits.

    Args:
        number: the case.
        by: who extends: the case's handler or the step's assignee, or a supervisor or manager (required where
            the rule names an approver).
        code: their current approval code.
        reason: why; the customer is told it.
        now: when (aware).
        step_name: the step (default: the case's open step with the nearest deadline).
        extension: the rule's name (default: the first the packs give the step).

    Raises:
        CodeRefused: the code. NotAllowed: the role or four eyes. InvalidInput: no open step with a deadline,
        a deadline already passed, an unknown rule, or one the packs allow no more.
    """
    case = get_case(session, number, for_update=True)
    member = authenticate(session, desk, username=by, code=code, now=now)
    step = _open_step(session, case, step_name)
    if step.due_at is None:
        raise InvalidInput(f"{case.number}: step {step.name} has no deadline to extend")
    if step.due_at <= now:
        raise InvalidInput(f"{case.number}: step {step.name} is past its deadline; the supervisor deciding its "
                           "escalation may extend it")  # fmt: skip
    rules = extension_rules(desk, case, step)
    if not rules:
        raise InvalidInput(f"{case.number}: no pack in force allows extending step {step.name}")
    chosen = next((rule for _, rule in rules if rule.name == (extension or rule.name)), None)
    if chosen is None:
        raise InvalidInput(f"extension {extension!r}: the packs allow {', '.join(r.name for _, r in rules)} for "
                           f"{step.name}")  # fmt: skip
    holders = {i for i in (case.handler_id, step.assignee_id) if i is not None}
    role = StaffRole(member.role)
    if chosen.approved_by:
        if role not in SUPERVISORS:
            raise NotAllowed(f"extension '{chosen.name}' is approved by a {chosen.approved_by}: ask a supervisor "
                             "to extend it")  # fmt: skip
        if member.id in holders:
            raise NotAllowed(f"{member.username} holds {case.number} and cannot approve its extension (four eyes)")
    elif member.id not in holders and role not in SUPERVISORS:
        raise NotAllowed(f"{member.username} is not {case.number}'s handler, nor a supervisor or manager")
    previous, due = apply_extension(session, desk, case=case, step=step, name=chosen.name, reason=reason, now=now)
    if chosen.approved_by and holders:  # the approval on record: asked by the case's holder, given by another
        session.add(Approval(
            case_id=case.id or 0, subject="extension", subject_ref=f"{step.name}:{chosen.name}",
            requested_by_id=sorted(holders)[0], approver_id=member.id, decision="approved", comment=reason.strip(),
            requested_at=now, decided_at=now,
        ))  # fmt: skip
    append_event(session, case=case, actor=member.username, type="step_extended",
                 data={"step": step.name, "extension": chosen.name, "previous_due": previous, "due": due,
                       "reason": reason.strip()}, now=now)  # fmt: skip
    return Extended(case.number, step.name, chosen.name, previous, due)


def _open_step(session: Session, case: Case, name: str | None) -> Step:
    statement = select(Step).where(Step.case_id == case.id, col(Step.status) == StepStatus.open)
    if name:
        statement = statement.where(Step.name == name.strip())
    steps = [s for s in session.exec(statement.order_by(col(Step.id))) if s.due_at is not None or name]
    if not steps:
        raise InvalidInput(f"{case.number} has no open step{' ' + name if name else ''} with a deadline")
    return min(steps, key=lambda s: (s.due_at is None, s.due_at or case.opened_at))

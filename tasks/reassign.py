"""A supervisor hands a person's open cases to someone else (leave, illness, workload), one case or all of them.

Each case is reassigned on its own (a savepoint): a case the rules keep from the new handler (a complaint about
their team, a claim outside their skills) is listed with the reason and the others move. Every move is an
``Approval`` (the supervisor approves, the previous handler is the one it concerns: four eyes) and a
``reassigned`` event on the case; the new handler is told of each open step (``staff_new_assignment``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from claimflow.db import describe_failure
from models.approval import NotAllowed
from models.enums import CaseKind, StaffRole
from models.errors import InvalidInput, NotFound
from models.routing import PRODUCT_LINES, complaint_exclusions, reassignment_refusal
from models.tables import Approval, Case, Department, Staff, Step
from tasks.cases import append_event, get_case
from tasks.workflow import OPEN, Desk, _tell_handler, assign_open_steps, authenticate, candidates, route


@dataclass
class Reassigned:
    moved: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(case number, why it stayed)."""


def _staff(session: Session, username: str) -> Staff:
    member = session.exec(select(Staff).where(Staff.username == username.strip())).first()
    if member is None:
        raise NotFound(f"no staff member '{username}'")
    return member


def reassign_cases(
    session: Session,
    desk: Desk,
    *,
    from_username: str,
    to_username: str,
    by: str,
    code: str,
    reason: str,
    now: datetime,
    number: str | None = None,
) -> Reassigned:
    """Move the open cases of ``from_username`` (or only case ``number``) to ``to_username``, as decided by the
    supervisor or manager ``by`` with their current approval code; the caller commits.

    Raises:
        CodeRefused, NotAllowed: the decider's code, role, or their own cases (four eyes).
        InvalidInput: no reason, the same person twice, or a case that is not the person's.
        NotFound: an unknown username or case number.
    """
    reason = reason.strip()
    if not reason:
        raise InvalidInput("a reassignment states its reason (the new handler and the audit log read it)")
    member = authenticate(session, desk, username=by, code=code, now=now)
    if StaffRole(member.role) not in (StaffRole.supervisor, StaffRole.manager):
        raise NotAllowed(f"{member.username} is a {StaffRole(member.role).value}; reassigning needs a supervisor or "
                         "manager")  # fmt: skip
    source, target = _staff(session, from_username), _staff(session, to_username)
    if source.id == target.id:
        raise InvalidInput(f"{source.username} already has these cases")
    if member.id == source.id:
        raise NotAllowed(f"{member.username} cannot reassign their own cases (four eyes)")
    pool = {c.username: c for c in candidates(session)}
    if number is not None:
        case = get_case(session, number)
        if case.handler_id != source.id:
            raise InvalidInput(f"{case.number} is not {source.username}'s case")
        ids = [case.id]
    else:
        ids = list(session.exec(
            select(Case.id).where(Case.handler_id == source.id, col(Case.closed_at).is_(None)).order_by(col(Case.id))
        ))  # fmt: skip
    report = Reassigned()
    for case_id in ids:
        held = session.get(Case, case_id, with_for_update=True)
        assert held is not None
        case = held
        staff, departments = _exclusions(session, case)
        why = reassignment_refusal(kind=case.kind, product_line=case.product_line, target=pool[target.username],
                                   excluded_staff=staff, excluded_departments=departments)  # fmt: skip
        if why is not None:
            report.skipped.append((case.number, why))
            continue
        try:
            with session.begin_nested():
                _move(session, case=case, source=source, target=target, member=member, reason=reason, now=now)
        except SQLAlchemyError as failed:  # one case never stops the others
            report.skipped.append((case.number, describe_failure(failed)))
            continue
        report.moved.append(case.number)
    return report


def _exclusions(session: Session, case: Case) -> tuple[frozenset[int], frozenset[str]]:
    """Who a complaint may not go to: the handler and the department of the case it is about."""
    about = (
        session.get(Case, case.related_case_id) if case.kind == CaseKind.complaint and case.related_case_id else None
    )
    if about is None:
        return frozenset(), frozenset()
    department = session.get(Department, about.department_id) if about.department_id else None
    return complaint_exclusions(
        about_handler=about.handler_id, about_department=department.code if department else None
    )


def _move(session: Session, *, case: Case, source: Staff, target: Staff, member: Staff, reason: str,
          now: datetime) -> None:  # fmt: skip
    case.handler_id, case.department_id, case.updated_at = target.id, target.department_id, now
    session.add(case)
    steps = session.exec(
        select(Step).where(Step.case_id == case.id, Step.assignee_id == source.id, col(Step.status).in_(OPEN))
    ).all()
    for step in steps:
        step.assignee_id = target.id
        session.add(step)
    moved = f"{source.username}>{target.username}"[:64]
    approval = Approval(
        case_id=case.id or 0,
        subject="reassignment",
        subject_ref=moved,
        requested_by_id=source.id or 0,
        approver_id=member.id,
        decision="approved",
        comment=reason,
        requested_at=now,
        decided_at=now,
    )
    session.add(approval)
    append_event(session, case=case, actor=member.username, type="reassigned",
                 data={"previous": source.username, "assignee": target.username, "reason": reason,
                       "steps": [s.name for s in steps]}, now=now)  # fmt: skip
    session.flush()
    for step in steps:
        _tell_handler(session, case=case, step=step, now=now)


def triage_case(
    session: Session, desk: Desk, *, number: str, product_line: str, by: str, code: str, now: datetime
) -> Staff | None:
    """Sort a claim waiting in triage (its product line was not known): set the product line, then route it as
    intake would have and give its open steps to the handler found. The caller commits.

    Returns:
        The handler, or None when nobody with room could take it (the case then waits as any unroutable case
        does: the supervisors are told and the watcher tries again).

    Raises:
        CodeRefused: ``by``'s approval code. NotFound: no such case or member of staff. NotAllowed: ``by`` is not
            a supervisor or manager.
        InvalidInput: an unknown product line, a case that is closed, not a claim, or already has a handler.
    """
    wanted = product_line.strip().lower()
    if wanted not in PRODUCT_LINES:
        raise InvalidInput(f"product line {product_line!r} is none of {', '.join(PRODUCT_LINES)}")
    member = authenticate(session, desk, username=by, code=code, now=now)
    if StaffRole(member.role) not in (StaffRole.supervisor, StaffRole.manager):
        raise NotAllowed(f"{member.username} may not sort cases: triage is a supervisor's or manager's")
    case = get_case(session, number, for_update=True)
    if case.closed_at is not None or case.kind != CaseKind.claim:
        what = "closed" if case.closed_at else f"{'an' if str(case.kind)[0] in 'aeiou' else 'a'} {case.kind}"
        raise InvalidInput(f"{case.number} is {what}: nothing to sort")
    if case.handler_id is not None:
        holder = session.get(Staff, case.handler_id)
        raise InvalidInput(f"{case.number} is already {holder.username if holder else 'assigned'}'s: to move it, "
                           "use claimflow staff reassign")  # fmt: skip
    case.product_line = wanted
    session.add(case)
    append_event(session, case=case, actor=member.username, type="triaged", data={"product_line": wanted}, now=now)
    handler = route(session, case=case, now=now)
    if handler is not None:
        assign_open_steps(session, case=case, handler=handler, now=now)
    return handler

"""What a regulator requires while a case is still undecided (``models.notices``): the progress notice, and the
PRC advance payment (``record_advance_payment``, what ``claimflow case advance`` runs).

``send_progress_notice`` is what ``claimflow case notice`` runs: the handler (or a supervisor) writes why the
decision takes longer and by when it is expected; the letter goes through the outbox and the wording check in the
customer's language, naming the outside body where the jurisdiction requires it; the ``progress_notice`` step is
met, and where the rule repeats (US-CA: every 30 days) the next one opens, due 30 calendar days later.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from models.errors import InvalidInput
from models.notices import ADVANCE_STEP, STEP, next_due, repeated, rule_for
from models.tables import Case, DocumentRequirement, Step
from models.watch import Schedule
from tasks.cases import append_event, get_case
from tasks.workflow import Desk, _tell_customer, close_step, current_step, holder_or_supervisor, open_step


def send_progress_notice(
    session: Session, desk: Desk, *, number: str, by: str, code: str, reasons: str, expected: date, now: datetime
) -> Step | None:
    """Queue the case's progress notice and meet its step; the caller commits.

    Returns:
        The next notice's step where the rule repeats, else None.

    Raises:
        InvalidInput: no notice is owed on the case, no reasons, or an expected date already past.
        CodeRefused, NotAllowed: ``by``'s code; neither the case's handler nor a supervisor or manager.
    """
    case = get_case(session, number, for_update=True)
    rule = rule_for(case.kind, case.jurisdiction)
    step = current_step(session, case_id=case.id or 0, name=STEP)
    if rule is None or step is None:
        raise InvalidInput(f"{case.number} owes no progress notice now (one is owed while a {case.jurisdiction} "
                           f"{case.kind} waits for its decision, where a regulator requires it)")  # fmt: skip
    reasons = reasons.strip()
    if not reasons:
        raise InvalidInput("--reasons: say why the decision takes longer (the customer reads it)")
    tz = ZoneInfo(desk.settings.office_timezone)
    if expected < now.astimezone(tz).date():
        raise InvalidInput(f"--expected: {expected.isoformat()} is already past")
    member = holder_or_supervisor(session, desk, case=case, by=by, code=code, now=now)
    queued = _tell_customer(session, case=case, template="progress_notice", now=now, actor=member.username,
                            key=f"notice:{case.number}:{step.id}",
                            context={"reasons": reasons, "expected_by": expected.isoformat(),
                                     "jurisdiction": case.jurisdiction.upper(),
                                     "documents": _missing(session, case)})  # fmt: skip
    if queued.violations:
        raise InvalidInput("--reasons: the wording check held the notice back: "
                           + "; ".join(f"{v.rule_id}: {v.explanation}" for v in queued.violations))  # fmt: skip
    close_step(session, case=case, step=step, now=now, outcome="sent", actor=member.username)
    if rule.repeat_days is None or step.due_at is None:
        return None
    due = next_due(now, days=rule.repeat_days, tz=tz)
    schedule = repeated(Schedule.from_json(step.schedule or {}), start=now, due=due,
                        rule=f"{rule.source} (after the notice of {now.astimezone(tz):%Y-%m-%d})")  # fmt: skip
    return open_step(session, desk, case=case, name=STEP, now=now, actor=member.username, schedule=schedule)


def _missing(session: Session, case: Case) -> list[str]:
    return list(session.exec(
        select(DocumentRequirement.document_type)
        .where(DocumentRequirement.case_id == case.id, col(DocumentRequirement.received_at).is_(None))
        .order_by(col(DocumentRequirement.id))
    ).all())  # fmt: skip


def record_advance_payment(
    session: Session,
    desk: Desk,
    *,
    number: str,
    by: str,
    code: str,
    now: datetime,
    amount: Decimal | None = None,
    reference: str = "",
    account_hint: str = "",
    none_certain: str = "",
) -> None:
    """Meet a claim's ``advance_payment`` step: the amount already certain was paid (the customer is told, and the
    final payment is then the difference), or nothing is certain yet and why (recorded; the step is met, the
    claim goes on). The caller commits.

    Raises:
        InvalidInput: no advance payment is owed, neither or both of an amount and ``none_certain``, an amount not
            above zero or above the amount claimed, or no payment reference.
        CodeRefused, NotAllowed: ``by``'s code; neither the case's handler nor a supervisor or manager.
    """
    case = get_case(session, number, for_update=True)
    step = current_step(session, case_id=case.id or 0, name=ADVANCE_STEP)
    if step is None:
        raise InvalidInput(f"{case.number} owes no advance payment now (one is owed while a claim under a "
                           "regulator that requires it waits for its decision)")  # fmt: skip
    if (amount is None) == (not none_certain.strip()):
        raise InvalidInput("give either --amount (with --reference) or --none-certain REASON")
    member = holder_or_supervisor(session, desk, case=case, by=by, code=code, now=now)
    if amount is None:
        append_event(session, case=case, actor=member.username, type="advance_not_certain",
                     data={"reason": none_certain.strip()[:500]}, now=now)  # fmt: skip
        close_step(session, case=case, step=step, now=now, outcome="none_certain", actor=member.username)
        return
    if amount <= 0 or (case.amount_claimed is not None and amount > case.amount_claimed):
        raise InvalidInput(f"--amount: {amount} is not above zero and within the {case.amount_claimed} claimed")
    if not reference.strip():
        raise InvalidInput("--reference: the payment's reference (the customer and the audit log quote it)")
    append_event(session, case=case, actor=member.username, type="advance_paid",
                 data={"amount": str(amount), "reference": reference.strip()[:100]}, now=now)  # fmt: skip
    close_step(session, case=case, step=step, now=now, outcome="paid", actor=member.username)
    _tell_customer(session, case=case, template="advance_payment", now=now, actor=member.username,
                   key=f"advance:{case.number}:{step.id}",
                   context={"amount": str(amount), "currency": case.currency, "paid_at": now.isoformat(),
                            "account_hint": account_hint.strip()[-4:] or "-"})  # fmt: skip

"""Notices the regulators require while a case is still undecided, as steps a live case carries.

Each jurisdiction's rule (the pack line it comes from is the ``source``):

- **US-CA claims** (10 CCR 2695.7(c)(1)): when more time is needed than the 40 days to accept or deny, written
  notice of it, of the information still required and of the continuing reasons, then every 30 calendar days
  until a determination is made.
- **GB complaints** (DISP 1.6.2R(2)): without a final response by the end of eight weeks, a written response
  explaining why, when a final response is expected, and that the complainant may now refer the complaint to
  the Financial Ombudsman Service.
- **AU complaints** (RG 271, IDR delay notification): before the 30 days end, the reasons for the delay, the
  right to complain to AFCA and AFCA's contact details.

A case in one of these jurisdictions gets a ``progress_notice`` step when it is filed, due when the regulator's
own limit for its decision ends (``STEP_SLA``: the regulator's clock alone, not the house standard's); the
watcher reminds and escalates it like any step. The handler sends it with ``claimflow case notice`` (reasons and
the date a decision is expected); a decision before then makes it moot. Pure: no database, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from models.watch import Schedule, ScheduledEscalation, ScheduledReminder

STEP = "progress_notice"
ADVANCE_STEP = "advance_payment"
"""PRC Insurance Law art. 25: while the amount is not yet fixed, what the documents already make certain is paid
in advance within 60 days of the claim (its due time is the ``cn-regulatory`` pack's); recorded with
``claimflow case advance`` (an amount, or that nothing is certain yet and why); moot once the claim is decided."""


@dataclass(frozen=True)
class NoticeRule:
    main_step: str
    """The step whose regulator limit the notice is due by."""
    repeat_days: int | None
    """Calendar days to the next notice while still undecided (None: one notice)."""
    source: str


RULES: dict[tuple[str, str], NoticeRule] = {
    ("claim", "US-CA"): NoticeRule("review", 30, "10 CCR 2695.7(c)(1): written notice every 30 calendar days "
                                   "until a determination is made"),
    ("complaint", "GB"): NoticeRule("resolution", None, "DISP 1.6.2R(2): a written response by the end of eight "
                                    "weeks, with the Financial Ombudsman Service referral rights"),
    ("complaint", "AU"): NoticeRule("resolution", None, "RG 271: an IDR delay notification before the 30 days "
                                    "end, with the right to complain to AFCA"),
}  # fmt: skip

UNDECIDED = {
    "claim": frozenset({"received", "under_review", "awaiting_documents", "investigating", "reopened"}),
    "complaint": frozenset({"received", "acknowledged", "investigating", "mediation", "reopened"}),
}
"""The states in which a case still waits for its decision: a notice is owed only while the case is in one."""

WHILE_UNDECIDED = frozenset({"acknowledgement_claim", "acknowledgement_complaint", "acknowledgement_inquiry",
                             "progress_notice", "extension_notice", "missing_documents"})  # fmt: skip
"""Letters that speak of a decision still to come (the date it is promised by, what is still needed): true only
while the case waits for its decision."""


def stale(template: str, *, kind: str, status: str) -> bool:
    """Whether a letter held back until now would no longer be true if sent: it speaks of a decision still to come
    and the case (an inquiry: answered or closed) has been decided meanwhile."""
    if template not in WHILE_UNDECIDED:
        return False
    if str(kind) == "inquiry":
        return status != "received"
    return not owed(kind, status)


def rule_for(kind: str, jurisdiction: str) -> NoticeRule | None:
    """The notice a case of this kind and jurisdiction is owed while undecided, or None."""
    return RULES.get((str(kind), jurisdiction.upper()))


def owed(kind: str, status: str) -> bool:
    """Whether a case in ``status`` still waits for its decision (a notice step stays open only then)."""
    return status in UNDECIDED.get(str(kind), frozenset())


def next_due(previous_due: datetime, *, days: int, tz: ZoneInfo) -> datetime:
    """The next notice's due time: ``days`` calendar days after the previous one, at the same office time (a
    daylight-saving change in between does not move it by an hour)."""
    local = previous_due.astimezone(tz)
    return (local.replace(tzinfo=None) + timedelta(days=days)).replace(tzinfo=tz).astimezone(previous_due.tzinfo)


def repeated(previous: Schedule, *, start: datetime, due: datetime, rule: str) -> Schedule:
    """The schedule of a repeated notice: reminders at the same fractions of its own span (``start`` to ``due``),
    escalations at the same distances after its due time as the first notice's."""
    assert previous.due is not None
    span = due - start
    return Schedule(
        due=due,
        reminders=tuple(ScheduledReminder(r.fraction, start + span * r.fraction) for r in previous.reminders),
        escalations=tuple(
            ScheduledEscalation(e.level, e.role, due + (e.at - previous.due)) for e in previous.escalations
        ),
        rule=rule,
    )

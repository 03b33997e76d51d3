"""Publishing each case's view to its flow run: the markdown artifact and the tags the operations UI shows.

What changed is found from the event log: every change to a case appends an event (a decision in the UI or the
CLI, a mail, a reminder or breach of the watcher, a reassignment), so the cases to publish are those with events
after the last ones published (``changed_cases``: the event table's primary key, a range scan that follows what
changed, not what is open). For each, ``snapshot`` reads the case and ``publish`` writes the artifact (key
``case-<number>``, a new version each time, on the run's Artifacts tab) and sets the run's desk tags
(``models.caseview.dynamic_tags``), keeping the run's other tags.

The desk runner calls ``CaseViewPublisher.publish_changed`` every few seconds (``flows.workspace``). A publish
that fails (the server restarting) is tried again at the next pass; nothing is lost, since the database holds the
case and the next publish shows it whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, col, select

from models.approval import who_may_decide
from models.caseview import CaseSnapshot, EventLine, StepLine, cli_command, dynamic_tags, merge_tags, render_case
from models.masking import mask_name
from models.notices import ADVANCE_STEP
from models.notices import STEP as NOTICE_STEP
from models.tables import Case, Customer, Department, DocumentRequirement, Event, Staff, Step
from tasks.workflow import DECISION_KIND, _pending_approval, key_kind

EVENTS_SHOWN = 10
SUMMARY_KEYS = ("step", "decision", "level", "outcome", "template", "role", "extension")
"""What an event's line shows of its data: names and outcomes, never free text (answers, reasons, notes)."""


OWED_COMMANDS = {
    NOTICE_STEP: "claimflow case notice {number} --by USERNAME --code CODE --reasons TEXT --expected YYYY-MM-DD",
    ADVANCE_STEP: "claimflow case advance {number} --by USERNAME --code CODE --amount AMOUNT --reference REF "
    "(or --none-certain WHY)",
}
"""The command for each step a regulator requires while the case is undecided (``models.notices``)."""


def artifact_key(number: str) -> str:
    """The case's artifact key (Prefect keys are lower case, dashes allowed)."""
    return f"case-{number.lower()}"


def _username(session: Session, staff_id: int | None) -> str | None:
    member = session.get(Staff, staff_id) if staff_id else None
    return member.username if member else None


def snapshot(session: Session, *, case_id: int, language: str = "en") -> CaseSnapshot:
    """The case as its view shows it (``models.caseview``): masked customer, no free text but the refusal."""
    case = session.get(Case, case_id)
    assert case is not None
    customer = session.get(Customer, case.customer_id)
    department = session.get(Department, case.department_id) if case.department_id else None
    handler = _username(session, case.handler_id)
    steps = session.exec(
        select(Step).where(Step.case_id == case_id, col(Step.status).in_(("open", "paused"))).order_by(col(Step.id))
    ).all()
    lines = tuple(
        StepLine(s.name, str(s.status), _username(session, s.assignee_id), s.due_at, s.policy_rule, s.escalation_level)
        for s in steps
    )
    waiting = next((s for s in steps if s.waiting_key), None)
    form = may_decide = refusal = command = None
    if waiting is not None and waiting.waiting_key:
        kind = key_kind(waiting.waiting_key)
        form = kind.value
        approval = _pending_approval(session, case_id)
        requester = _username(session, approval.requested_by_id) if approval else None
        may_decide = who_may_decide(DECISION_KIND[kind], handler=handler, requester=requester, language=language)
        refusal = _last_refusal(session, case_id, waiting.waiting_key)
        command = cli_command(case.number, form)
    owed = {s.name for s in steps} & set(OWED_COMMANDS)  # what a regulator requires meanwhile: how to do it
    for name in sorted(owed):
        line = OWED_COMMANDS[name].format(number=case.number)
        command = f"{command}\n{line}" if command else line
    missing = session.exec(
        select(DocumentRequirement.document_type)
        .where(DocumentRequirement.case_id == case_id, col(DocumentRequirement.received_at).is_(None))
        .order_by(col(DocumentRequirement.id))
    ).all()
    related_rows = session.exec(
        select(Case).where((col(Case.id) == case.related_case_id) | (col(Case.related_case_id) == case_id))
    ).all()
    events = session.exec(
        select(Event).where(Event.case_id == case_id).order_by(col(Event.sequence).desc()).limit(EVENTS_SHOWN)
    ).all()
    return CaseSnapshot(
        number=case.number, kind=str(case.kind), status=case.status, priority=str(case.priority),
        product_line=case.product_line, policy_number=case.policy_number,
        customer=mask_name(customer.name) if customer else "-", handler=handler,
        team=department.code if department else None, steps=lines, waiting_form=form,
        waiting_step=waiting.name if waiting else None, may_decide=may_decide, last_refusal=refusal,
        missing_documents=tuple(missing),
        related=tuple(f"{r.number} ({r.kind})" for r in related_rows if r.id != case_id),  # its state would go stale
        events=tuple(EventLine(e.at, e.actor, e.type, _summary(e.data)) for e in events), cli_command=command,
    )  # fmt: skip


def _summary(data: dict[str, Any]) -> str:
    return " ".join(f"{key}={data[key]}" for key in SUMMARY_KEYS if data.get(key) not in (None, ""))


def _last_refusal(session: Session, case_id: int, key: str) -> str | None:
    """Why the last answer to this decision was refused, when the run asks again after a refusal."""
    stem, _, attempt = key.rpartition("-")
    if attempt == "1":
        return None
    for event in session.exec(
        select(Event)
        .where(Event.case_id == case_id, Event.type == "decision_refused")
        .order_by(col(Event.sequence).desc())
    ):
        if str(event.data.get("key", "")).startswith(f"{stem}-"):
            return f"{event.actor}: {event.data.get('reason')}"
    return None


@dataclass(frozen=True)
class Changed:
    """A case with events after the last published ones."""

    case_id: int
    sequence: int
    """Its last event's sequence."""


def changed_cases(session: Session, *, after_event_id: int, limit: int = 500) -> tuple[list[Changed], int]:
    """The cases with events whose id is above ``after_event_id``, and the highest id seen (the next mark).

    Args:
        after_event_id: the mark of the last pass (0: every case with events; the first pass of a runner).
        limit: events read at most (the next pass takes the rest from the returned mark).

    Returns:
        The changed cases (each once, with its highest sequence among those events) and the new mark.
    """
    rows = session.exec(
        select(Event.id, Event.case_id, Event.sequence)
        .where(col(Event.id) > after_event_id)
        .order_by(col(Event.id))
        .limit(limit)
    ).all()
    latest: dict[int, int] = {}
    for _event_id, case_id, sequence in rows:
        latest[case_id] = max(sequence, latest.get(case_id, 0))
    mark = rows[-1][0] if rows else after_event_id
    return [Changed(case_id, sequence) for case_id, sequence in latest.items()], int(mark or after_event_id)


def last_event_id(session: Session) -> int:
    return int(session.exec(select(func.max(Event.id))).one() or 0)


@dataclass
class Published:
    """What a publishing pass did."""

    cases: int = 0
    failed: list[str] = field(default_factory=list)


async def publish(client: Any, *, run_id: str, view: CaseSnapshot, now: datetime, tz: ZoneInfo, language: str,
                  known_tags: list[str] | None = None) -> list[str]:  # fmt: skip
    """Write one case's artifact (a new version of its key, on its run) and set its run's desk tags.

    Args:
        known_tags: the run's tags as this publisher last left them (None: read them from the server); the
            tags are written only when they change.

    Returns:
        The run's tags now.
    """
    from prefect.client.schemas.actions import ArtifactCreate

    if known_tags is None:
        known_tags = list((await client.read_flow_run(UUID(run_id))).tags or [])
    await client.create_artifact(
        ArtifactCreate(
            key=artifact_key(view.number),
            type="markdown",
            description=f"{view.number}: the case as the desk sees it",
            data=render_case(view, now=now, tz=tz, language=language),
            flow_run_id=UUID(run_id),
        )
    )
    tags = merge_tags(known_tags, dynamic_tags(view, now=now, tz=tz))
    if sorted(known_tags) != tags:
        await client.update_flow_run(UUID(run_id), tags=tags)
    return tags

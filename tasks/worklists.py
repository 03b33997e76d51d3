"""What the worklists and the desk summary show, read from the database (``models.worklists`` renders them)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from models.caseview import case_url
from models.enums import OutboxStatus
from models.tables import Case, Department, Escalation, MailMessage, Outbox, Staff, Step
from models.watch import escalation_run_name
from models.worklists import DeskCounts, EscalationRow, WaitingRow
from tasks.workflow import key_kind


@dataclass(frozen=True)
class DeskLists:
    waiting: list[WaitingRow]
    escalations: list[EscalationRow]
    counts: DeskCounts


def _run_link(ui: str, number: str, run_id: str | None) -> str:
    return f"{ui}/runs/flow-run/{run_id}" if run_id else case_url(ui, number)


def desk_lists(session: Session, *, ui: str, now: datetime, day_start: datetime) -> DeskLists:
    """Every waiting step with its case (nearest deadline first), the undecided escalations (oldest first), and
    the desk's counts; ``day_start`` is the office's midnight (for "dead-lettered today")."""
    staff = {s.id: s.username for s in session.exec(select(Staff))}
    teams = {d.id: d.code for d in session.exec(select(Department))}
    rows = session.exec(
        select(Step, Case)
        .join(Case, col(Case.id) == col(Step.case_id))
        .where(
            col(Step.waiting_key).is_not(None), col(Step.status).in_(("open", "paused")), col(Case.closed_at).is_(None)
        )
    ).all()
    waiting = [
        WaitingRow(
            case.number,
            str(case.kind),
            case.status,
            str(case.priority),
            step.name,
            key_kind(step.waiting_key).value if step.waiting_key else None,
            staff.get(step.assignee_id),
            teams.get(case.department_id),
            step.due_at,
            step.escalation_level,
            _run_link(ui, case.number, case.flow_run_id),
        )
        for step, case in rows
    ]
    far = datetime.max.replace(tzinfo=now.tzinfo)
    waiting.sort(key=lambda r: (r.due_at or far, r.number))
    raised = session.exec(
        select(Escalation, Case, Step)
        .join(Case, col(Case.id) == col(Escalation.case_id))
        .join(Step, col(Step.id) == col(Escalation.step_id))
        .where(col(Escalation.decision).is_(None))
        .order_by(col(Escalation.raised_at))
    ).all()
    escalations = [
        EscalationRow(
            escalation_run_name(case.number, level=e.level, ladder_round=e.round),
            step.name,
            e.level,
            str(e.role),
            e.raised_at,
            _run_link(ui, case.number, e.flow_run_id),
        )
        for e, case, step in raised
    ]
    open_cases = session.exec(select(Case.status, Case.department_id).where(col(Case.closed_at).is_(None))).all()
    breached = sum(1 for r in waiting if (r.due_at is not None and r.due_at < now) or r.escalation_level)
    oldest = session.exec(
        select(Case.number, Step.started_at)
        .join(Case, col(Case.id) == col(Step.case_id))
        .where(col(Step.waiting_key).is_not(None), col(Step.status).in_(("open", "paused")))
        .order_by(col(Step.started_at))
        .limit(1)
    ).first()
    counts = DeskCounts(
        by_status=dict(Counter(status for status, _ in open_cases)),
        by_team=dict(Counter(teams.get(team, "unassigned") for _, team in open_cases)),
        breached=breached,
        oldest_waiting=(oldest[0], oldest[1]) if oldest else None,
        dead_today=int(
            session.exec(
                select(func.count())
                .select_from(Outbox)
                .where(Outbox.status == OutboxStatus.dead, col(Outbox.created_at) >= day_start)
            ).one()
        ),
        filed_last_hour=int(
            session.exec(
                select(func.count()).select_from(Case).where(col(Case.opened_at) >= now - timedelta(hours=1))
            ).one()
        ),
        mail_rejected_today=int(
            session.exec(
                select(func.count())
                .select_from(MailMessage)
                .where(MailMessage.disposition == "rejected", col(MailMessage.received_at) >= day_start)
            ).one()
        ),
    )
    return DeskLists(waiting, escalations, counts)

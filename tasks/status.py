"""The customer's case status page: minting its links, opening one, withdrawing them (``models.status``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from claimflow.secrets import survey_key
from claimflow.settings import Settings
from models.enums import CaseKind, StepStatus
from models.messages import format_deadline
from models.sla import StepName
from models.standards import STEP_WORDS, document_words
from models.status import (
    Happened,
    StatusClaim,
    check_status_link,
    history,
    make_status_token,
    read_status_token,
    state_words,
)
from models.survey import page_language
from models.tables import Case, Customer, DocumentRequirement, Event, Step
from tasks.cases import append_event, get_case
from tasks.survey import public_base


def status_url(settings: Settings, *, case_id: int, now: datetime) -> str:
    """A fresh link to the case's status page, valid ``CLAIMFLOW_STATUS_LINK_DAYS`` from ``now``."""
    token = make_status_token(survey_key(settings), case_id=case_id, issued_at=now,
                              expires_at=now + timedelta(days=settings.status_link_days))  # fmt: skip
    return f"{public_base(settings)}/status/{token}"


@dataclass(frozen=True)
class Promised:
    what: str
    by: str


@dataclass(frozen=True)
class StatusPage:
    number: str
    language: str
    kind: str
    state: str
    promised: tuple[Promised, ...]
    happened: tuple[Happened, ...]
    needed: tuple[str, ...]
    closed: bool


def open_status(session: Session, settings: Settings, token: str, *, asked: str | None, now: datetime) -> StatusPage:
    """The case a status link names, told in the language ``asked`` for in the link if the desk has it, else the
    customer's (else the desk's).

    Raises:
        LinkRefused: forged, unknown, revoked or expired.
    """
    claim: StatusClaim = read_status_token(survey_key(settings), token)
    case = session.get(Case, claim.case_id)
    check_status_link(claim, exists=case is not None, revoked_at=case.links_revoked_at if case else None, now=now)
    assert case is not None and case.id is not None
    customer = session.get(Customer, case.customer_id)
    language = page_language(asked, (customer.language if customer else None) or settings.default_language)
    steps = session.exec(
        select(Step)
        .where(Step.case_id == case.id, col(Step.status).in_((StepStatus.open, StepStatus.paused)),
               col(Step.due_at).is_not(None))
        .order_by(col(Step.due_at))
    ).all()  # fmt: skip
    words = STEP_WORDS[language]
    promised = []
    for step in steps:
        try:
            what = words.get((CaseKind(case.kind), StepName(step.name)))
        except ValueError:
            what = None
        if what is not None and step.due_at is not None:  # the desk's own work steps (fix_wording ...) stay inside
            promised.append(Promised(what, format_deadline(step.due_at, language, settings.office_timezone)))
    events = session.exec(select(Event.at, Event.type).where(Event.case_id == case.id).order_by(col(Event.sequence)))
    needed = session.exec(
        select(DocumentRequirement.document_type)
        .where(DocumentRequirement.case_id == case.id, col(DocumentRequirement.received_at).is_(None))
        .order_by(col(DocumentRequirement.id))
    ).all()
    return StatusPage(
        number=case.number, language=language, kind=str(case.kind), state=state_words(case.status, language),
        promised=tuple(promised),
        happened=history(list(events), language),
        needed=tuple(document_words(d, language) for d in needed), closed=case.closed_at is not None,
    )  # fmt: skip


def revoke_links(session: Session, *, number: str, by: str, now: datetime) -> Case:
    """Withdraw every status link of the case sent until now (recorded); the next message carries a fresh one."""
    case = get_case(session, number)
    case.links_revoked_at = now
    session.add(case)
    append_event(session, case=case, actor=by, type="status_links_revoked", data={}, now=now)
    return case

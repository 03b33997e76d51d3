"""The customer's case status page: minting its links, opening one, withdrawing them (``models.status``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from claimflow.secrets import survey_key
from claimflow.settings import Settings
from models.enums import CaseKind, StepStatus
from models.errors import InvalidInput
from models.mail import MailAttachment, safe_filename
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
from models.tables import Case, Customer, DocumentRequirement, Event, Staff, Step
from tasks.cases import append_event, get_case
from tasks.mail import store_attachments
from tasks.outbox import enqueue
from tasks.survey import public_base
from tasks.workflow import Desk, documents_in, paused_for_documents, staff_links_for


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
    needed_codes: tuple[tuple[str, str], ...] = ()  # (the document's code, its words) for the upload form


def case_of(session: Session, settings: Settings, token: str, *, now: datetime, lock: bool = False) -> Case:
    """The case a status link opens.

    Raises:
        LinkRefused: forged, unknown, revoked or expired.
    """
    claim: StatusClaim = read_status_token(survey_key(settings), token)
    case = session.get(Case, claim.case_id, with_for_update=lock)
    check_status_link(claim, exists=case is not None, revoked_at=case.links_revoked_at if case else None, now=now)
    assert case is not None and case.id is not None
    return case


def open_status(session: Session, settings: Settings, token: str, *, asked: str | None, now: datetime) -> StatusPage:
    """The case a status link names, told in the language ``asked`` for in the link if the desk has it, else the
    customer's (else the desk's).

    Raises:
        LinkRefused: forged, unknown, revoked or expired.
    """
    case = case_of(session, settings, token, now=now)
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
        needed_codes=tuple((d, document_words(d, language)) for d in needed),
    )  # fmt: skip


def revoke_links(session: Session, *, number: str, by: str, now: datetime) -> Case:
    """Withdraw every status link of the case sent until now (recorded); the next message carries a fresh one."""
    case = get_case(session, number)
    case.links_revoked_at = now
    session.add(case)
    append_event(session, case=case, actor=by, type="status_links_revoked", data={}, now=now)
    return case


# --- documents sent from the page -------------------------------------------------------------------------

ACCEPTED = ((b"%PDF-", "application/pdf", ".pdf"), (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
            (b"\x89PNG\r\n\x1a\n", "image/png", ".png"))  # fmt: skip
"""What the page takes, recognised by the file's first bytes (never by its name or the browser's word for it)."""
UPLOAD_SOURCE = "status-page"


class UploadRefused(InvalidInput):
    """An upload the page does not take; ``reason``: ``too_big``, ``wrong_type``, ``empty`` or ``not_needed``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Uploaded:
    case_id: int
    number: str
    document: str
    still_missing: tuple[str, ...]
    restarted: bool = False  # the list is complete: the case is back under review and its clock runs again


def upload_document(session: Session, desk: Desk, *, token: str, document_type: str, filename: str, data: bytes,
                    now: datetime) -> Uploaded:  # fmt: skip
    """A missing document sent from the status page: stored with the case's attachments, its requirement ticked,
    an event on the case, and the handler told (message and worklist). The upload that completes the list does
    what the handler's documents form does: the case goes back under review and the paused clock starts again
    (``tasks.workflow.documents_in``); the run still waiting on the documents form is woken by the caller after
    the commit (``tasks.answers.wake_if_stale``), or by the reconciler's next pass.

    Raises:
        LinkRefused: the link does not open the case.
        UploadRefused: too big, not a PDF, JPEG or PNG, empty, or not a document the case is waiting for.
    """
    settings = desk.settings
    case = case_of(session, settings, token, now=now, lock=True)
    limit = settings.api_attachment_max_bytes
    if not data:
        raise UploadRefused("empty", "the file is empty")
    if len(data) > limit:
        raise UploadRefused("too_big", f"the file is larger than {limit} bytes")
    kind = next(((ctype, ext) for magic, ctype, ext in ACCEPTED if data.startswith(magic)), None)
    if kind is None:
        raise UploadRefused("wrong_type", "only PDF, JPEG and PNG files are taken")
    requirements = list(session.exec(select(DocumentRequirement).where(DocumentRequirement.case_id == case.id)))
    wanted = next((r for r in requirements if r.document_type == document_type and r.received_at is None), None)
    if wanted is None:
        raise UploadRefused("not_needed", "the case is not waiting for this document")
    name = safe_filename(filename or "") or f"{document_type}{kind[1]}"
    [stored] = store_attachments(session, case=case, files=[MailAttachment(name, kind[0], data)],
                                 data_dir=settings.data_dir, now=now, source=UPLOAD_SOURCE)  # fmt: skip
    stored.document_type = document_type[:64]
    wanted.received_at = now
    session.add_all([stored, wanted])
    missing = tuple(r.document_type for r in requirements if r.received_at is None)
    append_event(session, case=case, actor="customer", type="documents_arrived",
                 data={"documents": [document_type], "still_missing": list(missing), "via": UPLOAD_SOURCE,
                       "attachment": stored.filename}, now=now)  # fmt: skip
    paused = None if missing else paused_for_documents(session, case)
    if paused is not None:
        documents_in(session, desk, case=case, step=paused, actor="customer", now=now,
                     data={"documents": [document_type], "via": UPLOAD_SOURCE})  # fmt: skip
    handler = session.get(Staff, case.handler_id) if case.handler_id else None
    if handler is not None:
        due = paused.due_at if paused is not None else None  # the new due time once the clock runs again
        enqueue(session, template="staff_documents_arrived", recipient=f"staff:{handler.username}",
                context={"case_number": case.number, "handler_name": handler.name, "documents": [document_type],
                         "still_missing": list(missing), "due_at": due.isoformat() if due is not None else None,
                         **staff_links_for(case.number, handler.username)},
                idempotency_key=f"documents-arrived:{case.id}:{stored.id}", now=now, case=case)  # fmt: skip
    case.updated_at = now
    session.add(case)
    return Uploaded(case.id or 0, case.number, document_type, missing, restarted=paused is not None)

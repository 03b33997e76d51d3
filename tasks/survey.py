"""Survey invitations in the database: one signed, expiring, single-use link per case.

``invite`` writes the invitation, its message and its event in the caller's transaction (the caller commits);
``open_invitation`` checks a link against the database, locking the invitation row when it is about to be
answered so that two answers sent at once cannot both be taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from claimflow.secrets import survey_key
from claimflow.settings import Settings
from models.survey import check_link, make_token, page_language, read_token
from models.tables import Case, Customer, SurveyInvitation
from tasks.cases import append_event
from tasks.outbox import enqueue

REASONS = ("resolution", "periodic")


def public_base(settings: Settings) -> str:
    """Where customers reach the web app (``CLAIMFLOW_PUBLIC_URL``, else the API's own address)."""
    return (settings.public_url or f"http://{settings.api_host}:{settings.api_port}").rstrip("/")


def survey_url(settings: Settings, token: str) -> str:
    """The link a customer opens: the public address of the web app, ``/survey/``, the token."""
    return f"{public_base(settings)}/survey/{token}"


def invitation_for(session: Session, case_id: int) -> SurveyInvitation | None:
    """The case's invitation, if one was sent (a case has at most one)."""
    return session.exec(select(SurveyInvitation).where(SurveyInvitation.case_id == case_id)).first()


def invite(session: Session, settings: Settings, *, case: Case, reason: str, now: datetime) -> SurveyInvitation | None:
    """Send the customer the survey link for ``case`` (once per case: a repeated call returns the first).

    Args:
        session: the open session; the caller commits.
        settings: for the link's key, address and validity.
        case: the case the survey is about.
        reason: ``resolution`` (the case was settled) or ``periodic`` (sampled by the satisfaction survey).
        now: the time of sending (aware); the link expires ``survey_valid_days`` later.

    Returns:
        The invitation, or None when the case has no customer on file.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown survey reason {reason!r}")
    assert case.id is not None
    existing = invitation_for(session, case.id)
    if existing is not None:
        return existing
    customer = session.get(Customer, case.customer_id)
    if customer is None:
        return None
    invitation = SurveyInvitation(
        case_id=case.id,
        customer_id=case.customer_id,
        reason=reason,
        language=page_language(customer.language, settings.default_language),
        sent_at=now,
        expires_at=now + timedelta(days=settings.survey_valid_days),
    )
    session.add(invitation)
    session.flush()
    assert invitation.id is not None
    token = make_token(survey_key(settings), invitation_id=invitation.id, expires_at=invitation.expires_at)
    enqueue(
        session,
        template="survey_invitation",
        recipient=f"customer:{customer.id}",
        context={
            "case_number": case.number,
            "survey_url": survey_url(settings, token),
            "expires_at": invitation.expires_at,
        },
        idempotency_key=f"survey:{case.number}",
        now=now,
        case=case,
    )
    append_event(
        session,
        case=case,
        actor="system",
        type="survey_invited",
        data={"reason": reason, "invitation": invitation.id, "expires": invitation.expires_at},
        now=now,
    )
    return invitation


def link_token(session: Session, settings: Settings, *, case: Case) -> str | None:
    """The token of the case's invitation (to resend or show the link), or None when none was sent."""
    invitation = invitation_for(session, case.id or 0)
    if invitation is None or invitation.id is None:
        return None
    return make_token(survey_key(settings), invitation_id=invitation.id, expires_at=invitation.expires_at)


@dataclass(frozen=True)
class OpenInvitation:
    """A link that may be answered now."""

    invitation: SurveyInvitation
    case: Case


def open_invitation(
    session: Session, settings: Settings, *, token: str, now: datetime, lock: bool = False
) -> OpenInvitation:
    """The invitation a link names, if it may be answered now.

    Args:
        session: the open session.
        settings: for the key.
        token: the token from the link, as sent.
        now: the time of the request (aware).
        lock: lock the invitation's row until the caller commits (when answering).

    Raises:
        SurveyLinkRefused: forged, unknown, used or expired.
    """
    claim = read_token(survey_key(settings), token)
    query = select(SurveyInvitation).where(SurveyInvitation.id == claim.invitation_id)
    invitation = session.exec(query.with_for_update() if lock else query).first()
    check_link(
        claim,
        answered_at=invitation.answered_at if invitation else None,
        exists=invitation is not None,
        now=now,
    )
    assert invitation is not None
    case = session.get(Case, invitation.case_id, with_for_update=lock)  # answering appends to the case's chain
    assert case is not None  # a foreign key
    return OpenInvitation(invitation, case)

"""Feedback in the database: survey answers and feedback from other channels, the follow-ups they start, and the
periodic satisfaction survey.

Every piece of feedback, whatever its channel, goes through ``record``:

- it is stored as a ``Feedback`` row, classified praise / suggestion / complaint (``models.feedback``), with a
  ``feedback_received`` event on the case (the comment itself stays in the feedback row, not in the log);
- a low score (``<= 2``) or "not solved" opens a follow-up step for a supervisor — ``complaint_review`` on a
  complaint, ``follow_up`` otherwise — with its deadline from the policy pack, the supervisor is told, and so
  is the customer (someone will call);
- text that is itself a complaint (its words, not only its score) about a claim or an inquiry files a complaint
  case for the same customer, related to the case, routed away from its handler as every complaint is; on a
  complaint it opens the complaint review.

Each function takes the session first and leaves the commit to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from claimflow.secrets import survey_key
from models.enums import CaseKind, Channel, StepStatus
from models.errors import InvalidInput, NotFound
from models.feedback import ClosedCase, FeedbackKind, classify_feedback, needs_follow_up, sample_for_survey
from models.routing import NoEligibleHandler, choose_follow_up
from models.survey import MAX_COMMENT_CHARS, SurveyAnswer
from models.tables import (
    Case,
    CaseCreate,
    Customer,
    CustomerCreate,
    Department,
    Feedback,
    Staff,
    Step,
    SurveyInvitation,
)
from tasks.cases import append_event, get_case
from tasks.outbox import enqueue
from tasks.survey import invite, open_invitation
from tasks.workflow import Desk, candidates, close_step, current_step, intake, open_step

CHANNELS = ("survey", "email", "phone", "webhook", "counter", "letter", "app")
FOLLOW_UP_STEPS = ("follow_up", "complaint_review")


@dataclass(frozen=True)
class FeedbackOutcome:
    """What recording one piece of feedback did."""

    feedback: Feedback
    kind: FeedbackKind
    rule: str
    follow_up: Step | None = None
    complaint_case: Case | None = None


def follow_up_step_name(case: Case) -> str:
    """``complaint_review`` on a complaint, ``follow_up`` on anything else."""
    return "complaint_review" if case.kind == CaseKind.complaint else "follow_up"


def record(
    session: Session,
    desk: Desk,
    *,
    case: Case,
    channel: str,
    text: str | None,
    now: datetime,
    score: int | None = None,
    solved: bool | None = None,
    source: str | None = None,
    invitation_id: int | None = None,
    actor: str = "system",
) -> FeedbackOutcome:
    """Store one piece of feedback about ``case`` and act on it (see the module's description).

    Args:
        session: the open session; the caller commits.
        desk: the desk's rules and settings.
        case: the case the feedback is about.
        channel: one of ``CHANNELS``.
        text: what the customer said (a comment, a mail's text, a staff member's note of a call).
        now: when it was received (aware).
        score: 1 to 5 when the customer gave one.
        solved: whether the customer said the problem was solved, if they said.
        source: who or what brought it (a username, a webhook source, a Message-ID).
        invitation_id: the survey invitation it answers.
        actor: who records it, for the event log.

    Raises:
        InvalidInput: an unknown channel, a score outside 1..5, or a comment that is too long.
    """
    comment = _checked(desk, channel=channel, text=text, score=score, solved=solved)
    assert case.id is not None
    found = classify_feedback(comment, score=score, solved=solved)
    feedback = Feedback(
        case_id=case.id,
        score=score,
        solved=solved,
        comment=comment,
        channel=channel,
        classification=found.kind.value,
        received_at=now,
        source=(source or None) and source[:200],
        invitation_id=invitation_id,
    )
    session.add(feedback)
    session.flush()
    append_event(
        session,
        case=case,
        actor=actor,
        type="feedback_received",
        data={
            "feedback": feedback.id,
            "channel": channel,
            "score": score,
            "solved": solved,
            "classification": found.kind.value,
            "rule": found.rule,
        },
        now=now,
    )
    wants_follow_up, files_complaint = consequences(case, feedback)
    step = follow_up(session, desk, case=case, feedback=feedback, now=now) if wants_follow_up else None
    complaint = None
    if files_complaint:
        complaint = _file_complaint(session, desk, case=case, feedback=feedback, channel=channel, now=now)
    return FeedbackOutcome(feedback, found.kind, found.rule, step, complaint)


def _checked(desk: Desk, *, channel: str, text: str | None, score: int | None, solved: bool | None) -> str | None:
    """The comment, stripped, once the feedback is known to be well formed.

    Raises:
        InvalidInput: an unknown channel, a score outside 1..5, a comment that is too long, or nothing said.
    """
    if channel not in CHANNELS:
        raise InvalidInput(f"channel {channel!r}: one of {', '.join(CHANNELS)}")
    if score is not None and not 1 <= score <= 5:
        raise InvalidInput(f"score {score}: 1 to 5")
    comment = (text or "").strip() or None
    if comment is not None and len(comment) > desk.settings.mail_max_description_chars:
        raise InvalidInput(f"text: at most {desk.settings.mail_max_description_chars} characters ({len(comment)})")
    if score is None and solved is None and comment is None:
        raise InvalidInput("feedback needs a score, an answer to 'solved' or a text")
    return comment


# --- feedback about the desk, with no case ------------------------------------------------------------------


@dataclass(frozen=True)
class GeneralOutcome:
    """What recording one piece of general feedback did."""

    feedback: Feedback
    kind: FeedbackKind
    rule: str
    complaint_case: Case | None = None
    unanswerable: bool = False
    """A complaint with no way to reach its author: kept as feedback, with no case to answer it."""


def customer_on_file(session: Session, contact: CustomerCreate | None) -> Customer | None:
    """The customer on file with the e-mail address (any case) or the phone number given, the latest one."""
    if contact is None:
        return None
    for column, value in ((Customer.email, (contact.email or "").strip().casefold()),
                          (Customer.phone, (contact.phone or "").strip())):  # fmt: skip
        if value:
            key = func.lower(col(column)) if column is Customer.email else col(column)
            found = session.exec(select(Customer).where(key == value).order_by(col(Customer.id).desc())).first()
            if found is not None:
                return found
    return None


def record_general(
    session: Session,
    desk: Desk,
    *,
    channel: str,
    text: str | None,
    now: datetime,
    score: int | None = None,
    solved: bool | None = None,
    contact: CustomerCreate | None = None,
    source: str | None = None,
    actor: str = "system",
    vouched: bool = False,
) -> GeneralOutcome:
    """Store feedback about the desk that names no case (a hotline call, a web form, social media) and act on it.

    It is classified as any feedback is; the customer on file is linked when the contact given matches one. A
    complaint (its words) from someone the desk can reach files a complaint case for them, routed to the
    complaints team as every complaint is; a complaint from nobody reachable is kept, marked unanswerable. The
    supervisors are told of every one (``staff_general_feedback``) and close it once looked at
    (``finish_general``), so none is left unread. The caller commits.

    ``vouched``: the contact was checked by a person (a staff member noting a call), so a complaint is filed for
    the customer on file it matches. Otherwise (a webhook) the complaint is filed for the contact as given: knowing
    someone's e-mail address must not be enough to file in their name and have the desk write to them.

    Raises:
        InvalidInput: as ``record``; and a contact with neither a phone number nor an e-mail address.
    """
    comment = _checked(desk, channel=channel, text=text, score=score, solved=solved)
    if contact is not None and not (contact.phone or contact.email):
        raise InvalidInput("customer: give a phone number or an e-mail address to be answered (or no customer)")
    found = classify_feedback(comment, score=score, solved=solved)
    on_file = customer_on_file(session, contact)
    feedback = Feedback(case_id=None, customer_id=on_file.id if on_file else None, score=score, solved=solved,
                        comment=comment, channel=channel, classification=found.kind.value, received_at=now,
                        source=(source or None) and source[:200])  # fmt: skip
    session.add(feedback)
    session.flush()
    complaint = None
    complains = comment is not None and classify_feedback(comment).kind == FeedbackKind.complaint
    filer = on_file if vouched or contact is None else None
    if complains and (contact is not None or filer is not None):
        intake_channel = channel if channel in {c.value for c in Channel} else Channel.webhook.value
        data = CaseCreate(kind=CaseKind.complaint, channel=Channel(intake_channel), description=comment,
                          customer=contact or CustomerCreate(name=filer.name if filer else "-"))  # fmt: skip
        complaint = intake(session, desk, data=data, actor=actor, now=now, customer=filer)
        feedback.complaint_case_id = complaint.id
        session.add(feedback)
    reached = "on_file" if on_file else "given" if contact else "none"  # the message says it in its language
    enqueue(
        session,
        template="staff_general_feedback",
        recipient="role:supervisor",
        context={
            "feedback_id": feedback.id, "channel": channel, "classification": found.kind.value,
            "score": score if score is not None else "-", "comment": (comment or "-")[:500], "contact": reached,
            "complaint_number": complaint.number if complaint else "-",
            "command": f"claimflow feedback done --feedback {feedback.id} --by <username> --note ...",
        },
        idempotency_key=f"general-feedback:{feedback.id}",
        now=now,
    )  # fmt: skip
    return GeneralOutcome(feedback, found.kind, found.rule, complaint, complains and complaint is None)


def finish_general(session: Session, *, feedback_id: int, username: str, note: str, now: datetime) -> Feedback:
    """A supervisor or manager closes a piece of general feedback once it has been looked at (the caller commits).

    Raises:
        NotFound: no such general feedback, or no such active staff member.
        InvalidInput: an empty note, one already closed, or a member who is not a supervisor or manager.
    """
    if not note.strip():
        raise InvalidInput("--note: say what was done with it")
    feedback = session.get(Feedback, feedback_id, with_for_update=True)
    if feedback is None or feedback.case_id is not None:
        raise NotFound(f"no general feedback #{feedback_id} (feedback on a case is closed with its case number)")
    member = session.exec(select(Staff).where(Staff.username == username)).first()
    if member is None or not member.active:
        raise NotFound(f"no active staff member {username!r}")
    if member.role not in ("supervisor", "manager"):
        raise InvalidInput(f"{username} is a {member.role}; general feedback is closed by a supervisor or manager")
    if feedback.handled_at is not None:
        raise InvalidInput(f"feedback #{feedback_id} was closed by {feedback.handled_by} already")
    if len(note) > MAX_COMMENT_CHARS:
        raise InvalidInput(f"--note: at most {MAX_COMMENT_CHARS} characters")
    feedback.handled_at, feedback.handled_by, feedback.handled_note = now, username, note.strip()
    session.add(feedback)
    return feedback


def open_general(session: Session) -> list[Feedback]:
    """General feedback nobody has closed yet, the oldest first."""
    return list(session.exec(
        select(Feedback).where(col(Feedback.case_id).is_(None), col(Feedback.handled_at).is_(None))
        .order_by(col(Feedback.received_at))
    ))  # fmt: skip


def consequences(case: Case, feedback: Feedback) -> tuple[bool, bool]:
    """What a piece of feedback starts: (a follow-up step, a complaint case).

    A follow-up for a low score or "not solved", and on a complaint also for complaint words; a complaint case
    for complaint words (not merely a low score) about a claim or an inquiry.
    """
    complains = feedback.comment is not None and classify_feedback(feedback.comment).kind == FeedbackKind.complaint
    is_complaint = case.kind == CaseKind.complaint
    return needs_follow_up(feedback.score, feedback.solved) or (
        complains and is_complaint
    ), complains and not is_complaint


def _file_complaint(
    session: Session, desk: Desk, *, case: Case, feedback: Feedback, channel: str, now: datetime
) -> Case:
    customer = session.get(Customer, case.customer_id)
    assert customer is not None  # a foreign key
    intake_channel = channel if channel in {c.value for c in Channel} else Channel.webhook.value
    data = CaseCreate(
        kind=CaseKind.complaint,
        channel=Channel(intake_channel),
        product_line=case.product_line,
        jurisdiction=case.jurisdiction,
        description=feedback.comment,
        customer=CustomerCreate(name=customer.name),
        related_case_number=case.number,
    )
    complaint = intake(session, desk, data=data, actor="system", now=now, customer=customer)
    feedback.complaint_case_id = complaint.id
    session.add(feedback)
    append_event(
        session,
        case=case,
        actor="system",
        type="complaint_filed_from_feedback",
        data={"feedback": feedback.id, "complaint": complaint.number},
        now=now,
    )
    return complaint


def follow_up(session: Session, desk: Desk, *, case: Case, feedback: Feedback, now: datetime) -> Step:
    """Open the supervisor's follow-up step (once while it is open), tell the supervisor and the customer."""
    name = follow_up_step_name(case)
    assert case.id is not None
    existing = current_step(session, case_id=case.id, name=name)
    if existing is not None:
        return existing
    handler = session.get(Staff, case.handler_id) if case.handler_id else None
    department = session.get(Department, handler.department_id) if handler and handler.department_id else None
    try:
        chosen = choose_follow_up(
            candidates(session),
            handler_id=case.handler_id,
            handler_department=department.code if department else None,
            complaint=case.kind == CaseKind.complaint,
        )
    except NoEligibleHandler as exc:
        step = open_step(session, desk, case=case, name=name, now=now, unassigned=True)
        append_event(session, case=case, actor="system", type="follow_up_unassigned", data={"reason": str(exc)},
                     now=now)  # fmt: skip
        supervisor, recipient = "supervisors", "role:supervisor"
    else:
        step = open_step(session, desk, case=case, name=name, now=now, assignee_id=chosen.staff_id)
        member = session.get(Staff, chosen.staff_id)
        assert member is not None
        supervisor, recipient = member.name, f"staff:{member.username}"
    due = step.due_at or now
    key = f"{name}:{case.number}:{step.attempt}"
    enqueue(
        session,
        template="staff_follow_up",
        recipient=recipient,
        context={
            "case_number": case.number,
            "step": name,
            "supervisor_name": supervisor,
            "score": feedback.score if feedback.score is not None else "-",
            "solved": {True: "yes", False: "no", None: "-"}[feedback.solved],
            "comment": (feedback.comment or "-")[:500],
            "due_at": due,
            "command": f"claimflow feedback done {case.number} --by <username> --note ...",
        },
        idempotency_key=f"staff:{key}",
        now=now,
        case=case,
    )
    enqueue(
        session,
        template="survey_follow_up",
        recipient=f"customer:{case.customer_id}",
        context={"case_number": case.number, "due_at": due},
        idempotency_key=f"customer:{key}",
        now=now,
        case=case,
    )
    return step


def answer_survey(session: Session, desk: Desk, *, token: str, answer: SurveyAnswer, now: datetime) -> FeedbackOutcome:
    """Take a customer's survey answer: once per link, before it expires (the caller commits).

    Raises:
        SurveyLinkRefused: the link is forged, unknown, used or expired.
    """
    opened = open_invitation(session, desk.settings, token=token, now=now, lock=True)
    opened.invitation.answered_at = now
    session.add(opened.invitation)
    return record(
        session,
        desk,
        case=opened.case,
        channel="survey",
        text=answer.comment,
        score=answer.score,
        solved=answer.solved,
        source=f"survey invitation {opened.invitation.id}",
        invitation_id=opened.invitation.id,
        actor="customer",
        now=now,
    )


def finish_follow_up(session: Session, *, number: str, username: str, note: str, now: datetime) -> Step:
    """A supervisor records the call back and closes the follow-up step.

    Raises:
        NotFound: no such case, no such staff member, or no open follow-up on the case.
        InvalidInput: an empty note, or a staff member who may not close it (the case's handler).
    """
    if not note.strip():
        raise InvalidInput("--note: say what was agreed with the customer")
    if len(note) > MAX_COMMENT_CHARS:
        raise InvalidInput(f"--note: at most {MAX_COMMENT_CHARS} characters")
    case = get_case(session, number, for_update=True)
    member = session.exec(select(Staff).where(Staff.username == username)).first()
    if member is None or not member.active:
        raise NotFound(f"no active staff member {username!r}")
    if member.id == case.handler_id:
        raise InvalidInput(f"{username} handled {number}; the follow-up must be closed by someone else")
    step = current_step(session, case_id=case.id or 0, name=follow_up_step_name(case))
    if step is None:
        raise NotFound(f"{number} has no open follow-up")
    close_step(session, case=case, step=step, now=now, outcome=f"called back: {note.strip()[:400]}", actor=username)
    return step


def open_follow_ups(session: Session) -> list[tuple[Case, Step]]:
    """Every open follow-up step with its case, the oldest deadline first."""
    rows = session.exec(
        select(Case, Step)
        .join(Step, col(Step.case_id) == col(Case.id))
        .where(col(Step.name).in_(FOLLOW_UP_STEPS), col(Step.status).in_((StepStatus.open, StepStatus.paused)))
        .order_by(col(Step.due_at))
    ).all()
    return [(case, step) for case, step in rows]


# --- the periodic satisfaction survey ---------------------------------------------------------------------


@dataclass(frozen=True)
class SampleReport:
    """What one periodic survey pass did."""

    closed: int
    invited: tuple[str, ...]


def periodic_survey(session: Session, desk: Desk, *, now: datetime) -> SampleReport:
    """Invite a share of the recently closed cases, per handler and product line, to the satisfaction survey.

    Cases closed in the last ``survey_lookback_days`` with no invitation yet are the population; customers
    invited (for any reason) within ``survey_quiet_days`` are left alone. The sample is deterministic for the
    same population (the salt is the desk's survey key), so a pass repeated after a crash invites the same
    cases, and the invitation's uniqueness per case makes the repeat write nothing.
    """
    settings = desk.settings
    since = now - timedelta(days=settings.survey_lookback_days)
    rows = session.execute(
        sa_select(col(Case.id), col(Case.customer_id), col(Staff.username), col(Case.product_line), col(Case.closed_at))
        .join(Staff, col(Staff.id) == col(Case.handler_id), isouter=True)
        .join(SurveyInvitation, col(SurveyInvitation.case_id) == col(Case.id), isouter=True)
        .where(col(Case.closed_at) >= since, col(Case.closed_at) <= now, col(SurveyInvitation.id).is_(None))
    ).all()
    population = [
        ClosedCase(case_id=cid or 0, customer_id=customer, handler=handler, product_line=line, closed_at=closed)
        for cid, customer, handler, line, closed in rows
        if closed is not None
    ]
    customers = sorted({c.customer_id for c in population})
    last_invited: dict[int, datetime] = {}
    for chunk in range(0, len(customers), 1000):
        last_invited.update(
            session.exec(
                select(SurveyInvitation.customer_id, func.max(SurveyInvitation.sent_at))
                .where(col(SurveyInvitation.customer_id).in_(customers[chunk : chunk + 1000]))
                .group_by(col(SurveyInvitation.customer_id))
            ).all()
        )
    chosen = sample_for_survey(
        population,
        share=settings.survey_share,
        last_invited=last_invited,
        quiet_period=timedelta(days=settings.survey_quiet_days),
        now=now,
        salt=survey_key(settings),
    )
    invited = []
    for pick in chosen:
        case = session.get(Case, pick.case_id, with_for_update=True)  # feedback may be arriving for it
        if case is not None and invite(session, settings, case=case, reason="periodic", now=now) is not None:
            invited.append(case.number)
    return SampleReport(closed=len(population), invited=tuple(invited))

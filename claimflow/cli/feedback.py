"""``claimflow feedback ...`` and ``claimflow survey ...``: the customer's voice from the command line.

Registered in ``claimflow.cli``. A staff member notes feedback taken by phone (``feedback note``; with no case
number, feedback about the desk in general), supervisors see and close the follow-ups that dissatisfied customers
started and the general feedback (``feedback follow-ups``, ``feedback done``),
and operations can show a case's survey link or run one pass of the periodic satisfaction survey.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table
from sqlmodel import col, select

import claimflow.cli.common as common
from claimflow.console import office, office_zone, out, parse_now
from claimflow.settings import get_settings
from models.errors import InvalidInput, NotFound, describe_validation_error
from models.tables import Case, CustomerCreate, Feedback, Staff

feedback_app = typer.Typer(help="Feedback from customers and the follow-ups it starts.", no_args_is_help=True)
survey_app = typer.Typer(help="Survey links and the periodic satisfaction survey.", no_args_is_help=True)


def _solved(value: str | None) -> bool | None:
    if value is None:
        return None
    answer = value.strip().lower()
    if answer in {"yes", "y", "true", "是"}:
        return True
    if answer in {"no", "n", "false", "否"}:
        return False
    raise InvalidInput(f"--solved {value!r}: yes or no")


@feedback_app.command("note")
def note(
    text: Annotated[str, typer.Option("--text", help="What the customer said, in their words.")],
    by: Annotated[str, typer.Option("--by", help="Your username (who took the call).")],
    number: Annotated[
        str | None,
        typer.Argument(help="The case it is about, e.g. CLM-2026-000001; none: feedback about the desk in general."),
    ] = None,
    score: Annotated[int | None, typer.Option("--score", min=1, max=5, help="A 1-5 score, if they gave one.")] = None,
    solved: Annotated[str | None, typer.Option("--solved", help="yes or no, if they said.")] = None,
    channel: Annotated[str, typer.Option("--channel", help="phone, counter or letter.")] = "phone",
    name: Annotated[str | None, typer.Option("--name", help="No case: who it was, to answer them.")] = None,
    phone: Annotated[str | None, typer.Option("--phone", help="No case: their phone number.")] = None,
    email: Annotated[str | None, typer.Option("--email", help="No case: their e-mail address.")] = None,
    language: Annotated[str, typer.Option("--language", help="No case: their language.")] = "zh-CN",
) -> None:
    """Record feedback a customer gave by phone (or at the counter, or by letter), about a case or, with no
    case number, about the desk in general: classified, the supervisors told, a complaint case filed for a
    complaint from someone who can be answered."""
    from tasks.cases import get_case
    from tasks.feedback import record, record_general

    if channel not in {"phone", "counter", "letter"}:
        raise InvalidInput(f"--channel {channel!r}: phone, counter or letter (other channels record themselves)")
    contact = None
    if number is not None and (name or phone or email):
        raise InvalidInput("--name, --phone and --email are for feedback with no case (a case's customer is on file)")
    if number is None and (name or phone or email):
        if not (name or "").strip():
            raise InvalidInput("--name: who it was (the answer and any complaint case are addressed to them)")
        try:
            contact = CustomerCreate(name=(name or "").strip(), phone=phone, email=email, language=language)
        except ValidationError as exc:
            raise InvalidInput(describe_validation_error(exc)) from None
    with common.session() as session:
        member = session.exec(select(Staff).where(Staff.username == by)).first()
        if member is None or not member.active:
            raise NotFound(f"no active staff member {by!r}")
        if number is None:
            general = record_general(session, common.desk(), channel=channel, text=text, score=score,
                                     solved=_solved(solved), contact=contact, source=by, actor=by, now=common.now(),
                                     vouched=True)  # fmt: skip
            filed = f"; complaint {general.complaint_case.number} filed" if general.complaint_case else ""
            unanswered = "; a complaint nobody can be told the outcome of" if general.unanswerable else ""
            out.print(f"recorded general feedback #{general.feedback.id}: {general.kind.value} ({general.rule})"
                      f"{filed}{unanswered}; the supervisors are told")  # fmt: skip
            return
        case = get_case(session, number.strip().upper(), for_update=True)
        outcome = record(session, common.desk(), case=case, channel=channel, text=text, score=score,
                         solved=_solved(solved), source=by, actor=by, now=common.now())  # fmt: skip
        shown = _describe(outcome)
    out.print(f"recorded feedback on {case.number}: {shown}")


def _describe(outcome: Any) -> str:
    parts = [f"{outcome.kind.value} ({outcome.rule})"]
    if outcome.follow_up is not None:
        parts.append(f"follow-up step '{outcome.follow_up.name}' opened, due {office(outcome.follow_up.due_at)}")
    if outcome.complaint_case is not None:
        parts.append(f"complaint {outcome.complaint_case.number} filed")
    return "; ".join(parts)


@feedback_app.command("list")
def list_feedback(
    number: Annotated[str | None, typer.Option("--case", help="Only this case.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most recent first, at most this many.")] = 50,
) -> None:
    """The latest feedback: channel, score, solved, classification, and the complaint it opened."""
    table = Table(
        "id", f"received ({office_zone()})", "case", "channel", "score", "solved", "class", "source", "complaint"
    )
    with common.session() as session:
        query = select(Feedback, Case).join(Case, col(Case.id) == col(Feedback.case_id), isouter=True)
        if number:
            query = query.where(Case.number == number.strip().upper())
        rows = session.exec(query.order_by(col(Feedback.received_at).desc()).limit(limit)).all()
        complaints = {c.id: c.number for c in session.exec(
            select(Case).where(col(Case.id).in_([f.complaint_case_id for f, _ in rows if f.complaint_case_id]))
        )}  # fmt: skip
        for feedback, case in rows:
            table.add_row(
                str(feedback.id),
                office(feedback.received_at),
                case.number if case else "(general)",
                feedback.channel,
                str(feedback.score or "-"),
                {True: "yes", False: "no", None: "-"}[feedback.solved],
                feedback.classification or "-",
                feedback.source or "-",
                complaints.get(feedback.complaint_case_id, "-"),
            )
    out.print(table)


@feedback_app.command("follow-ups")
def follow_ups() -> None:
    """Open follow-ups (dissatisfied customers to call back), the oldest deadline first."""
    from tasks.feedback import open_follow_ups, open_general

    table = Table("case", "step", "assignee", f"due ({office_zone()})", "status")
    with common.session() as session:
        for case, step in open_follow_ups(session):
            member = session.get(Staff, step.assignee_id) if step.assignee_id else None
            due = office(step.due_at) or "-"
            table.add_row(case.number, step.name, member.username if member else "(supervisors)", due, step.status)
        general = Table(
            "feedback",
            f"received ({office_zone()})",
            "channel",
            "class",
            "complaint",
            title="General feedback to close",
        )
        for feedback in open_general(session):
            complaint = session.get(Case, feedback.complaint_case_id) if feedback.complaint_case_id else None
            general.add_row(f"#{feedback.id}", office(feedback.received_at), feedback.channel,
                            feedback.classification or "-", complaint.number if complaint else "-")  # fmt: skip
    out.print(table)
    if general.row_count:
        out.print(general)


@feedback_app.command("done")
def done(
    by: Annotated[str, typer.Option("--by", help="Your username (a supervisor, not the case's handler).")],
    note_text: Annotated[str, typer.Option("--note", help="What was agreed with the customer, or done with it.")],
    number: Annotated[str | None, typer.Argument(help="The case whose follow-up you finished.")] = None,
    feedback_id: Annotated[int | None, typer.Option("--feedback", help="Instead: general feedback #ID read.")] = None,
) -> None:
    """Close a follow-up after calling the customer back, or (--feedback ID) general feedback once looked at."""
    from tasks.feedback import finish_follow_up, finish_general

    if (number is None) == (feedback_id is None):
        raise InvalidInput("give a case number (its follow-up) or --feedback ID (general feedback), one of them")
    with common.session() as session:
        if feedback_id is not None:
            finish_general(session, feedback_id=feedback_id, username=by, note=note_text, now=common.now())
            out.print(f"general feedback #{feedback_id} closed by {by}")
            return
        assert number is not None
        step = finish_follow_up(session, number=number.strip().upper(), username=by, note=note_text,
                                now=common.now())  # fmt: skip
        name = step.name
    out.print(f"{number.strip().upper()}: {name} closed by {by}")


@survey_app.command("link")
def link(number: Annotated[str, typer.Argument(help="The case.")]) -> None:
    """Show the survey link sent for a case (to read it out or resend it), and its state."""
    from claimflow.secrets import survey_key
    from models.survey import SurveyLinkRefused, check_link, read_token
    from tasks.cases import get_case
    from tasks.survey import invitation_for, link_token, survey_url

    settings = get_settings()
    with common.session() as session:
        case = get_case(session, number.strip().upper())
        token = link_token(session, settings, case=case)
        invitation = invitation_for(session, case.id or 0)
        if token is None or invitation is None:
            raise NotFound(f"no survey invitation was sent for {case.number}")
        state = "open"
        try:
            check_link(read_token(survey_key(settings), token), answered_at=invitation.answered_at, exists=True,
                       now=common.now())  # fmt: skip
        except SurveyLinkRefused as refused:
            state = refused.reason.value
        out.print(f"{case.number}: {survey_url(settings, token)}")
        out.print(f"sent {office(invitation.sent_at)} ({invitation.reason}), expires "
                  f"{office(invitation.expires_at)} ({office_zone()}), {state}")  # fmt: skip


@survey_app.command("sample")
def sample(
    now: Annotated[str | None, typer.Option("--now", help="Run as if at this ISO time (default: now).")] = None,
) -> None:
    """Run one pass of the periodic satisfaction survey now: sample recently closed cases and invite them."""
    from tasks.feedback import periodic_survey

    at = common.now() if now is None else parse_now(now)
    settings = get_settings()
    with common.session() as session:
        report = periodic_survey(session, common.desk(), now=at)
    out.print(f"{report.closed} case(s) closed in the last {settings.survey_lookback_days} day(s) without a survey; "
              f"invited {len(report.invited)} (share {settings.survey_share:.0%} per handler and product line, "
              f"quiet period {settings.survey_quiet_days} days)")  # fmt: skip
    for number in report.invited:
        out.print(f"  {number}")

"""``claimflow feedback ...`` and ``claimflow survey ...``: the customer's voice from the command line.

Registered in ``claimflow.cli``. A staff member notes feedback taken by phone (``feedback note``), supervisors
see and close the follow-ups that dissatisfied customers started (``feedback follow-ups``, ``feedback done``),
and operations can show a case's survey link or run one pass of the periodic satisfaction survey.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from sqlmodel import col, select

from claimflow.console import out, parse_now
from claimflow.settings import get_settings
from models.errors import InvalidInput, NotFound
from models.tables import Case, Feedback, Staff

feedback_app = typer.Typer(help="Feedback from customers and the follow-ups it starts.", no_args_is_help=True)
survey_app = typer.Typer(help="Survey links and the periodic satisfaction survey.", no_args_is_help=True)


def _shell() -> Any:
    from claimflow import cli  # imported late: claimflow.cli registers these apps

    return cli


def _desk() -> Any:
    from tasks.workflow import Desk

    return Desk.of(get_settings())


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
    number: Annotated[str, typer.Argument(help="The case the feedback is about, e.g. CLM-2026-000001.")],
    text: Annotated[str, typer.Option("--text", help="What the customer said, in their words.")],
    by: Annotated[str, typer.Option("--by", help="Your username (who took the call).")],
    score: Annotated[int | None, typer.Option("--score", min=1, max=5, help="A 1-5 score, if they gave one.")] = None,
    solved: Annotated[str | None, typer.Option("--solved", help="yes or no, if they said.")] = None,
    channel: Annotated[str, typer.Option("--channel", help="phone, counter or letter.")] = "phone",
) -> None:
    """Record feedback a customer gave by phone (or at the counter, or by letter)."""
    from tasks.cases import get_case
    from tasks.feedback import record

    if channel not in {"phone", "counter", "letter"}:
        raise InvalidInput(f"--channel {channel!r}: phone, counter or letter (other channels record themselves)")
    with _shell()._session() as session:
        member = session.exec(select(Staff).where(Staff.username == by)).first()
        if member is None or not member.active:
            raise NotFound(f"no active staff member {by!r}")
        case = get_case(session, number.strip().upper(), for_update=True)
        outcome = record(session, _desk(), case=case, channel=channel, text=text, score=score, solved=_solved(solved),
                         source=by, actor=by, now=_shell()._now())  # fmt: skip
        shown = _describe(outcome)
    out.print(f"recorded feedback on {case.number}: {shown}")


def _describe(outcome: Any) -> str:
    parts = [f"{outcome.kind.value} ({outcome.rule})"]
    if outcome.follow_up is not None:
        parts.append(f"follow-up step '{outcome.follow_up.name}' opened, due {outcome.follow_up.due_at:%Y-%m-%d %H:%M}")
    if outcome.complaint_case is not None:
        parts.append(f"complaint {outcome.complaint_case.number} filed")
    return "; ".join(parts)


@feedback_app.command("list")
def list_feedback(
    number: Annotated[str | None, typer.Option("--case", help="Only this case.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most recent first, at most this many.")] = 50,
) -> None:
    """The latest feedback: channel, score, solved, classification, and the complaint it opened."""
    table = Table("received", "case", "channel", "score", "solved", "class", "source", "complaint")
    with _shell()._session() as session:
        query = select(Feedback, Case).join(Case, col(Case.id) == col(Feedback.case_id))
        if number:
            query = query.where(Case.number == number.strip().upper())
        rows = session.exec(query.order_by(col(Feedback.received_at).desc()).limit(limit)).all()
        complaints = {c.id: c.number for c in session.exec(
            select(Case).where(col(Case.id).in_([f.complaint_case_id for f, _ in rows if f.complaint_case_id]))
        )}  # fmt: skip
        for feedback, case in rows:
            table.add_row(
                f"{feedback.received_at:%Y-%m-%d %H:%M}",
                case.number,
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
    from tasks.feedback import open_follow_ups

    table = Table("case", "step", "assignee", "due", "status")
    with _shell()._session() as session:
        for case, step in open_follow_ups(session):
            member = session.get(Staff, step.assignee_id) if step.assignee_id else None
            due = f"{step.due_at:%Y-%m-%d %H:%M}" if step.due_at else "-"
            table.add_row(case.number, step.name, member.username if member else "(supervisors)", due, step.status)
    out.print(table)


@feedback_app.command("done")
def done(
    number: Annotated[str, typer.Argument(help="The case whose follow-up you finished.")],
    by: Annotated[str, typer.Option("--by", help="Your username (a supervisor, not the case's handler).")],
    note_text: Annotated[str, typer.Option("--note", help="What was agreed with the customer.")],
) -> None:
    """Close a follow-up after calling the customer back."""
    from tasks.feedback import finish_follow_up

    with _shell()._session() as session:
        step = finish_follow_up(session, number=number.strip().upper(), username=by, note=note_text,
                                now=_shell()._now())  # fmt: skip
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
    with _shell()._session() as session:
        case = get_case(session, number.strip().upper())
        token = link_token(session, settings, case=case)
        invitation = invitation_for(session, case.id or 0)
        if token is None or invitation is None:
            raise NotFound(f"no survey invitation was sent for {case.number}")
        state = "open"
        try:
            check_link(read_token(survey_key(settings), token), answered_at=invitation.answered_at, exists=True,
                       now=_shell()._now())  # fmt: skip
        except SurveyLinkRefused as refused:
            state = refused.reason.value
        out.print(f"{case.number}: {survey_url(settings, token)}")
        out.print(f"sent {invitation.sent_at:%Y-%m-%d %H:%M} ({invitation.reason}), expires "
                  f"{invitation.expires_at:%Y-%m-%d %H:%M}, {state}")  # fmt: skip


@survey_app.command("sample")
def sample(
    now: Annotated[str | None, typer.Option("--now", help="Run as if at this ISO time (default: now).")] = None,
) -> None:
    """Run one pass of the periodic satisfaction survey now: sample recently closed cases and invite them."""
    from tasks.feedback import periodic_survey

    at = _shell()._now() if now is None else parse_now(now)
    settings = get_settings()
    with _shell()._session() as session:
        report = periodic_survey(session, _desk(), now=at)
    out.print(f"{report.closed} case(s) closed in the last {settings.survey_lookback_days} day(s) without a survey; "
              f"invited {len(report.invited)} (share {settings.survey_share:.0%} per handler and product line, "
              f"quiet period {settings.survey_quiet_days} days)")  # fmt: skip
    for number in report.invited:
        out.print(f"  {number}")

"""``claimflow mail ...``: read the intake mailbox by hand.

Registered in ``claimflow.cli``: ``app.add_typer(mail_app, name="mail")``. Errors are raised as
``ClaimflowError`` subclasses (an unreachable mailbox is ``MailboxUnavailable``, exit code 5; missing settings
``InvalidInput``, exit code 2); the main entry point turns them into one line and an exit code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

import claimflow.cli.common as common
from claimflow.console import out

mail_app = typer.Typer(help="Read the intake mailbox.", no_args_is_help=True)


@mail_app.callback()
def _mail() -> None:
    """Read the intake mailbox (CLAIMFLOW_MAIL_IMAP_*)."""


@mail_app.command("poll")
def poll_command(
    limit: Annotated[
        int | None, typer.Option(min=1, help="Mails taken at most; default CLAIMFLOW_MAIL_BATCH_SIZE.")
    ] = None,
) -> None:
    """Take the unseen mail now: file new cases, add replies to their cases, skip automatic mail.

    Prints one line per mail (what became of it and the case) and a summary. New cases' runs are started by
    the reconciler of 'claimflow up' within a minute, as for 'case new'.
    """
    from claimflow.settings import get_settings
    from tasks.mail import poll
    from tasks.workflow import Desk

    settings = get_settings()
    engine = common.engine()
    report = poll(engine, Desk.of(settings), now=lambda: datetime.now(UTC), limit=limit)
    for outcome in report.outcomes:
        detail = outcome.case_number or ""
        if outcome.reason:
            detail = f"{detail} ({outcome.reason})".strip()
        if outcome.documents:
            detail += f"; documents received: {', '.join(outcome.documents)}"
        out.print(f"{outcome.disposition:<9} {detail}".rstrip())
    out.print(report.summary())


@mail_app.command("list")
def list_command(
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="rejected, skipped, duplicate, filed or appended (repeat for several)."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only mails read since this time (ISO 8601 with offset).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows at most, newest first.")] = 200,
) -> None:
    """The mails the intake has read and what became of each, with the reason for those rejected or skipped
    (no addresses, no subjects). A rejected mail can be taken again after a fix: 'claimflow mail retry ID'."""
    from rich.table import Table

    from claimflow.console import office, office_zone, parse_now
    from tasks.mail import APPENDED, DUPLICATE, FILED, REJECTED, SKIPPED, mail_rows

    known = {FILED, APPENDED, SKIPPED, REJECTED, DUPLICATE}
    wrong = [s for s in status or [] if s not in known]
    if wrong:
        from models.errors import InvalidInput

        raise InvalidInput(f"--status: {', '.join(wrong)} is not one of {', '.join(sorted(known))}")
    with common.session() as session:
        rows = mail_rows(session, dispositions=status, since=parse_now(since, "--since") if since else None,
                         limit=limit)  # fmt: skip
        cases = _case_numbers(session, {r.case_id for r in rows if r.case_id})
    table = Table("id", f"read ({office_zone()})", "what became of it", "case", "uid", "reason")
    for r in rows:
        table.add_row(str(r.id), office(r.received_at), r.disposition, cases.get(r.case_id or 0, ""), str(r.uid or ""),
                      r.reason or "")  # fmt: skip
    out.print(table)
    out.print(f"{len(rows)} mail(s)")


def _case_numbers(session: Any, ids: set[int]) -> dict[int, str]:
    from sqlmodel import col, select

    from models.tables import Case

    return {i: n for i, n in session.exec(select(Case.id, Case.number).where(col(Case.id).in_(ids)))} if ids else {}


@mail_app.command("retry")
def retry_command(
    mail_id: Annotated[int, typer.Argument(help="The mail's id ('claimflow mail list --status rejected').")],
    poll_now: Annotated[
        bool, typer.Option("--poll/--no-poll", help="Take it now (default), or at the next poll.")
    ] = True,
) -> None:
    """Take a rejected or skipped mail again after a fix: it is flagged unseen and its record removed, then
    polled at once (or by the next poll)."""
    from claimflow.settings import get_settings
    from tasks.mail import open_mailbox, retry_mail

    settings = get_settings()
    engine = common.engine()
    with open_mailbox(settings) as mailbox:
        row = retry_mail(engine, mail_id=mail_id, source=mailbox)
    out.print(f"mail {mail_id} (UID {row.uid}, {row.disposition} before) is unseen again")
    if poll_now:
        poll_command(limit=None)

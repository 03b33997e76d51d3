"""``claimflow mail ...``: read the intake mailbox by hand.

Registered in ``claimflow.cli``: ``app.add_typer(mail_app, name="mail")``. Errors are raised as
``ClaimflowError`` subclasses (an unreachable mailbox is ``MailboxUnavailable``, exit code 5; missing settings
``InvalidInput``, exit code 2); the main entry point turns them into one line and an exit code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from claimflow.console import out

mail_app = typer.Typer(help="Read the intake mailbox.", no_args_is_help=True)


def _main_cli() -> Any:
    from claimflow import cli  # imported late: claimflow.cli registers this app

    return cli


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
    engine = _main_cli()._engine()
    report = poll(engine, Desk.of(settings), now=lambda: datetime.now(UTC), limit=limit)
    for outcome in report.outcomes:
        detail = outcome.case_number or ""
        if outcome.reason:
            detail = f"{detail} ({outcome.reason})".strip()
        if outcome.documents:
            detail += f"; documents received: {', '.join(outcome.documents)}"
        out.print(f"{outcome.disposition:<9} {detail}".rstrip())
    out.print(report.summary())

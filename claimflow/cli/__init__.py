"""The ``claimflow`` command: the desk's tools for people at a terminal.

This module builds the command from the groups beside it (``db``, ``staff``, ``cases``, ``deadlines``, ``desk``,
``messages``, ``mail``, ``reports``, ``feedback``, ``api``), which share ``claimflow.cli.common`` and never import
this module back.

Every error a person can cause ends as one line on stderr (``error: ...``) and a non-zero exit code, never a
traceback: usage errors exit 2, ``ClaimflowError`` subclasses exit with their own ``exit_code``.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError

from claimflow.cli.api import api as api_command
from claimflow.cli.cases import attachments_app, audit_app, case_app
from claimflow.cli.common import state
from claimflow.cli.db import config_app, db_app
from claimflow.cli.deadlines import calendar_app, policy_app, sla_app
from claimflow.cli.desk import decide, demo, escalation_app, runner, up
from claimflow.cli.feedback import feedback_app, survey_app
from claimflow.cli.mail import mail_app
from claimflow.cli.messages import outbox_app, template_app
from claimflow.cli.reports import report_app
from claimflow.cli.staff import staff_app
from claimflow.console import fit_to_output
from models.errors import ClaimflowError

try:  # typer vendors its own click since 0.2x; its exceptions are not click's
    from typer._click import exceptions as cli_errors
except ImportError:  # pragma: no cover - older typer on plain click
    from click import exceptions as cli_errors  # type: ignore[no-redef]

app = typer.Typer(
    name="claimflow",
    help="Claim and complaint desk: cases, deadlines, escalations and the audit log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(staff_app, name="staff")
app.add_typer(case_app, name="case")
app.add_typer(audit_app, name="audit")
app.add_typer(attachments_app, name="attachments")
app.add_typer(calendar_app, name="calendar", help="Working days and rest days per region.")
app.add_typer(sla_app, name="sla", help="Deadlines from the SLA policy packs.")
app.add_typer(policy_app, name="policy", help="Check SLA policy packs.")
app.add_typer(template_app, name="template", help="Preview the messages the desk sends.")
app.add_typer(outbox_app, name="outbox", help="Messages waiting to leave, sent, or dead-lettered.")
app.add_typer(mail_app, name="mail", help="Read the intake mailbox.")
app.add_typer(report_app, name="report", help="Quality reports: SLA, cycle time, satisfaction, scorecard.")
app.add_typer(escalation_app, name="escalation", help="Breached steps waiting for a supervisor's decision.")
app.add_typer(feedback_app, name="feedback", help="Feedback from customers and the follow-ups it starts.")
app.add_typer(survey_app, name="survey", help="Survey links and the periodic satisfaction survey.")
app.command("up")(up)
app.command("runner")(runner)
app.command("demo")(demo)
app.command("decide")(decide)
app.command("api")(api_command)


@app.callback()
def _root(
    actor: Annotated[
        str | None,
        typer.Option(help="Who is acting (recorded in the audit log); default $CLAIMFLOW_ACTOR or the OS user."),
    ] = None,
) -> None:
    state.actor = actor or os.environ.get("CLAIMFLOW_ACTOR") or _os_user()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "system"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; turn every expected failure into one line and an exit code."""
    fit_to_output()
    try:
        result = app(args=argv, standalone_mode=False, prog_name="claimflow")
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except cli_errors.NoArgsIsHelpError as exc:
        print(exc.format_message())
        return 2
    except cli_errors.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "claimflow"
        message = " ".join(exc.format_message().replace("Value error, ", "").split())
        print(f"error: {command}: {message}", file=sys.stderr)
        return 2
    except cli_errors.ClickException as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except ClaimflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except IntegrityError as exc:
        print(f"error: refused by the database: {str(exc.orig or exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        print(f"error: database failure: {str(exc.orig or exc).splitlines()[0]}", file=sys.stderr)
        return 5
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        for problem in exc.errors():  # a CLAIMFLOW_* variable the settings refuse: name it, not a traceback
            name = "CLAIMFLOW_" + "_".join(str(part) for part in problem["loc"]).upper()
            print(f"error: {name}: {problem['msg']} (got {problem.get('input')!r})", file=sys.stderr)
        return 2
    return int(result) if isinstance(result, int) else 0

"""The commands that run the desk on Prefect: ``up``, ``demo``, ``decide``, ``escalation``, ``sla tick``.

Prefect is imported only inside these commands, after ``prefect_environment`` has pointed it at the desk's
server, so the rest of the CLI stays fast and works without a server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table
from sqlmodel import Session, col, select

import claimflow.cli.common as common
from claimflow.cli.deadlines import sla_app
from claimflow.console import office, office_zone, out, parse_now
from claimflow.settings import Settings, get_settings
from models.errors import ClaimflowError, DecisionRefused, InvalidInput, describe_validation_error
from models.tables import Case, Escalation, Staff, Step

escalation_app = typer.Typer(help="Breached steps waiting for a supervisor's decision.", no_args_is_help=True)


def _prefect() -> None:
    from claimflow.orchestrator import prefect_environment

    prefect_environment(get_settings())


# --- up ---------------------------------------------------------------------------------------------------


def up(
    port: Annotated[int | None, typer.Option(help="Port of the Prefect server and UI (default 4200).")] = None,
) -> None:
    """Start the desk on this machine: the Prefect server with its UI, the deployments, the desk runner.

    Stops everything on Ctrl-C.
    """
    from claimflow.migrate import upgrade
    from claimflow.orchestrator import EmbeddedServer, api_url, auth_string, server_environment

    settings = get_settings()
    if port is not None:
        settings = settings.model_copy(update={"prefect_port": port})
    import os

    for key in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_HOME"):
        os.environ[key] = server_environment(settings)[key]
    engine = common.engine()
    upgrade(engine)
    log = settings.data_dir / "logs" / "prefect-server.log"
    server = EmbeddedServer(settings, log=log)
    out.print(f"starting the Prefect server (log: {log}) ...")
    server.start()
    ui = api_url(settings).removesuffix("/api")
    out.print(f"Prefect UI:   {ui}  (login with: {auth_string(settings)})")
    out.print(f"case database: {engine.url.render_as_string(hide_password=True)}")
    out.print("deployments:  claim-process, complaint-process, inquiry-process, escalation; housekeeping (tag "
              f"housekeeping): sla-watch (every minute), reconcile (every {settings.reconcile_seconds} s), "
              "quality-report, satisfaction-survey"
              + (", mail-intake" if settings.mail_imap_host else "")
              + "; actions (Deployments > Run > Custom run): reassign-cases, extend-step, release-message")  # fmt: skip
    out.print(f"delivery:     {describe_delivery(settings)}")
    if not settings.desk_phone:
        out.print("desk phone:   not set: customer messages quote it, so they are held until CLAIMFLOW_DESK_PHONE "
                  "is set ('claimflow outbox list --status held'; sent within minutes of the restart)")  # fmt: skip
    out.print("desk runner:  executing runs in this process, delivering the outbox and keeping each case's page and "
              "tags current in the UI; try 'claimflow demo' in another terminal")  # fmt: skip
    from claimflow.cli.api import ApiThread

    intake_api = ApiThread(settings)
    try:
        intake_api.start()
        # said once the deployments are registered: 'claimflow demo' right after it starts runs of them
        asyncio.run(_serve(settings.runner_limit, settings.runner_poll_seconds, settings.runner_heartbeats,
                           ready=lambda: out.print("press Ctrl-C to stop")))  # fmt: skip
    except KeyboardInterrupt:
        pass
    finally:
        out.print("stopping ...")
        intake_api.stop()
        _drain_prefect_clients()
        server.stop()
        out.print("stopped")


def runner() -> None:
    """Run only the desk runner against the Prefect server in PREFECT_API_URL (scale-out: one per machine)."""
    import os

    from claimflow.db import check_reachable
    from claimflow.migrate import require_current_schema
    from claimflow.priority import lower_priority

    if not os.environ.get("PREFECT_API_URL"):
        raise InvalidInput("set PREFECT_API_URL (and PREFECT_API_AUTH_STRING) to the desk's Prefect server")
    engine = common.engine()
    check_reachable(engine)
    require_current_schema(engine)
    settings = get_settings()
    nice = lower_priority(settings.runner_nice)
    out.print(
        f"desk runner for {os.environ['PREFECT_API_URL']} (up to {settings.runner_limit} runs at once"
        + (f", CPU priority nice {nice}" if nice else "")
        + "); Ctrl-C stops"
    )
    try:
        asyncio.run(_serve(settings.runner_limit, settings.runner_poll_seconds, settings.runner_heartbeats))
    except KeyboardInterrupt:
        pass
    finally:
        _drain_prefect_clients()


def _drain_prefect_clients() -> None:
    from flows.runner import drain_prefect_clients

    drain_prefect_clients()


async def _serve(limit: int, poll: float, heartbeats: bool, *, ready: Callable[[], None] | None = None) -> None:
    """Register the desk's deployments, then (``ready`` called) run the desk runner until a signal."""
    from flows.delivery import DeliveryLoop
    from flows.deployments import register, up_schedules
    from flows.runner import DeskRunner
    from flows.workspace import CaseViewPublisher

    flows = await register(**up_schedules(get_settings()))
    if ready is not None:
        ready()
    runner = DeskRunner(flows, limit=limit, poll_seconds=poll, heartbeats=heartbeats,
                        background=[CaseViewPublisher().loop, DeliveryLoop().loop])  # fmt: skip
    await runner.run_until_signalled()


# --- demo -------------------------------------------------------------------------------------------------


def demo() -> None:
    """File sample cases and play the handlers' decisions on the running desk (start 'claimflow up' first)."""
    from claimflow.demo import Player, file_samples, load_sample_desk, play, secrets_file
    from claimflow.migrate import upgrade
    from claimflow.orchestrator import api_url, auth_string, server_ready

    settings = get_settings()
    _prefect()
    engine = common.engine()
    upgrade(engine)
    secrets = load_sample_desk(engine, settings)
    cases = file_samples(engine, common.desk(), now=common.now())
    out.print("filed: " + ", ".join(f"{c.number} ({c.kind})" for c in cases))
    table = Table(
        "staff", "approval secret (add it to an authenticator app)", title="the sample staff, enrolled (demo desk only)"
    )
    for username, secret in secrets.items():
        table.add_row(username, secret)
    out.print(table)
    out.print(f"'claimflow staff code USER' prints a sample person's current code (kept in {secrets_file(settings)})")
    import os

    url = os.environ["PREFECT_API_URL"]
    if not server_ready(url, os.environ.get("PREFECT_API_AUTH_STRING") or auth_string(settings)):
        out.print(f"no Prefect server answers at {url}: start 'claimflow up'; its reconciler starts these cases' runs")
        return
    from prefect.exceptions import ObjectNotFound

    from tasks.answers import give_input
    from tasks.runs import launch_case

    for case in cases:
        try:
            asyncio.run(launch_case(engine, case_id=case.id or 0))
        except ObjectNotFound as missing:  # the desk is still starting: its deployments are not there yet
            raise InvalidInput(
                "the desk's deployments are not registered yet: wait until 'claimflow up' says 'press Ctrl-C to "
                "stop' and run the demo again (these cases are filed; the reconciler starts their runs)"
            ) from missing
    out.print(f"their runs: {api_url(settings).removesuffix('/api')}/runs  (one per case, named by its number)")
    player = Player(engine, secrets, lambda run, answer: asyncio.run(give_input(run, answer)),
                    lambda number: _waiting(engine, number), out.print)  # fmt: skip
    play(player, cases)
    _summary(engine, [c.number for c in cases])


def _waiting(engine: Any, number: str) -> tuple[str, str] | None:
    from tasks.answers import waiting_run

    try:
        return asyncio.run(waiting_run(engine, number=number))
    except ClaimflowError:
        return None


def _summary(engine: Any, numbers: list[str]) -> None:
    deadline = time.monotonic() + 60
    table = Table("case", "kind", "status", "handler", f"waiting for (due, {office_zone()})", title="the sample cases")
    while True:
        with Session(engine) as session:
            rows = []
            for number in numbers:
                case = session.exec(select(Case).where(Case.number == number)).one()
                handler = session.get(Staff, case.handler_id) if case.handler_id else None
                step = session.exec(
                    select(Step).where(Step.case_id == case.id, col(Step.waiting_key).is_not(None))
                ).first()
                rows.append((case, handler, step))
        if all(c.status in ("closed", "investigating") for c, _, _ in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for case, handler, step in rows:
        waiting = f"{step.name} (due {office(step.due_at)})" if step and step.due_at else "-"
        table.add_row(case.number, case.kind, case.status, handler.username if handler else "-", waiting)
    out.print(table)
    out.print("the complaint waits for the independent complaints team: decide it in the UI (Resume) or with "
              "'claimflow decide'")  # fmt: skip
    from models.enums import OutboxStatus
    from models.tables import Outbox

    with Session(engine) as session:
        held = len(session.exec(select(Outbox.id).where(Outbox.status == OutboxStatus.held)).all())
    if held:
        out.print(f"{held} customer message(s) held: the desk's phone is not set (CLAIMFLOW_DESK_PHONE); "
                  "'claimflow outbox list --status held' shows them, they are sent once it is set")  # fmt: skip


# --- decide -----------------------------------------------------------------------------------------------


def decide(
    number: Annotated[str, typer.Argument(help="Case number waiting for a decision.")],
    staff: Annotated[str, typer.Option(help="Your staff username.")],
    code: Annotated[str, typer.Option(help="Your current approval code (authenticator app).")],
    decision: Annotated[str | None, typer.Option(help="The choice the form offers (approve, reject ...).")] = None,
    amount: Annotated[str | None, typer.Option(help="Amount (approve, approve_partly, payment).")] = None,
    reasons: Annotated[str | None, typer.Option(help="Reasons (reject, approve_partly, not_uphold).")] = None,
    clause: Annotated[str | None, typer.Option(help="Policy clause relied on (reject, approve_partly).")] = None,
    documents: Annotated[str | None, typer.Option(help="Documents, separated by ';'.")] = None,
    remedy: Annotated[str | None, typer.Option(help="Remedy (uphold, partly_uphold).")] = None,
    answer: Annotated[str | None, typer.Option(help="The answer to an inquiry.")] = None,
    reference: Annotated[str | None, typer.Option(help="Payment reference.")] = None,
    comment: Annotated[str | None, typer.Option(help="Comment (second approval).")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the outcome.")] = 60,
) -> None:
    """Give the decision a case's run is waiting for (the same form as in the Prefect UI)."""
    _prefect()  # the server's address and login, in the environment (Prefect itself is not loaded: see below)
    from models.forms import FIELDS
    from tasks.answers import give_input, waiting_run  # the REST API with httpx: answers at once
    from tasks.workflow import key_kind

    engine = common.engine()
    run_id, key = asyncio.run(waiting_run(engine, number=number, patience=min(wait, 30)))
    form = FIELDS[key_kind(key).value]
    given: dict[str, Any] = {"staff": staff, "approval_code": code}
    options = {"decision": decision, "amount": amount, "reasons": reasons, "clause": clause, "remedy": remedy,
               "answer": answer, "reference": reference, "comment": comment}  # fmt: skip
    for name, value in options.items():
        if value is not None:
            given[name] = value
    if documents is not None:
        given["documents"] = [d.strip() for d in documents.split(";") if d.strip()]
        if form.form == "claim_review":
            given["documents"] = documents
    unknown = [name for name in given if name not in form.model_fields]
    if unknown:
        raise InvalidInput(f"{number} waits for a {key_kind(key).value} decision, which has no {', '.join(unknown)}")
    try:
        form.model_validate(given)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None

    _give_and_report(engine, number, lambda: asyncio.run(give_input(run_id, given)), wait, key=key)


def _give_and_report(
    engine: Any, number: str, give: Any, wait: float, *, key: str, taken_up: Callable[[Session], bool] | None = None
) -> None:
    """Give the answer, then wait for the run to take it up and say what it did (``tasks.answers.outcome``)."""
    from tasks.answers import event_count, outcome

    with Session(engine) as session:
        case = session.exec(select(Case).where(Case.number == number.strip().upper())).one()
        case_id, before = case.id or 0, event_count(session, case.id or 0)
    give()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with Session(engine) as session:
            done = outcome(session, case_id, key=key, before=before, taken_up=taken_up)
        if done is not None and done.refused is not None:
            raise DecisionRefused(f"refused: {done.refused}")
        if done is not None:
            out.print(f"{case.number}: {', '.join(done.events) or 'decided'}; now {done.status}")
            return
        time.sleep(0.2)  # the runner takes a resumed run up within a second; the outcome is shown at once
    out.print(f"{case.number}: decision sent; the desk has not taken it up yet (is 'claimflow up' running?)")


# --- escalations ------------------------------------------------------------------------------------------


@escalation_app.command("list")
def escalation_list(
    all_: Annotated[bool, typer.Option("--all", help="Decided ones too.")] = False,
) -> None:
    """Escalations waiting for a decision (and with --all, the decided ones)."""
    engine = common.engine()
    zone = office_zone()
    table = Table("id", "case", "step", "level", "role", f"raised ({zone})", f"decide by ({zone})", "decision")
    with Session(engine) as session:
        statement = select(Escalation).order_by(col(Escalation.id))
        if not all_:
            statement = statement.where(col(Escalation.decision).is_(None))
        for e in session.exec(statement):
            case, step = session.get(Case, e.case_id), session.get(Step, e.step_id)
            table.add_row(str(e.id), case.number if case else "-", step.name if step else "-", str(e.level), e.role,
                          office(e.raised_at), office(e.decide_by) or "-",
                          e.decision or "")  # fmt: skip
    out.print(table)


@escalation_app.command("decide")
def escalation_decide(
    escalation_id: Annotated[int, typer.Argument(help="Escalation id (claimflow escalation list).")],
    staff: Annotated[str, typer.Option(help="Your staff username (a supervisor; a manager from level 2).")],
    code: Annotated[str, typer.Option(help="Your current approval code.")],
    decision: Annotated[str, typer.Option(help="extend, reassign or take_over.")],
    reason: Annotated[str, typer.Option(help="Why (the customer is told when the deadline is extended).")] = "",
    extension: Annotated[str, typer.Option(help="Extension rule (default: the pack's supervisor-extension).")] = "",
    reassign_to: Annotated[str, typer.Option(help="New handler's username (reassign).")] = "",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the outcome.")] = 60,
) -> None:
    """Decide an escalation (the same form as in the Prefect UI)."""
    _prefect()  # the server's address and login (see decide)
    from models.forms import EscalationDecisionFields
    from tasks.answers import give_input
    from tasks.escalations import escalation_key

    engine = common.engine()
    with Session(engine) as session:
        escalation = session.get(Escalation, escalation_id)
        if escalation is None:
            raise InvalidInput(f"no escalation {escalation_id}")
        case = session.get(Case, escalation.case_id)
    if escalation.decision is not None or escalation.flow_run_id is None or case is None:
        raise InvalidInput(
            f"escalation {escalation_id} is not waiting for a decision ({escalation.decision or 'no run'})"
        )
    given = {"staff": staff, "approval_code": code, "decision": decision, "reason": reason, "extension": extension,
             "reassign_to": reassign_to}  # fmt: skip
    try:
        EscalationDecisionFields.model_validate(given)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None
    run_id = escalation.flow_run_id
    with Session(engine) as session:
        key = escalation_key(session, escalation)

    def taken_up(session: Session) -> bool:
        decided = session.get(Escalation, escalation_id)
        return decided is not None and decided.decision is not None

    _give_and_report(engine, case.number, lambda: asyncio.run(give_input(run_id, given)), wait, key=key,
                     taken_up=taken_up)  # fmt: skip


# --- sla tick ---------------------------------------------------------------------------------------------


@sla_app.command("tick")
def sla_tick(
    now: Annotated[str | None, typer.Option(help="Run the pass as of this time (ISO 8601 with offset).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would be done at that time; record nothing.")
    ] = False,
) -> None:
    """Run one SLA watcher pass and print what it did (reminders, escalations)."""
    from claimflow.db import session_scope
    from tasks.escalations import watch_pass

    at = common.now() if now is None else parse_now(now)
    engine = common.engine()
    if dry_run:
        with Session(engine) as session:
            report = watch_pass(session, now=at)
            session.rollback()
    else:
        with session_scope(engine) as session:
            report = watch_pass(session, now=at)
    for line in report.lines:
        out.print(line)
    for line in report.failures:
        out.print(line)
    out.print(f"checked {report.steps_checked} step(s): {len(report.reminders)} reminder(s), "
              f"{len(report.escalations)} escalation(s)"
              + (f", {len(report.failures)} not watched" if report.failures else ""))  # fmt: skip
    if dry_run:
        out.print("dry run: nothing was recorded")
    elif report.escalations:
        out.print("their escalation runs are started by the reconciler of 'claimflow up' within a minute")


def describe_delivery(settings: Settings) -> str:
    """Where the desk's messages go, for ``claimflow up``'s banner: a desk with no channel dead-letters every
    message (an ERROR line each), which a newcomer should read here first rather than in the log."""
    channels = [
        name
        for name, configured in (
            ("customers by e-mail", settings.customer_email_url),
            ("customers by SMS", settings.customer_sms_url),
        )
        if configured
    ] + [f"staff {reference}" for reference in sorted(settings.staff_channels)]
    if not channels:
        return (
            "no channel configured: messages are dead-lettered (set CLAIMFLOW_CUSTOMER_EMAIL_URL and "
            "CLAIMFLOW_STAFF_CHANNELS; 'claimflow outbox list' shows them, 'claimflow outbox retry ID' queues one "
            "again)"
        )
    return ", ".join(channels)

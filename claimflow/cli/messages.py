"""``claimflow template ...`` (preview messages) and ``claimflow outbox ...`` (inspect and drive delivery).

Registered in ``claimflow.cli``: ``app.add_typer(template_app, name="template")`` and
``app.add_typer(outbox_app, name="outbox")``. Errors are raised as ``ClaimflowError`` subclasses; the main
entry point turns them into one line and an exit code.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

import claimflow.cli.common as common
from claimflow.cli.common import state
from claimflow.console import err, out, parse_sets
from claimflow.settings import get_settings
from models.errors import InvalidInput
from models.masking import mask_name
from models.messages import CATALOGUE, LANGUAGES, spec_for

template_app = typer.Typer(help="Preview the messages the desk sends.", no_args_is_help=True)
outbox_app = typer.Typer(help="Inspect and drive the notification outbox.", no_args_is_help=True)


def _table(*columns: str) -> Table:
    """A table that folds long cells instead of cutting them: nothing is hidden on a narrow terminal."""
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


# --- template ---------------------------------------------------------------------------------------------


@template_app.command("list")
def template_list() -> None:
    """Every message: who receives it, the values it needs, what it is for."""
    table = _table("name", "audience", "languages", "needs", "purpose")
    for spec in CATALOGUE.values():
        table.add_row(spec.name, spec.audience, ", ".join(LANGUAGES), ", ".join(spec.required), spec.description)
    out.print(table)


def case_context(session: Any, number: str) -> dict[str, Any]:
    """Values a message can take from a case (the customer's name masked: this is a preview)."""
    from models.tables import Customer, Staff
    from tasks.cases import get_case

    case = get_case(session, number)
    customer = session.get(Customer, case.customer_id)
    handler = session.get(Staff, case.handler_id) if case.handler_id else None
    values: dict[str, Any] = {
        "case_number": case.number,
        "kind": str(case.kind),
        "channel": str(case.channel),
        "priority": str(case.priority),
        "received_at": case.opened_at.isoformat(),
        "currency": case.currency,
        "customer_name": mask_name(customer.name) if customer else "",
    }
    if case.amount_claimed is not None:
        values["amount"] = str(case.amount_claimed)
    if case.outcome:
        values["outcome"] = case.outcome
    if handler is not None:
        values["handler_name"] = handler.name
    return values


@template_app.command("render")
def template_render(
    name: Annotated[str, typer.Argument(help="Message name (see 'claimflow template list').")],
    lang: Annotated[str, typer.Option("--lang", help="Language: zh-CN or en.")] = "zh-CN",
    case: Annotated[str | None, typer.Option("--case", help="Take what the message can from this case.")] = None,
    values: Annotated[
        list[str] | None, typer.Option("--set", help="A value of the message, KEY=VALUE (repeatable).")
    ] = None,
    part: Annotated[str, typer.Option(help="What to print: text, html or all.")] = "text",
) -> None:
    """Render a message as it would be sent, and run the wording check on it."""
    from models.wording import check_wording
    from tasks.outbox import default_config

    spec = spec_for(name)
    if lang not in LANGUAGES:
        raise InvalidInput(f"--lang: messages are written in {', '.join(LANGUAGES)}, not {lang!r}")
    if part not in ("text", "html", "all"):
        raise InvalidInput(f"--part: expected text, html or all, not {part!r}")
    context: dict[str, Any] = dict(spec.sample)
    from_case: set[str] = set()
    if case is not None:
        with common.session() as session:
            found = case_context(session, case)
        from_case = {k for k in found if k in spec.required}
        context.update({k: v for k, v in found.items() if k in spec.required})
    given = parse_sets(values)
    context.update(given)
    sampled = [k for k in spec.required if k not in from_case and k not in given]
    if case is not None:
        err.print(f"from case {case.upper()}: {', '.join(sorted(from_case)) or 'nothing'}")
    if sampled:
        err.print(f"sample values (not from a case): {', '.join(sampled)}")
    config = default_config()
    message = config.render(name, language=lang, context=context)
    if part in ("text", "all"):
        out.print(f"Subject: {message.subject}\n")
        out.print(message.text, markup=False)
    if part in ("html", "all"):
        out.print(message.html, markup=False)
    if spec.audience == "customer":
        violations = check_wording(
            config.rules,
            template=name,
            language=lang,
            text=f"{message.subject}\n{message.text}",
            context=context,
        )
        for violation in violations:
            err.print(f"wording check failed: {violation} ({violation.explanation})", markup=False)
        if violations:
            raise typer.Exit(1)
        err.print("wording check: passed")


# --- outbox -----------------------------------------------------------------------------------------------


@outbox_app.command("list")
def outbox_list(
    status: Annotated[
        str | None,
        typer.Option(help="Only this status: pending, sending, sent, dead, blocked, held, withdrawn, folded."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
) -> None:
    """Outbox messages with their state (recipients as references: no personal data)."""
    from tasks.outbox import list_outbox

    with common.session() as session:
        rows = list_outbox(session, status=status, limit=limit)
    table = Table("id", "status", "template", "recipient", "channel", "lang", "tries", "next attempt", "error")
    for row in rows:
        table.add_row(
            str(row.id),
            str(row.status) + (f" into #{row.folded_into}" if row.folded_into is not None else ""),
            row.template,
            row.recipient,
            row.channel,
            row.language,
            str(row.attempts),
            row.next_attempt_at.isoformat(timespec="seconds") if row.next_attempt_at else "",
            (row.last_error or "")[:80],
        )
    out.print(table)
    if not rows:
        print("no messages", file=sys.stderr)


@outbox_app.command("retry")
def outbox_retry(outbox_id: Annotated[int, typer.Argument(help="Outbox message id.")]) -> None:
    """Put a dead or blocked message back in the queue, due now."""
    from tasks.outbox import retry

    with common.session() as session:
        row = retry(session, outbox_id=outbox_id, now=common.now(), actor=state.actor)
    out.print(f"outbox #{row.id} queued again ({row.template} to {row.recipient})")


@outbox_app.command("release")
def outbox_release(
    outbox_id: Annotated[int | None, typer.Argument(help="Only this held message (needed with --set).")] = None,
    case: Annotated[str | None, typer.Option("--case", help="Only the held messages of this case.")] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="A new value for the message, KEY=VALUE (the clause a rejection lacked)."),
    ] = None,
) -> None:
    """Check held messages again and send those that now pass: after the desk's phone is set
    (CLAIMFLOW_DESK_PHONE), a template or the wording rules are fixed, or with a value the handler writes
    (--set); the handler's fix_wording task for it is then done. The desk runner does this every few minutes."""
    from tasks.cases import get_case
    from tasks.outbox import default_config, release_held

    with common.session() as session:
        case_id = get_case(session, case).id if case else None
        done = release_held(session, now=common.now(), config=default_config(), case_id=case_id, outbox_id=outbox_id,
                            edits=parse_sets(sets) or None, by=state.actor)  # fmt: skip
        lines = [f"outbox #{row.id} queued ({row.template} to {row.recipient})" for row in done.queued]
        lines += [f"outbox #{row.id} still held ({row.template}): {why}" for row, why in done.still_held]
        lines += [f"outbox #{row.id} withdrawn ({row.template}): {row.last_error}" for row in done.withdrawn]
    for line in lines:
        out.print(line)
    out.print(f"{len(done.queued)} queued, {len(done.still_held)} still held"
              + (f", {len(done.withdrawn)} withdrawn" if done.withdrawn else ""))  # fmt: skip


@outbox_app.command("deliver")
def outbox_deliver(
    max_batches: Annotated[int, typer.Option(help="Stop after this many batches.")] = 100,
    senders: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Threads sending side by side (default CLAIMFLOW_OUTBOX_SENDERS)."),
    ] = None,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop",
            help="Keep delivering every CLAIMFLOW_OUTBOX_POLL_SECONDS until Ctrl-C or SIGTERM: a delivery "
            "process of its own beside the desk runner's loop (a surge: more senders than one process's "
            "threads give).",
        ),
    ] = False,
) -> None:
    """Send everything due now (what the desk runner's delivery loop does each pass); with --loop, keep at it.
    Ctrl-C or SIGTERM (a service manager stopping it) stops after the messages in hand are sent and recorded."""
    import signal

    # a service is stopped with SIGTERM, which ended the process with messages in hand (sent again after their
    # lease): it stops as Ctrl-C does (the handler before is put back when the command ends: run in-process too)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _deliver(max_batches, senders, loop)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _deliver(max_batches: int, senders: int | None, loop: bool) -> None:
    import time

    from claimflow.migrate import require_current_schema
    from tasks.outbox import default_config, drain

    try:  # from the start: a stop while the schema is checked ends as quietly as one between passes
        require_current_schema(common.engine())
        config = default_config()
        every = get_settings().outbox_poll_seconds
        if loop:
            from claimflow.priority import lower_priority

            nice = lower_priority(get_settings().delivery_nice)
            out.print(f"delivering every {every:g} s with {senders or config.senders} sender(s)"
                      + (f", CPU priority nice {nice}" if nice else "") + "; Ctrl-C or SIGTERM stops")  # fmt: skip
        while True:
            report = drain(common.engine(), now=common.now, config=config, max_batches=max_batches,
                           senders=senders or config.senders)  # fmt: skip
            if not loop or report.claimed:
                out.print(
                    f"claimed {report.claimed}: sent {report.sent}, retry later {report.retried}, "
                    f"dead {report.dead}, blocked {report.blocked}"
                    + (f", {report.folded} left inside a digest" if report.folded else "")
                )
            if not loop:
                return
            if not report.claimed:
                time.sleep(every)
    except KeyboardInterrupt:
        out.print("stopped")

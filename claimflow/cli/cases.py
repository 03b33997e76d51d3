"""``claimflow case ...`` (file, inspect and move cases), ``claimflow audit ...`` (check the hash-chained audit
log) and ``claimflow attachments ...`` (the documents stored with the cases)."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

import claimflow.cli.common as common
from claimflow.cli.common import CodeOption, HolderOption, SupervisorOption, state
from claimflow.console import err, office, office_zone, out, parse_sets
from claimflow.settings import get_settings
from models.caseview import StepLine, due_words
from models.enums import CaseKind, Channel, ContactChannel, Priority
from models.errors import ClaimflowError, InvalidInput, describe_validation_error
from models.lifecycle import LIFECYCLES, lifecycle_for
from models.masking import mask_birth_date, mask_email, mask_id_number, mask_name, mask_phone
from models.tables import CaseCreate, Customer, CustomerCreate, Staff

case_app = typer.Typer(help="File, inspect and move cases.", no_args_is_help=True)
audit_app = typer.Typer(help="Check the hash-chained audit log.", no_args_is_help=True)
attachments_app = typer.Typer(help="Documents stored with the cases.", no_args_is_help=True)

# --- case -------------------------------------------------------------------------------------------------


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option}: {value!r} is not a date (expected YYYY-MM-DD)") from None


def _parse_amount(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value.replace(",", ""))
    except InvalidOperation:
        raise InvalidInput(f"--amount: {value!r} is not a number") from None
    if not amount.is_finite():
        raise InvalidInput(f"--amount: {value!r} is not a number")
    return amount


@case_app.command("new")
def case_new(
    kind: Annotated[CaseKind, typer.Option(help="claim, complaint or inquiry.")],
    channel: Annotated[Channel, typer.Option(help="How the case reached the desk.")],
    name: Annotated[str, typer.Option(help="Customer's name.")],
    phone: Annotated[str | None, typer.Option(help="Customer's phone number.")] = None,
    email: Annotated[str | None, typer.Option(help="Customer's e-mail address.")] = None,
    id_number: Annotated[str | None, typer.Option(help="Customer's ID number.")] = None,
    birth_date: Annotated[str | None, typer.Option(help="Customer's birth date, YYYY-MM-DD.")] = None,
    language: Annotated[str, typer.Option(help="Customer's language (zh-CN, en).")] = "zh-CN",
    contact: Annotated[ContactChannel, typer.Option(help="How the customer prefers to be told.")] = (
        ContactChannel.email
    ),
    elderly: Annotated[bool, typer.Option("--elderly", help="Customer is elderly (simplified handling).")] = False,
    vulnerable: Annotated[bool, typer.Option("--vulnerable", help="Customer is otherwise vulnerable.")] = False,
    policy: Annotated[str | None, typer.Option(help="Policy number.")] = None,
    product_line: Annotated[str | None, typer.Option(help="Product line (motor, health, property ...).")] = None,
    jurisdiction: Annotated[str, typer.Option(help="Jurisdiction whose rules apply.")] = "CN",
    amount: Annotated[str | None, typer.Option(help="Amount claimed.")] = None,
    currency: Annotated[str, typer.Option(help="Currency of the amount.")] = "CNY",
    priority: Annotated[Priority, typer.Option(help="Priority.")] = Priority.normal,
    description: Annotated[str | None, typer.Option(help="What happened, in the customer's words.")] = None,
    incident_date: Annotated[str | None, typer.Option(help="When it happened, YYYY-MM-DD.")] = None,
    related: Annotated[str | None, typer.Option(help="Related case number (a complaint about a claim).")] = None,
) -> None:
    """File a new case through intake (routing, first deadline, acknowledgement) and print its number.

    The case's flow run is started by the reconciler of 'claimflow up' within a minute.
    """
    from tasks.workflow import Desk, intake

    try:
        data = CaseCreate(
            kind=kind,
            channel=channel,
            product_line=product_line,
            jurisdiction=jurisdiction,
            policy_number=policy,
            amount_claimed=_parse_amount(amount),
            currency=currency,
            priority=priority,
            description=description,
            incident_date=_parse_date(incident_date, "--incident-date"),
            related_case_number=related,
            customer=CustomerCreate(
                name=name,
                phone=phone,
                email=email,
                id_number=id_number,
                birth_date=_parse_date(birth_date, "--birth-date"),
                language=language,
                preferred_channel=contact,
                elderly=elderly,
                vulnerable=vulnerable,
            ),
        )
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None
    with common.session() as session:
        settings = get_settings()
        case = intake(session, Desk.of(settings), data=data, actor=state.actor, now=common.now())
    out.print(case.number)
    _start_run(case.id or 0, settings)


def _start_run(case_id: int, settings: Any) -> None:
    """Start a new case's run now on the desk's Prefect server, when one answers (a second's check); else, or if
    the start fails, say on stderr that the reconciler of 'claimflow up' starts it (the case is filed either way).
    Prefect is imported only when a server answers: the command stays quick without one."""
    import asyncio
    import os

    from claimflow.orchestrator import auth_string, prefect_environment, server_ready

    prefect_environment(settings)
    url = os.environ["PREFECT_API_URL"]
    later = f"the reconciler of 'claimflow up' starts its run within {settings.reconcile_seconds // 60} minutes"
    if not server_ready(url, os.environ.get("PREFECT_API_AUTH_STRING") or auth_string(settings), timeout=1.0):
        err.print(f"no Prefect server answers at {url}: {later}")
        return
    from tasks.runs import launch_case

    try:
        asyncio.run(launch_case(common.engine(), case_id=case_id))
    except Exception as exc:  # the case is filed; only its run waits
        err.print(f"its run could not be started now ({type(exc).__name__}): {later}")


@case_app.command("triage")
def case_triage(
    number: Annotated[str, typer.Argument(help="A claim in triage (the desk-unassigned worklist lists them).")],
    by: SupervisorOption,
    code: CodeOption,
    product_line: Annotated[str, typer.Option("--product-line", help="motor, health, property, travel or life.")],
) -> None:
    """Sort a claim whose product line was not known (filed by mail without one): set it, and the claim is routed
    to a handler with that skill, who is told of its open steps."""
    from tasks.reassign import triage_case
    from tasks.workflow import Desk

    with common.session() as session:
        handler = triage_case(session, Desk.of(get_settings()), number=number, product_line=product_line, by=by,
                              code=code, now=common.now())  # fmt: skip
        held = handler.username if handler else None
    if held:
        out.print(f"{number.strip().upper()}: {product_line.strip().lower()}, now {held}'s")
    else:
        out.print(f"{number.strip().upper()}: {product_line.strip().lower()}; nobody with room could take it yet: "
                  "the supervisors are told and the desk tries again")  # fmt: skip


@case_app.command("notice")
def case_notice(
    number: Annotated[str, typer.Argument(help="A case that owes a progress notice (its page shows the step).")],
    by: HolderOption,
    code: CodeOption,
    reasons: Annotated[str, typer.Option(help="Why the decision takes longer (the customer reads it).")],
    expected: Annotated[str, typer.Option(help="The date a decision is expected, YYYY-MM-DD.")],
) -> None:
    """Send the notice a regulator requires while a case is undecided (US-CA claims: more time needed, every 30
    days; GB complaints: the holding response by eight weeks; AU complaints: the delay notification by 30 days),
    in the customer's language, naming the outside body where required."""
    from tasks.notices import send_progress_notice
    from tasks.workflow import Desk

    when = _parse_date(expected.strip(), "--expected")
    assert when is not None
    with common.session() as session:
        following = send_progress_notice(session, Desk.of(get_settings()), number=number, by=by, code=code,
                                         reasons=reasons, expected=when, now=common.now())  # fmt: skip
        nxt = office(following.due_at) if following is not None and following.due_at else None
    out.print(f"{number.strip().upper()}: progress notice queued" + (f"; the next one is due {nxt}" if nxt else ""))


@case_app.command("advance")
def case_advance(
    number: Annotated[str, typer.Argument(help="A claim that owes an advance payment (PRC Insurance Law art. 25).")],
    by: HolderOption,
    code: CodeOption,
    amount: Annotated[str | None, typer.Option(help="The amount already certain, paid in advance.")] = None,
    reference: Annotated[str, typer.Option(help="The payment's reference.")] = "",
    account_hint: Annotated[str, typer.Option(help="Last digits of the account paid to.")] = "",
    none_certain: Annotated[str, typer.Option(help="Instead of an amount: why nothing is certain yet.")] = "",
) -> None:
    """Record the advance payment a PRC claim owes by day 60 while its amount is not fixed: the amount already
    certain (the customer is told; the final payment is then the difference), or why nothing is certain yet."""
    from tasks.notices import record_advance_payment
    from tasks.workflow import Desk

    paid = _parse_amount(amount)
    with common.session() as session:
        record_advance_payment(session, Desk.of(get_settings()), number=number, by=by, code=code, now=common.now(),
                               amount=paid, reference=reference, account_hint=account_hint,
                               none_certain=none_certain)  # fmt: skip
    what = f"{paid} paid in advance" if paid is not None else "nothing certain yet (recorded)"
    out.print(f"{number.strip().upper()}: {what}")


@case_app.command("extend")
def case_extend(
    number: Annotated[str, typer.Argument(help="A case whose step will not be done by its deadline.")],
    by: HolderOption,
    code: CodeOption,
    reason: Annotated[str, typer.Option(help="Why more time is needed (the customer reads it).")],
    step: Annotated[str | None, typer.Option(help="The step (default: the open one due first).")] = None,
    extension: Annotated[str | None, typer.Option(help="The pack's extension rule (default: its first).")] = None,
) -> None:
    """Extend a step's deadline before it passes, under the extension rules of the packs in force: the customer is
    told the new date and the reason at once. A rule with an approver (the house's supervisor-extension) is
    applied by a supervisor or manager who does not hold the case; one without (a regulator's complex-case
    extension) by the handler."""
    from tasks.extensions import extend_step
    from tasks.workflow import Desk

    with common.session() as session:
        done = extend_step(session, Desk.of(get_settings()), number=number, by=by, code=code, reason=reason,
                           now=common.now(), step_name=step, extension=extension)  # fmt: skip
    out.print(f"{done.number}: {done.step} extended ({done.extension}) from "
              f"{office(done.previous_due) if done.previous_due else '-'} to {office(done.due)}; the customer is "
              "told")  # fmt: skip


@case_app.command("link")
def case_link(
    number: Annotated[str, typer.Argument(help="The case whose status page to link.")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Withdraw every link sent until now instead.")] = False,
    by: Annotated[str | None, typer.Option("--by", help="You (recorded on the case; needed with --revoke).")] = None,
) -> None:
    """Print a fresh link to the customer's case status page (to give on the phone or by SMS), or with --revoke
    withdraw the links sent so far (one forwarded to the wrong person): the next message carries a new one."""
    from tasks.cases import get_case
    from tasks.status import revoke_links, status_url

    now = common.now()
    with common.session() as session:
        if revoke:
            if not by or not by.strip():
                raise InvalidInput("--revoke needs --by (who withdrew the links is recorded)")
            case = revoke_links(session, number=number, by=by.strip(), now=now)
            out.print(f"{case.number}: the status links sent until {office(now)} no longer open")
            return
        case = get_case(session, number)
        assert case.id is not None
        out.print(status_url(get_settings(), case_id=case.id, now=now))


@case_app.command("show")
def case_show(
    number: Annotated[str, typer.Argument(help="Case number, e.g. CLM-2026-000123.")],
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Show personal data unmasked (recorded in the audit log).")
    ] = False,
) -> None:
    """A case: its state, customer (masked), steps and events."""
    from sqlmodel import col, select

    from models.tables import Step
    from tasks.cases import append_event, events_of, get_case

    with common.session() as session:
        case = get_case(session, number, for_update=reveal)
        customer = session.get(Customer, case.customer_id)
        assert customer is not None
        if reveal:
            append_event(session, case=case, actor=state.actor, type="personal_data_viewed", data={}, now=common.now())
        steps = list(session.exec(select(Step).where(Step.case_id == case.id).order_by(col(Step.id))))
        events = events_of(session, case)
        handler = session.get(Staff, case.handler_id) if case.handler_id else None
    lifecycle = lifecycle_for(case.kind)
    out.print(
        f"{case.number}  {case.kind}  status: {case.status}" + (f"  outcome: {case.outcome}" if case.outcome else "")
    )
    out.print(
        f"channel: {case.channel}  priority: {case.priority}  product line: {case.product_line or '-'}  "
        f"jurisdiction: {case.jurisdiction}  policy: {case.policy_number or '-'}"
    )
    if case.amount_claimed is not None:
        out.print(f"amount claimed: {case.amount_claimed} {case.currency}")
    out.print(
        f"handler: {handler.username if handler else '-'}  opened: {office(case.opened_at)}"
        + (f"  closed: {office(case.closed_at)}" if case.closed_at else "")
        + f"  (times in {office_zone()})"
    )
    out.print(f"customer: {_customer_line(customer, reveal)}")
    out.print(f"next moves: {', '.join(lifecycle.allowed(case.status)) or 'none'}")
    if steps:
        table = Table("step", "status", "started", "due", "", "completed", "outcome", title="steps")
        now = common.now()
        for s in steps:
            line = StepLine(s.name, str(s.status), None, s.due_at, s.policy_rule, s.escalation_level)
            table.add_row(s.name, s.status, office(s.started_at), office(s.due_at),
                          due_words(line, now=now, language="en") if s.status == "open" and s.due_at else "",
                          office(s.completed_at), s.outcome or "")  # fmt: skip
        out.print(table)
    table = Table("#", f"time ({office_zone()})", "actor", "event", "data", title="events")
    for e in events:
        table.add_row(str(e.sequence), office(e.at), e.actor, e.type, _short(e.data))
    out.print(table)


def _short(data: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in data.items() if v not in (None, "", [], {}))


def _customer_line(customer: Customer, reveal: bool) -> str:
    if reveal:
        parts = [
            customer.name,
            customer.phone,
            customer.email,
            customer.id_number,
            customer.birth_date.isoformat() if customer.birth_date else None,
        ]
    else:
        parts = [
            mask_name(customer.name),
            mask_phone(customer.phone),
            mask_email(customer.email),
            mask_id_number(customer.id_number),
            mask_birth_date(customer.birth_date),
        ]
    flags = [flag for flag, on in (("elderly", customer.elderly), ("vulnerable", customer.vulnerable)) if on]
    text = "  ".join(p for p in parts if p)
    return f"{text}  language: {customer.language}  contact: {customer.preferred_channel}" + (
        f"  [{', '.join(flags)}]" if flags else ""
    )


@case_app.command("list")
def case_list(
    status: Annotated[list[str] | None, typer.Option(help="Only cases in this state (repeatable).")] = None,
    kind: Annotated[CaseKind | None, typer.Option(help="Only this kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many, newest first.")] = 50,
) -> None:
    """Cases, newest first (no personal data)."""
    from tasks.cases import list_cases

    wanted = list(status or [])
    known = set().union(*(lc.states for lc in LIFECYCLES.values()))
    for s in wanted:
        if s not in known:
            raise InvalidInput(f"--status: unknown state '{s}'; known states: {', '.join(sorted(known))}")
    with common.session() as session:
        cases = list_cases(session, status=wanted, kind=kind, limit=limit)
    table = Table("number", "kind", "channel", "status", "outcome", "priority", "product line",
                  f"opened ({office_zone()})")  # fmt: skip
    for c in cases:
        table.add_row(c.number, c.kind, c.channel, c.status, c.outcome or "", c.priority, c.product_line or "",
                      office(c.opened_at))  # fmt: skip
    out.print(table)
    out.print(f"{len(cases)} case(s)")


@case_app.command("visit")
def case_visit(
    number: Annotated[str, typer.Argument(help="Case number.")],
    by: Annotated[str, typer.Option("--by", help="Your username (who visited).")],
    outcome: Annotated[str, typer.Option("--outcome", help="visited, declined or unreachable.")],
    note: Annotated[str, typer.Option("--note", help="What was done or agreed.")],
) -> None:
    """Record the home visit offered to an elderly or vulnerable customer, and close its step."""
    from tasks.workflow import record_home_visit

    with common.session() as session:
        record_home_visit(session, number=number.strip().upper(), username=by, outcome=outcome, note=note,
                          now=common.now())  # fmt: skip
    out.print(f"{number.strip().upper()}: home visit recorded ({outcome}) by {by}")


@case_app.command("move")
def case_move(
    number: Annotated[str, typer.Argument(help="Case number.")],
    action: Annotated[str, typer.Argument(help="Lifecycle move, e.g. start_review, reject, close.")],
    values: Annotated[
        list[str] | None,
        typer.Option("--set", help="Data the move records, KEY=VALUE (repeatable), e.g. --set reasons='...'."),
    ] = None,
) -> None:
    """Apply a lifecycle move to a case and record its event."""
    from tasks.cases import apply_transition
    from tasks.workflow import settle_notice

    data = parse_sets(values)
    with common.session() as session:
        case, event = apply_transition(
            session, number=number, action=action, actor=state.actor, now=common.now(), data=data
        )
        settle_notice(session, case=case, now=common.now())
    out.print(f"{case.number}: {event.data['from']} -> {case.status} (event #{event.sequence})")


# --- audit ------------------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    number: Annotated[str | None, typer.Argument(help="Only this case (default: every case).")] = None,
) -> None:
    """Recompute every hash of the audit log, naming the first broken link of each case, and check it against its
    signed checkpoints (a chain cut short, removed or rewritten; a checkpoint dropped; a database restored behind
    its anchor). When all holds, the heads are checkpointed again."""
    from claimflow.secrets import audit_key
    from tasks.audit import anchor_path, checkpoint, verify_cases, verify_checkpoints, write_anchor
    from tasks.cases import get_case

    settings = get_settings()
    with common.session() as session:
        cases = [get_case(session, number)] if number else None
        report = verify_cases(session, cases)
        problems = verify_checkpoints(session, key=audit_key(settings), anchor=anchor_path(settings.data_dir))
    for found in report.breaks:
        print(f"broken: {found}", file=sys.stderr)
    for problem in problems:
        print(f"checkpoint: {problem}", file=sys.stderr)
    if report.breaks or problems:
        first = str(report.breaks[0]) if report.breaks else problems[0]
        raise ClaimflowError(f"audit log broken: {len(report.breaks)} of {report.cases_checked} case(s) with a broken "
                             f"chain, {len(problems)} checkpoint finding(s); first: {first}")  # fmt: skip
    with common.session() as session:
        signed = checkpoint(session, key=audit_key(settings), now=common.now(), anchor=anchor_path(settings.data_dir))
    if signed is not None:
        write_anchor(anchor_path(settings.data_dir), signed)
    out.print(f"audit log intact: {report.cases_checked} case(s), {report.events_checked} event(s)"
              + (f"; checkpoint {signed[0]} signed" if signed else ""))  # fmt: skip


@attachments_app.command("orphans")
def attachments_orphans(
    delete: Annotated[bool, typer.Option("--delete", help="Delete the orphans older than --older-than.")] = False,
    older_than: Annotated[
        int, typer.Option(min=1, help="Minutes: a younger file may belong to a filing not yet committed.")
    ] = 60,
) -> None:
    """Attachment files no case points to (a crash between writing a document and committing its case)."""
    from tasks.intake import find_orphans, sweep_orphans

    settings = get_settings()
    with common.session() as session:
        orphans = find_orphans(
            session, data_dir=settings.data_dir, now=datetime.now(UTC), grace=timedelta(minutes=older_than)
        )
    if not orphans:
        out.print(f"no orphan attachment files under {settings.data_dir / 'attachments'}")
        return
    table = Table("file", "bytes", "modified (UTC)", f"older than {older_than} min")
    for orphan in orphans:
        table.add_row(str(orphan.path.relative_to(settings.data_dir)), str(orphan.size),
                      orphan.modified.strftime("%Y-%m-%d %H:%M"), "yes" if orphan.sweepable else "no")  # fmt: skip
    out.print(table)
    young = sum(1 for orphan in orphans if not orphan.sweepable)
    if not delete:
        out.print(
            f"{len(orphans)} orphan file(s); --delete removes the {len(orphans) - young} older than {older_than} min"
        )
        return
    with common.session() as session:
        deleted = sweep_orphans(session, orphans, data_dir=settings.data_dir)
    taken = len(orphans) - young - len(deleted)  # a filing committed or reused them since they were listed
    taken_note = f", {taken} taken up by a filing meanwhile" if taken else ""
    out.print(f"deleted {len(deleted)} orphan file(s); kept {young} younger than {older_than} min{taken_note}")

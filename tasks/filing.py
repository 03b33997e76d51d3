"""Many new cases filed at once: what ``tasks.workflow.intake`` does for each, in a handful of statements.

A filing through ``intake`` is about 35 statements, one after the other, each waiting for the database and each
paying SQLAlchemy's per-statement cost; a surge of webhook posts spent 30 ms of the API's Python per case there
(``bench/intake.py``). ``intake_many`` makes the same rows for a batch of new cases:

- the customers, the cases and the steps as one multi-row insert each (``claimflow.db.insert_rows``), their ids
  taken first (``claimflow.db.new_ids_of``; the steps' waiting keys name them, in the same insert); the rows are made
  from the values already validated, not through the ORM's flush (a quarter of the batch's CPU when they were);
- the case numbers of all its kinds with one counter statement (``tasks.cases.take_numbers_of``);
- routing decided in memory for the whole batch (``models.routing.choose_handler`` against the loads read once,
  each assignment counted before the next);
- the deadlines from the same rules (``tasks.workflow.schedule_for``: a new case has no clock pauses), computed once
  per kind, step, jurisdiction and channel (the cases of a batch share their filing time);
- every case's events in one insert, chained in memory from the genesis (``tasks.cases.append_events``);
- the handlers' and customers' messages rendered, checked and queued in one insert (``tasks.outbox.look_up``,
  ``prepare_messages``, ``queue_messages``); their keys name the numbers just taken, so they are not looked up;
- every write sent without waiting for the one before (``claimflow.db.deferred_writes``, psycopg's pipeline), the
  rows before the messages are rendered and checked, so PostgreSQL writes them meanwhile: a row the database refuses
  fails the batch at the block's end. A held message is recorded after the block (recording reads the case's chain).

It files what ``intake`` files, row for row, for the cases it takes (``takes``): no related case (a complaint about
a case excludes its handler, and names it) and no customer with a care plan (a home visit is offered). The others
are for the caller to file with ``intake``. ``tests/tasks/test_filing.py`` files the same cases both ways and
compares every row; a change to what ``intake`` writes that is not made here too fails it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session

from claimflow.db import deferred_writes, insert_rows, new_ids, new_ids_of, row_of, transient
from models.audit import GENESIS
from models.enums import CaseKind, StepStatus
from models.errors import InvalidInput
from models.lifecycle import first_moves, lifecycle_for
from models.notices import ADVANCE_STEP
from models.notices import STEP as NOTICE_STEP
from models.routing import Candidate, NoEligibleHandler, RoutingRequest, choose_handler, triage_reason
from models.tables import Case, CaseCreate, Customer, Staff, Step
from tasks.cases import NewEvent, append_events, mark_new, new_run_key, take_numbers_of
from tasks.outbox import Message, default_config, look_up, prepare_messages, queue_messages, write_messages
from tasks.workflow import (
    FIRST_STEP,
    Desk,
    _input_for,
    advance_owed,
    candidates,
    first_decision_key,
    notice_owed,
    schedule_columns,
    schedule_for,
    staff_links_for,
    unassigned_context,
)


def takes(data: CaseCreate) -> bool:
    """Whether ``intake_many`` files this case; else ``intake`` does (a related case, a care plan)."""
    return not data.related_case_number and not data.customer.elderly and not data.customer.vulnerable


@dataclass(frozen=True)
class Also:
    """What a caller files with a case beyond ``intake``'s rows, as it would around ``intake``: more for the
    acknowledgement to say (``intake``'s ``acknowledgement``), and events appended after all of intake's, a held
    message's too (a mail's ``mail_received``: actor, type, data)."""

    acknowledgement: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    events: Sequence[tuple[str, str, dict[str, Any]]] = ()


@dataclass
class _Filing:
    """One case of the batch as it is built."""

    data: CaseCreate
    actor: str
    customer: Customer
    case: Case | None = None
    handler: Staff | None = None
    events: list[tuple[str, str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    """(actor, type, data), in the order ``intake`` appends them."""
    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """The step rows, as ``tasks.workflow.open_step`` would write them."""
    deferred: tuple[str, bool, str] | None = None
    """Why nobody was assigned, whether it is triage, and the reason's code (``NoEligibleHandler.code``)."""
    also: Also = Also()


def intake_many(
    session: Session,
    desk: Desk,
    *,
    cases: Sequence[tuple[CaseCreate, str]],
    now: datetime,
    also: Sequence[Also] | None = None,
) -> list[Case]:
    """File each (case, actor) as ``tasks.workflow.intake`` would, one after the other in this order; the caller
    commits. Every case must be one ``takes`` accepts. ``also``: what each case is filed with beyond that, in the
    same order (``Also``).

    Raises:
        InvalidInput: a case ``takes`` refuses, or ``also`` does not match ``cases`` (nothing is written then).
    """
    if not all(takes(data) for data, _ in cases):
        raise InvalidInput("intake_many files no case with a related case or a care plan; file those with intake")
    extras = list(also) if also is not None else [Also()] * len(cases)
    if len(extras) != len(cases):
        raise InvalidInput(f"intake_many: {len(extras)} extras for {len(cases)} cases")
    if not cases:
        return []
    # the values were validated as a CaseCreate (the same fields): the rows are made without validating them again,
    # nor set up field by field (``claimflow.db.transient``)
    batch = [_Filing(data, actor, transient(Customer, {**data.customer.model_dump(), "created_at": now}), also=extra)
             for (data, actor), extra in zip(cases, extras, strict=True)]  # fmt: skip
    numbers = _numbers(session, batch, year=now.year)
    pool = {c.staff_id: c for c in candidates(session)}  # one read of the loads; the staff stay in the session
    tables: dict[str, Table] = {"customer": Customer.__table__, "case": Case.__table__, "step": Step.__table__}  # type: ignore[attr-defined]
    ids = new_ids_of(session, {tables["customer"]: len(batch), tables["case"]: len(batch)})
    clocks: dict[tuple[str, ...], dict[str, Any]] = {}
    for filing, number, customer_id, case_id in zip(batch, numbers, ids[tables["customer"]], ids[tables["case"]],
                                                    strict=True):  # fmt: skip
        filing.customer.id = customer_id
        _build(session, desk, filing, number=number, case_id=case_id, pool=pool, clocks=clocks, now=now)
    new = [(filing, filing.case) for filing in batch if filing.case is not None]
    steps = [(case, step) for filing, case in new for step in filing.steps]
    for (case, step), step_id in zip(steps, new_ids(session, tables["step"], len(steps)), strict=True):
        kind = _input_for(case, step["name"])
        step.update(id=step_id, case_id=case.id, waiting_key=first_decision_key(kind, step_id) if kind else None)
    messages = [message for filing in batch for message in _messages(filing, now=now)]
    customers = {filing.customer.id: filing.customer for filing, _ in new if filing.customer.id is not None}
    looked_up = look_up(session, messages, customers=customers, new_keys=True)  # their keys name the new numbers
    later = [NewEvent(case, actor, type_, data) for filing, case in new for actor, type_, data in filing.also.events]
    with deferred_writes(session):  # the rows go to the database while the events are chained, the messages checked
        insert_rows(session, tables["customer"], [row_of(filing.customer) for filing, _ in new])
        insert_rows(session, tables["case"], [row_of(case) for _, case in new])
        insert_rows(session, tables["step"], [step for _, step in steps])
        mark_new(session, [case.id for _, case in new if case.id is not None])
        events = [NewEvent(case, actor, type_, data) for filing, case in new for actor, type_, data in filing.events]
        append_events(session, events, now=now, tips={case.id: GENESIS for _, case in new if case.id is not None})
        prepared = prepare_messages(looked_up, now=now, config=default_config())  # rendering: no database
        if not prepared.holds:
            queue_messages(session, prepared, now=now)
    if prepared.holds:  # recorded on the cases (that reads and appends): once the rows above are written
        write_messages(session, prepared, now=now)
    if later:  # after the messages, as a caller appends them after ``intake`` (which may record one held)
        append_events(session, later, now=now)  # the chains' tips are known: filed in this transaction
    return [case for _, case in new]


def _numbers(session: Session, batch: Sequence[_Filing], *, year: int) -> list[str]:
    """Each filing's number, in the batch's order, taken for all its kinds in one statement."""
    wanted: dict[CaseKind, int] = {}
    for filing in batch:
        kind = CaseKind(filing.data.kind)
        wanted[kind] = wanted.get(kind, 0) + 1
    taken = {kind: iter(numbers) for kind, numbers in take_numbers_of(session, wanted, year=year).items()}
    return [next(taken[CaseKind(f.data.kind)]) for f in batch]


def _build(
    session: Session,
    desk: Desk,
    filing: _Filing,
    *,
    number: str,
    case_id: int,
    pool: dict[int, Candidate],
    clocks: dict[tuple[str, ...], dict[str, Any]],
    now: datetime,
) -> None:
    """The case, its steps and its events, in memory; ``pool``'s loads count the steps given to its handler.

    ``clocks``: the steps' clock columns computed so far in the batch, by kind, step, jurisdiction and channel: the
    cases of a batch are filed at the same time and have no pauses or extensions yet, so the rules give each such
    step the same deadline and ladder."""
    data, customer_id = filing.data, filing.customer.id
    assert customer_id is not None
    kind = CaseKind(data.kind)
    lifecycle = lifecycle_for(kind)
    case = transient(Case, {
        **data.model_dump(exclude={"customer", "related_case_number"}),
        "id": case_id, "number": number, "status": lifecycle.initial, "customer_id": customer_id,
        "related_case_id": None, "opened_at": now, "updated_at": now, "run_key": new_run_key()})  # fmt: skip
    filing.case = case
    filing.events.append((filing.actor, "filed", {
        "kind": case.kind, "channel": case.channel, "status": case.status, "priority": case.priority,
        "product_line": case.product_line, "related_case": None}))  # fmt: skip
    _route(session, filing, pool)
    for action in first_moves(kind, case.status):
        case.status, moved = lifecycle.apply(case.status, action, actor="system")
        if "outcome" in moved.data:
            case.outcome = moved.data["outcome"]
        filing.events.append(("system", moved.type, dict(moved.data)))
    names = [FIRST_STEP[kind]]
    if notice_owed(case):
        names.append(NOTICE_STEP)
    if advance_owed(desk, case):
        names.append(ADVANCE_STEP)
    handler = filing.handler
    for name in names:
        step = _new_step(name, case=case, now=now)
        clock = (case.kind, name, case.jurisdiction, case.channel)
        if clock not in clocks:
            schedule = schedule_for(desk, case=case, name=name, started_at=now, extensions=(), pauses=())
            clocks[clock] = schedule_columns(schedule, now=now)
        step.update(clocks[clock])
        filing.steps.append(step)
        filing.events.append(("system", "step_opened", {
            "step": name, "attempt": 1, "assignee": handler.username if handler else None, "due": step["due_at"],
            "rule": step["policy_rule"]}))  # fmt: skip
    if handler is not None and handler.id in pool:
        held = pool[handler.id]
        pool[handler.id] = dataclasses.replace(held, open_load=held.open_load + len(names))


def _new_step(name: str, *, case: Case, now: datetime) -> dict[str, Any]:
    """A step row as ``tasks.workflow.open_step`` writes it for a case's first attempt, before its clock."""
    return {"name": name, "attempt": 1, "status": StepStatus.open.value, "assignee_id": case.handler_id,
            "started_at": now, "due_at": None, "next_check_at": None, "paused_since": None, "paused_seconds": 0,
            "pauses": [], "completed_at": None, "outcome": None, "policy_rule": None, "schedule": {},
            "reminders_done": 0, "escalation_level": 0, "ladder_round": 0, "extensions": []}  # fmt: skip


def _route(session: Session, filing: _Filing, pool: dict[int, Candidate]) -> None:
    """``tasks.workflow.route`` for a new case: a handler from the pool, else deferred (triage, nobody free)."""
    case = filing.case
    assert case is not None
    reason = triage_reason(case.kind, case.product_line)
    if reason is not None:
        filing.deferred = (reason, True, "")
    else:
        request = RoutingRequest(kind=CaseKind(case.kind), product_line=case.product_line,
                                 language=filing.customer.language)  # fmt: skip
        try:
            if not pool:
                raise NoEligibleHandler("no staff imported", code="no_staff")
            assignment = choose_handler(request, pool.values())
        except NoEligibleHandler as exc:
            filing.deferred = (str(exc), False, exc.code)
        else:
            handler = session.get(Staff, assignment.staff_id)  # pinned by ``candidates``: no query
            assert handler is not None
            filing.handler = handler
            case.handler_id, case.department_id = handler.id, handler.department_id
            filing.events.append(("system", "assigned", {"handler": handler.username,
                                                         "department": assignment.department,
                                                         "reason": assignment.reason}))  # fmt: skip
    if filing.deferred is not None:
        reason, triage, _ = filing.deferred
        filing.events.append(("system", "routing_deferred", {"reason": reason, "triage": triage}))


def _messages(filing: _Filing, *, now: datetime) -> list[Message]:
    """What ``intake`` queues for the case, in its order: the supervisors' (nobody could take it), the handler's
    new assignment, the customer's acknowledgement."""
    case, handler, first = filing.case, filing.handler, filing.steps[0]
    due = first["due_at"]
    assert case is not None
    messages: list[Message] = []
    if filing.deferred is not None:
        reason, triage, code = filing.deferred
        messages.append(Message("staff_unassigned", "role:supervisor", unassigned_context(case, reason, triage, code),
                                f"unassigned:{case.number}", case=case))  # fmt: skip
    if due is None:
        return messages
    if handler is not None:
        messages.append(Message(
            "staff_new_assignment", f"staff:{handler.username}",
            {"case_number": case.number, "kind": case.kind, "priority": case.priority, "handler_name": handler.name,
             "due_at": due, **staff_links_for(case.number, handler.username)},
            f"assigned:{case.number}:{first['name']}:1:{handler.username}", case=case))  # fmt: skip
    messages.append(Message(
        f"acknowledgement_{case.kind}", f"customer:{filing.customer.id}",
        {"case_number": case.number, "channel": case.channel, "received_at": case.opened_at,
         "due_at": due, **filing.also.acknowledgement},
        f"ack:{case.number}", case=case))  # fmt: skip
    return messages

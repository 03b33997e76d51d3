"""Filing cases, numbering them, moving them through their lifecycle, and appending to the audit log.

Every function takes the session first and leaves the commit to the caller, so that one transition, its
event (and, later, its outbox message) commit together or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import Integer, bindparam, event, func, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import SessionTransaction, SessionTransactionOrigin
from sqlmodel import Session, col, select

from claimflow.db import insert_rows, pin
from models.audit import GENESIS, ChainTip, NewLink, next_link
from models.enums import CaseKind
from models.errors import InvalidInput, NotFound
from models.lifecycle import lifecycle_for
from models.tables import Case, CaseCounter, CaseCreate, Customer, Event


def case_number(kind: CaseKind, year: int, value: int) -> str:
    """``CLM-2026-000123``: prefix per kind, the filing year, six digits (more when a year needs them)."""
    return f"{kind.prefix}-{year:04d}-{value:06d}"


def next_case_number(session: Session, *, kind: CaseKind, year: int) -> str:
    """Take the next number for ``kind`` in ``year`` with one atomic upsert.

    The counter row stays locked until the caller's transaction ends, so concurrent filings queue on it
    (PostgreSQL row lock, SQLite database lock) and no number is handed out twice or skipped by a rollback.
    """
    [number] = take_case_numbers(session, kind=kind, year=year, count=1)
    return number


def take_case_numbers(session: Session, *, kind: CaseKind, year: int, count: int) -> list[str]:
    """Take the next ``count`` numbers for ``kind`` in ``year`` at once, in order, as ``next_case_number`` takes one
    (the same counter row, the same lock, given back with a rollback)."""
    return take_numbers_of(session, {kind: count}, year=year).get(kind, [])


def take_numbers_of(session: Session, counts: Mapping[CaseKind, int], *, year: int) -> dict[CaseKind, list[str]]:
    """``take_case_numbers`` for several kinds in one statement: each kind's counter row taken in the order of
    the kinds' names (as ``lock_numbering`` takes them), so two such statements never wait for each other crosswise."""
    wanted = {CaseKind(kind).value: count for kind, count in sorted(counts.items()) if count > 0}
    if not wanted:
        return {}
    last = _counters(session, [{"kind": kind, "year": year, "last_value": count} for kind, count in wanted.items()],
                     step=True)  # fmt: skip
    return {CaseKind(kind): [case_number(CaseKind(kind), year, value) for value in range(last[kind] - count + 1,
                                                                                          last[kind] + 1)]
            for kind, count in wanted.items()}  # fmt: skip


def lock_numbering(session: Session, *, kinds: Collection[CaseKind], year: int) -> None:
    """Take the number counters of ``kinds`` in ``year`` now, in one fixed order (PostgreSQL; SQLite's writes are
    serial already): a transaction that files several cases of several kinds (``claimflow.web.groupcommit``) then
    never holds one counter while it waits for another that a second such transaction holds. One statement: a
    counter that does not exist yet is made at 0, one that does is updated to its own value (the row's lock)."""
    if session.get_bind().dialect.name != "postgresql" or not kinds:
        return
    _counters(session, [{"kind": k, "year": year, "last_value": 0} for k in sorted({CaseKind(k).value for k in kinds})],
              step=False)  # fmt: skip


def _counters(session: Session, rows: list[dict[str, Any]], *, step: bool) -> dict[str, int]:
    """Insert or update the counter rows given, in their order; ``step``: add each row's ``last_value`` to the
    counter, else leave it. Returns each kind's counter after it."""
    values = {"year": rows[0]["year"]}
    for n, row in enumerate(rows):
        values[f"kind_{n}"], values[f"value_{n}"] = row["kind"], row["last_value"]
    found = session.execute(_counter_statement(session.get_bind().dialect.name, len(rows), step), values)
    return {kind: int(value) for kind, value in found}


@lru_cache(maxsize=16)
def _counter_statement(dialect: str, rows: int, step: bool) -> Any:
    """``_counters``' statement for this many kinds, built once: the kinds, year and values are its parameters.
    SQLAlchemy gives a multi-row insert no cache key, so it still compiles it at each execution (about 0.1 ms,
    "[no key]" in the engine's log); building it once saves making the statement itself."""
    table = CaseCounter.__table__  # type: ignore[attr-defined]
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table).values([{"kind": bindparam(f"kind_{n}"), "year": bindparam("year"),
                                       "last_value": bindparam(f"value_{n}")} for n in range(rows)])  # fmt: skip
    added = table.c.last_value + statement.excluded.last_value if step else table.c.last_value
    statement = statement.on_conflict_do_update(index_elements=["kind", "year"], set_={"last_value": added})
    return statement.returning(table.c.kind, table.c.last_value)


def new_run_key() -> str:
    """A random key for a new case's or escalation's runs (``tasks.runs.run_key``)."""
    return uuid.uuid4().hex


def get_case(session: Session, number: str, *, for_update: bool = False) -> Case:
    """The case with this number; ``NotFound`` if there is none."""
    statement = select(Case).where(Case.number == number.strip().upper())
    if for_update:
        statement = statement.with_for_update()
    case = session.exec(statement).first()
    if case is None:
        raise NotFound(f"no case numbered {number!r}")
    return case


def file_case(
    session: Session, *, data: CaseCreate, actor: str, now: datetime, customer: Customer | None = None
) -> Case:
    """File a new case with its customer and its first event (``filed``); the caller commits.

    Args:
        session: the open session.
        data: the case and its customer, already validated.
        actor: who files it (staff username, an intake source, ``system``).
        now: the filing time (aware); its year, in UTC, numbers the case.
        customer: a customer already on file (a complaint raised in feedback on their case); then
            ``data.customer`` is not stored again.
    """
    related_id = None
    if data.related_case_number:
        related_id = get_case(session, data.related_case_number).id
    if customer is None:
        customer = Customer.model_validate(data.customer, update={"created_at": now})
        session.add(customer)
        session.flush()
        pin(session, customer)  # routing and the acknowledgement read it again
    kind = CaseKind(data.kind)
    lifecycle = lifecycle_for(kind)
    case = Case.model_validate(
        data.model_dump(exclude={"customer", "related_case_number"}),
        update={
            "number": next_case_number(session, kind=kind, year=now.year),
            "status": lifecycle.initial,
            "customer_id": customer.id,
            "related_case_id": related_id,
            "opened_at": now,
            "updated_at": now,
            "run_key": new_run_key(),
        },
    )
    session.add(case)
    session.flush()
    assert case.id is not None
    mark_new(session, [case.id])
    append_event(
        session,
        case=case,
        actor=actor,
        type="filed",
        data={
            "kind": case.kind,
            "channel": case.channel,
            "status": case.status,
            "priority": case.priority,
            "product_line": case.product_line,
            "related_case": data.related_case_number,
        },
        now=now,
    )
    return case


class CaseRef(Protocol):
    """What appending an event or queueing a message needs of its case: a ``Case``, or any row with its id and
    number (the SLA watcher reads those two columns, not whole cases)."""

    @property
    def id(self) -> int | None: ...

    @property
    def number(self) -> str: ...


def append_event(
    session: Session, *, case: CaseRef, actor: str, type: str, data: Mapping[str, Any], now: datetime
) -> Event:
    """Append one event to the case's hash chain. Never updates or deletes an event.

    The caller holds the case row (filed in this transaction, or read ``for_update``), so the sequence
    cannot be taken twice; the unique (case, sequence) constraint is the last guard.
    """
    assert case.id is not None, "the case must be flushed before events are appended"
    known = _new_chains(session)
    tip = known[case.id] if case.id in known else chain_tips(session, [case.id]).get(case.id, GENESIS)
    link = next_link(case.number, tip, at=now, actor=actor, type=type, data=data)
    event = Event(**_event_row(case.id, link, actor=actor, type=type, now=now))
    session.add(event)
    session.flush()
    if case.id in known:
        known[case.id] = link.tip
    return event


_NEW_CHAINS = "claimflow.new_chains"


def _new_chains(session: Session) -> dict[int, ChainTip]:
    """The chain tips of the cases filed in this session's current transaction (or savepoint), as appended since:
    nobody else can append to a case not yet committed, so their tips need not be read back (a filing appends four
    or five events). Forgotten whenever a transaction or savepoint ends, committed or rolled back
    (``_forget_new_chains``)."""
    chains: dict[int, ChainTip] = session.info.setdefault(_NEW_CHAINS, {})
    return chains


def mark_new(session: Session, case_ids: Collection[int]) -> None:
    """These cases were just filed in this transaction: their chains start at the genesis, and their tips are kept
    in the session from here on (``_new_chains``)."""
    chains = _new_chains(session)
    for case_id in case_ids:
        chains[case_id] = GENESIS


@event.listens_for(Session, "after_transaction_end")
def _forget_new_chains(session: Session, transaction: SessionTransaction) -> None:
    if transaction.origin is not SessionTransactionOrigin.SUBTRANSACTION:  # not a flush's own
        session.info.pop(_NEW_CHAINS, None)


@dataclass(frozen=True)
class NewEvent:
    """One event for ``append_events``: what ``append_event`` takes besides the session and the time."""

    case: CaseRef
    actor: str
    type: str
    data: Mapping[str, Any]


def append_events(
    session: Session, events: Sequence[NewEvent], *, now: datetime, tips: Mapping[int, ChainTip] | None = None
) -> list[NewLink]:
    """Append many events, to one case or many, in one query for the chains' tips and one bulk insert.

    The events of each case follow each other in the order given, after the case's last event, exactly as
    ``append_event`` called once per event in that order would chain them. The same rules hold: the caller
    holds the cases' rows, and the unique (case, sequence) constraint is the last guard.

    Args:
        tips: the cases' chain tips, read by the caller with ``chain_tips`` (while it held the rows, and
            with no event appended to them since); then the insert is the only statement, and may run in
            ``deferred_writes``.

    Returns:
        Each event's place on its chain (sequence, stored data, hashes), in the order given.
    """
    assert all(e.case.id is not None for e in events), "the cases must be flushed before events are appended"
    if tips is None:
        ids, known = {e.case.id for e in events if e.case.id is not None}, _new_chains(session)
        tips = {i: known[i] for i in ids} if ids <= known.keys() else chain_tips(session, ids)  # filed here: known
    tips = dict(tips)
    links: list[NewLink] = []
    rows: list[dict[str, Any]] = []
    for new in events:
        case_id = new.case.id or 0
        link = next_link(new.case.number, tips.get(case_id, GENESIS), at=now, actor=new.actor, type=new.type,
                         data=new.data)  # fmt: skip
        tips[case_id] = link.tip
        links.append(link)
        rows.append(_event_row(case_id, link, actor=new.actor, type=new.type, now=now))
    insert_rows(session, Event.__table__, rows)  # type: ignore[attr-defined]
    known = _new_chains(session)
    for case_id in known.keys() & tips.keys():
        known[case_id] = tips[case_id]
    return links


def chain_tips(session: Session, case_ids: Collection[int]) -> dict[int, ChainTip]:
    """The last event of each of these cases that has one (one query, one descent of the (case, sequence)
    index per case: PostgreSQL reads each case's last event through a lateral ``LIMIT 1``, however long its
    chain)."""
    if not case_ids:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        cases = func.unnest(bindparam(None, list(case_ids), type_=ARRAY(Integer))).table_valued("id").render_derived()
        tip = (
            select(Event.sequence, Event.hash)
            .where(col(Event.case_id) == cases.c.id)
            .order_by(col(Event.sequence).desc())
            .limit(1)
            .lateral()
        )
        rows = session.execute(select(cases.c.id, tip.c.sequence, tip.c.hash).join(tip, true()))
        return {case_id: ChainTip(sequence, digest) for case_id, sequence, digest in rows}
    last = (
        select(Event.case_id, func.max(Event.sequence).label("sequence"))
        .where(col(Event.case_id).in_(case_ids))
        .group_by(col(Event.case_id))
        .subquery()
    )
    joined = session.exec(
        select(Event.case_id, Event.sequence, Event.hash).join(
            last, (col(Event.case_id) == last.c.case_id) & (col(Event.sequence) == last.c.sequence)
        )
    )
    return {case_id: ChainTip(sequence, digest) for case_id, sequence, digest in joined}


def _event_row(case_id: int, link: NewLink, *, actor: str, type: str, now: datetime) -> dict[str, Any]:
    return {"case_id": case_id, "sequence": link.sequence, "at": now, "actor": actor, "type": type,
            "data": link.data, "prev_hash": link.prev_hash, "hash": link.hash}  # fmt: skip


def apply_transition(
    session: Session,
    *,
    number: str,
    action: str,
    actor: str,
    now: datetime,
    data: Mapping[str, Any] | None = None,
) -> tuple[Case, Event]:
    """Move a case through its lifecycle and record the event, in the caller's transaction.

    Raises:
        NotFound: no such case.
        IllegalTransition: the lifecycle does not allow ``action`` from the case's state.
        MissingTransitionData: the move needs data that was not given.
    """
    case = get_case(session, number, for_update=True)
    lifecycle = lifecycle_for(case.kind)
    new_state, lifecycle_event = lifecycle.apply(case.status, action, actor=actor, data=data)
    case.status = new_state
    if "outcome" in lifecycle_event.data:
        case.outcome = lifecycle_event.data["outcome"]
    if lifecycle.is_closed(new_state):
        case.closed_at = now
    elif case.closed_at is not None:
        case.closed_at = None
    case.updated_at = now
    session.add(case)
    event = append_event(session, case=case, actor=actor, type=lifecycle_event.type, data=lifecycle_event.data, now=now)
    return case, event


# --- many rows in one statement ----------------------------------------------------------------------------


def list_cases(
    session: Session,
    *,
    status: Sequence[str] = (),
    kind: CaseKind | None = None,
    limit: int = 100,
) -> list[Case]:
    """Cases newest first, filtered by status and kind."""
    if limit < 1:
        raise InvalidInput("limit must be at least 1")
    statement = select(Case).order_by(col(Case.opened_at).desc(), col(Case.id).desc()).limit(limit)
    if status:
        statement = statement.where(col(Case.status).in_(list(status)))
    if kind is not None:
        statement = statement.where(Case.kind == kind)
    return list(session.exec(statement))


def events_of(session: Session, case: Case) -> list[Event]:
    return list(session.exec(select(Event).where(Event.case_id == case.id).order_by(col(Event.sequence))))


def count_cases(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(Case)).one())

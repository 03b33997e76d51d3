"""``tasks.filing.intake_many`` writes, row for row, what ``tasks.workflow.intake`` writes for the same cases.

Each comparison files the same cases both ways in the same database, each in a transaction that is then rolled back
(so both start from the same counters, loads and staff), and compares every row the filings wrote: customers,
cases, steps, events (their hashes too), outbox messages, the staff's loads and the number counters. Row ids differ
between the two (PostgreSQL's sequences do not roll back), so rows are compared by what they refer to: a case by
its number, a customer by its case, a step by its case, name and attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from models.enums import CaseKind, Channel, ContactChannel, Priority
from models.errors import InvalidInput
from models.tables import Case, CaseCounter, CaseCreate, Customer, CustomerCreate, Event, Outbox, StaffLoad, Step
from tasks.filing import intake_many, takes
from tasks.workflow import intake
from tests.conftest import DeskWorld

Snapshot = dict[str, list[dict[str, Any]]]


def _cases() -> list[CaseCreate]:
    """Every kind, in every jurisdiction the sample desk has rules for (a notice, an advance payment, neither), by
    every intake channel, with and without a product line (a claim without one goes to triage), customers who
    write and who prefer SMS, in Chinese and English."""
    customers = [
        CustomerCreate(name="张三", email="zhang.san@example.com"),
        CustomerCreate(name="Ann Lee", email="ann@example.com", language="en"),
        CustomerCreate(name="李四", phone="13800000000", preferred_channel=ContactChannel.sms),
        CustomerCreate(name="Bo Chen", phone="+61400000000", email="bo@example.com", language="en"),
    ]
    cases = []
    for index, (kind, jurisdiction, product_line) in enumerate(
        (kind, jurisdiction, product_line)
        for kind in CaseKind
        for jurisdiction in ("CN", "GB", "AU", "US-CA", "DE")
        for product_line in ("motor", "health", None)
    ):
        cases.append(
            CaseCreate(
                kind=kind,
                channel=list(Channel)[index % len(Channel)],
                priority=list(Priority)[index % len(Priority)],
                product_line=product_line,
                jurisdiction=jurisdiction,
                description=f"case {index}",
                customer=customers[index % len(customers)],
            )
        )
    return cases


def _snapshot(session: Session) -> Snapshot:
    """Every row a filing writes, with its ids replaced by what they refer to."""
    session.flush()
    cases = list(session.exec(select(Case).order_by(col(Case.number))))
    number = {c.id: c.number for c in cases}
    customer_of = {c.customer_id: c.number for c in cases}
    steps = list(session.exec(select(Step).order_by(col(Step.id))))
    step_ref = {s.id: f"{number[s.case_id]}/{s.name}/{s.attempt}" for s in steps}

    def plain(row: Any, *drop: str) -> dict[str, Any]:
        columns = [c.key for c in type(row).__table__.columns]
        return {k: getattr(row, k) for k in columns if k not in ("id", *drop)}

    def outbox(row: Outbox) -> dict[str, Any]:
        kind, _, name = row.recipient.partition(":")
        recipient = f"customer of {customer_of[int(name)]}" if kind == "customer" else row.recipient
        return {**plain(row, "case_id", "recipient"), "case": number.get(row.case_id), "recipient": recipient}

    def step(row: Step) -> dict[str, Any]:
        key = row.waiting_key.replace(f"-{row.id}-", f"-{step_ref[row.id]}-") if row.waiting_key else None
        return {**plain(row, "case_id", "waiting_key"), "case": number[row.case_id], "waiting_key": key}

    customers = [{**plain(c), "case": customer_of[c.id]} for c in session.exec(select(Customer))]
    events = [{**plain(e, "case_id"), "case": number[e.case_id]} for e in session.exec(select(Event))]
    return {
        "customer": sorted(customers, key=lambda r: r["case"]),
        "case": [{**plain(c, "run_key", "customer_id"), "customer": customer_of[c.customer_id]} for c in cases],
        "step": sorted((step(s) for s in steps), key=lambda r: (r["case"], r["name"])),
        "event": sorted(events, key=lambda r: (r["case"], r["sequence"])),
        "outbox": sorted((outbox(o) for o in session.exec(select(Outbox))), key=lambda r: r["idempotency_key"]),
        "staff_load": [plain(r) for r in session.exec(select(StaffLoad).order_by(col(StaffLoad.staff_id)))],
        "case_counter": [plain(r) for r in session.exec(select(CaseCounter).order_by(col(CaseCounter.kind)))],
    }


def _filed(world: DeskWorld, file: Callable[[Session], None]) -> Snapshot:
    with Session(world.engine) as session:
        file(session)
        snapshot = _snapshot(session)
        session.rollback()
    return snapshot


def _compare(world: DeskWorld, cases: Sequence[CaseCreate], actor: str = "webhook:bank") -> Snapshot:
    def one_by_one(session: Session) -> None:
        for data in cases:
            intake(session, world.desk, data=data, actor=actor, now=world.now)

    def at_once(session: Session) -> None:
        intake_many(session, world.desk, cases=[(data, actor) for data in cases], now=world.now)

    expected, got = _filed(world, one_by_one), _filed(world, at_once)
    for table in expected:
        assert got[table] == expected[table], table
    return got


def test_a_batch_of_every_kind_jurisdiction_channel_and_customer_is_filed_as_one_by_one(world: DeskWorld) -> None:
    snapshot = _compare(world, _cases())
    events = {e["type"] for e in snapshot["event"]}
    templates = {o["template"] for o in snapshot["outbox"]}
    steps = {s["name"] for s in snapshot["step"]}
    # the comparison covered what a filing can do: routed and triaged, notices and advance payments owed
    assert {
        "assigned",
        "routing_deferred",
        "step_opened",
        "acknowledge",
        "start_investigation",
        "start_review",
    } <= events
    assert {"staff_new_assignment", "staff_unassigned", "acknowledgement_claim"} <= templates
    assert {"review", "resolution", "answer", "progress_notice", "advance_payment"} <= steps


def test_handlers_filling_up_within_the_batch_are_counted_as_one_by_one(world: DeskWorld) -> None:
    with Session(world.engine) as session:
        session.execute(text("UPDATE staff SET capacity = 3"))
        session.commit()
    snapshot = _compare(world, _cases())
    deferred = [e for e in snapshot["event"] if e["type"] == "routing_deferred" and not e["data"]["triage"]]
    assert deferred, "the handlers' capacity ran out within the batch"


def test_acknowledgements_held_for_a_desk_not_configured_are_recorded_as_one_by_one(
    world: DeskWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No desk phone: every customer message is held, which is recorded on its case (a ``message_held`` event read
    from the case's chain): the batch's rows are written first, then those records, as one by one."""
    from claimflow.settings import get_settings

    monkeypatch.delenv("CLAIMFLOW_DESK_PHONE")
    get_settings.cache_clear()
    try:
        snapshot = _compare(world, _cases())
    finally:
        get_settings.cache_clear()
    held = [o for o in snapshot["outbox"] if o["status"] == "held"]
    assert held and all(o["template"].startswith("acknowledgement_") for o in held)
    assert sum(e["type"] == "message_held" for e in snapshot["event"]) == len(held)


def test_a_case_with_a_related_case_or_a_care_plan_is_left_to_intake(world: DeskWorld) -> None:
    plain = CaseCreate(kind=CaseKind.claim, channel=Channel.app, product_line="motor",
                       customer=CustomerCreate(name="王五", email="w@example.com"))  # fmt: skip
    related = plain.model_copy(update={"kind": CaseKind.complaint, "related_case_number": "CLM-2026-000001"})
    elderly = plain.model_copy(update={"customer": plain.customer.model_copy(update={"elderly": True})})
    assert takes(plain) and not takes(related) and not takes(elderly)
    with Session(world.engine) as session, pytest.raises(InvalidInput, match="related case or a care plan"):
        intake_many(session, world.desk, cases=[(plain, "a"), (elderly, "a")], now=world.now)

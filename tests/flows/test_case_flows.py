"""Case flows on a real Prefect server: suspended for people, resumed with their decisions, restartable.

The desk runner executes the runs in this process (as ``claimflow up`` does), against a throwaway Prefect
server; the case database is SQLite and PostgreSQL in turn.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import anyio
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Crashed
from sqlmodel import Session, col, select

from claimflow.db import get_engine
from claimflow.settings import get_settings
from flows.deployments import register
from flows.runner import DeskRunner
from flows.watch import reconcile, sla_watch
from models.enums import CaseKind
from models.tables import Escalation, Event, Outbox, Staff
from tasks.runs import give_input, launch_case, waiting_run


class RunnerThread:
    """The desk runner in a thread of its own, with the test's Prefect settings."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.runner: DeskRunner | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=lambda: context.run(self._main), daemon=True)
        self.thread.start()
        assert self.ready.wait(120), "the desk runner did not start"
        if self.error:
            raise self.error

    def _main(self) -> None:
        async def go() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop = anyio.Event()
            try:
                flows = await register(watch_interval=0, reconcile_interval=0, delivery_interval=0)
            except BaseException as exc:
                self.error = exc
                self.ready.set()
                raise
            self.runner = DeskRunner(flows, limit=5, poll_seconds=0.5)
            self.ready.set()
            await self.runner.run(self.stop)

        asyncio.run(go())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def run_state(run_id: str) -> StateType | None:
    async def read() -> StateType | None:
        async with get_client() as client:
            run = await client.read_flow_run(UUID(run_id))
            return run.state.type if run.state else None

    return asyncio.run(read())


@pytest.fixture
def live(prefect_server: None, database_url: str, monkeypatch: pytest.MonkeyPatch, desk_world: type) -> Iterator[Any]:
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", database_url)
    get_settings.cache_clear()
    world = desk_world(get_engine(database_url))
    world.now = datetime.now(UTC)
    runner = RunnerThread()
    runner.start()
    yield world
    runner.close()


def events(world, case) -> list[str]:
    with Session(world.engine) as session:
        return [
            e.type for e in session.exec(select(Event).where(Event.case_id == case.id).order_by(col(Event.sequence)))
        ]


def handler_of(world, case) -> str:
    with Session(world.engine) as session:
        return session.get(Staff, world.case(case).handler_id).username


def give(world, case, who: str, **answer: Any) -> str:
    """What a person does: wait until the run asks, answer it, and wait until the case has taken it."""
    before = len(events(world, case))
    run_id, _ = wait_for("the run to wait for a decision", lambda: _waiting(world, case))
    asyncio.run(give_input(run_id, {"staff": who, "approval_code": world.live_code(who), **answer}))
    wait_for("the decision to be applied", lambda: len(events(world, case)) > before)
    assert "decision_refused" not in events(world, case)[before:], "the decision was refused"
    return events(world, case)[-1]


def _waiting(world, case):
    try:
        return asyncio.run(waiting_run(world.engine, number=case.number))
    except Exception:
        return None


def test_a_claim_is_driven_by_its_run_from_filing_to_closure(live) -> None:
    world = live
    case = world.file(product_line="motor", amount_claimed=Decimal("8000"))
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    assert world.case(case).flow_run_id == run_id
    who = handler_of(world, case)

    give(world, case, who, decision="request_documents")
    assert world.case(case).status == "awaiting_documents"
    assert wait_for("the run to suspend", lambda: run_state(run_id) == StateType.PAUSED)
    give(world, case, "zhao.min", documents=["repair invoice", "police report"])
    assert world.case(case).status == "under_review"
    give(world, case, who, decision="approve", amount="7800")
    give(world, case, "zhao.min", amount="7800", reference="PAY-1", account_hint="6789")
    wait_for("the run to finish", lambda: run_state(run_id) == StateType.COMPLETED)

    assert world.case(case).status == "closed"
    log = events(world, case)
    expected = ["filed", "assigned", "start_review", "step_opened", "request_documents", "clock_paused",
                "documents_received", "clock_resumed", "approve", "step_completed", "step_opened", "record_payment",
                "step_completed", "request_feedback", "close"]  # fmt: skip
    assert [e for e in log if e in expected] == expected
    with Session(world.engine) as session:
        templates = sorted(o.template for o in session.exec(select(Outbox)))
    assert templates.count("missing_documents") == 1  # one complete list, sent once


def test_a_refused_code_is_recorded_and_the_run_asks_again(live) -> None:
    world = live
    case = world.file(CaseKind.inquiry, product_line="health")
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    who = handler_of(world, case)
    _, first_key = wait_for("the run to ask", lambda: _waiting(world, case))
    asyncio.run(give_input(run_id, {"staff": who, "approval_code": "000000", "answer": "Yes."}))
    wait_for("the refusal", lambda: events(world, case)[-1] == "decision_refused")
    _, second_key = wait_for("the run to ask again", lambda: _waiting(world, case) if _waiting(world, case) and
                             _waiting(world, case)[1] != first_key else None)  # fmt: skip
    assert second_key.endswith("-2")
    give(world, case, who, answer="Yes, physiotherapy is covered.")
    wait_for("the run to finish", lambda: run_state(run_id) == StateType.COMPLETED)
    assert world.case(case).status == "closed"
    log = events(world, case)
    assert log.count("decision_refused") == 1 and log.count("answer") == 1


def test_a_crashed_run_is_replaced_and_nothing_is_done_twice(live) -> None:
    world = live
    case = world.file(product_line="motor")
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    who = handler_of(world, case)
    give(world, case, who, decision="investigate")
    wait_for("the run to suspend", lambda: run_state(run_id) == StateType.PAUSED)
    before = events(world, case)

    async def crash() -> None:  # what the server records when a process dies
        async with get_client() as client:
            await client.set_flow_run_state(UUID(run_id), Crashed(message="killed"), force=True)

    asyncio.run(crash())
    result = asyncio.run(reconcile())
    assert result == {"started": 0, "restarted": 1}
    new_run = world.case(case).flow_run_id
    assert new_run != run_id
    wait_for("the new run to suspend", lambda: run_state(new_run) == StateType.PAUSED)
    assert events(world, case) == before  # the new run read the case and repeated nothing
    give(world, case, who, decision="reject", reasons="Racing is excluded", clause="4.2")
    wait_for("the new run to finish", lambda: run_state(new_run) == StateType.COMPLETED)
    assert world.case(case).status == "closed"
    assert events(world, case).count("start_investigation") == 1


def test_a_breach_is_escalated_extended_and_the_next_level_reached_when_nobody_decides(live) -> None:
    world = live
    first = world.file(product_line="motor")
    second = world.file(product_line="motor")
    for case in (first, second):
        asyncio.run(launch_case(world.engine, case_id=case.id))
    due = world.step(first, "review").due_at
    asyncio.run(sla_watch(now=due + timedelta(minutes=1)))
    with Session(world.engine) as session:
        raised = list(session.exec(select(Escalation).order_by(col(Escalation.id))))
    assert [(e.level, e.role) for e in raised] == [(1, "supervisor"), (1, "supervisor")]
    runs = [e.flow_run_id for e in raised]
    assert all(runs)
    for run in runs:
        wait_for("the escalation run to suspend", lambda run=run: run_state(run) == StateType.PAUSED)
    # the supervisor extends the first; nobody decides the second
    asyncio.run(
        give_input(
            runs[0],
            {
                "staff": "zhao.min",
                "approval_code": world.live_code("zhao.min"),
                "decision": "extend",
                "reason": "Waiting for the assessor's report",
            },
        )
    )
    wait_for("the extension", lambda: "escalation_decided" in events(world, first))
    wait_for("the first escalation run to finish", lambda: run_state(runs[0]) == StateType.COMPLETED)
    assert world.step(first, "review").due_at > due
    decide_by = raised[1].decide_by
    asyncio.run(sla_watch(now=decide_by + timedelta(minutes=1)))
    with Session(world.engine) as session:
        levels = [
            (e.case_id, e.level, e.role, e.decision)
            for e in session.exec(select(Escalation).order_by(col(Escalation.id)))
        ]
    assert levels[1:] == [(second.id, 1, "supervisor", "superseded"), (second.id, 2, "manager", None)]

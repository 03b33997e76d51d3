"""Desk actions started from the Prefect UI (Deployments > reassign-cases / extend-step > Run > Custom run): the
desk runner executes the run at once; what it did is on the case, and a refusal is the run's Failed state with the
reason, changing nothing."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments.flow_runs import arun_deployment
from sqlmodel import Session, select

from models.tables import Staff

pytestmark = pytest.mark.slow


def _run(kit, deployment: str, **parameters: object) -> tuple[StateType, str | None, str]:
    """Start a deployment's run as the UI's Custom run does, and wait until it is done: (state, message, name)."""

    async def start() -> UUID:
        run = await arun_deployment(f"{deployment}/{deployment}", parameters=parameters, timeout=0)
        return run.id

    run_id = asyncio.run(start())

    async def read() -> tuple[StateType, str | None, str] | None:
        async with get_client() as client:
            run = await client.read_flow_run(run_id)
        if run.state is None or not run.state.is_final():
            return None
        return run.state.type, run.state.message, run.name

    return kit.wait_for(f"the {deployment} run to finish", lambda: asyncio.run(read()))


def _handler(world, case) -> str:
    with Session(world.engine) as session:
        return session.get(Staff, world.case(case).handler_id).username


def test_a_supervisor_reassigns_a_persons_cases_and_extends_a_step_from_the_ui(live, kit) -> None:
    world = live
    cases = [world.file(product_line="motor") for _ in range(2)]
    handler = _handler(world, cases[0])
    mine = [c for c in cases if _handler(world, c) == handler]
    target = "wang.fang" if handler != "wang.fang" else "li.wei"

    # a wrong code: the run says why and nothing moves
    state, message, name = _run(kit, "reassign-cases", from_staff=handler, to_staff=target, by="zhao.min",
                                approval_code="000000", reason="On leave")  # fmt: skip
    assert state == StateType.FAILED and message.startswith("refused: ") and "code" in message
    assert name == f"reassign {handler} to {target}"
    assert all(_handler(world, c) == handler for c in mine)

    state, message, _ = _run(kit, "reassign-cases", from_staff=handler, to_staff=target, by="zhao.min",
                             approval_code=world.live_code("zhao.min"), reason="On leave until Monday")  # fmt: skip
    assert state == StateType.COMPLETED, message
    assert all(_handler(world, c) == target for c in mine)
    assert all("reassigned" in world.events(c) for c in mine)

    due = world.step(cases[0], "review").due_at
    state, message, _ = _run(kit, "extend-step", case_number=cases[0].number, by="zhao.min",
                             approval_code=world.live_code("zhao.min"), reason="The assessor's report is due")  # fmt: skip
    assert state == StateType.COMPLETED, message
    assert world.step(cases[0], "review").due_at > due
    assert "extension_notice" in world.outbox()


def test_a_handler_fixes_a_held_letter_from_the_ui(live, kit) -> None:
    """A rejection letter held back for lacking its clause gives the handler a fix_wording task; the
    ``release-message`` deployment, with the clause, sends it and the task is done."""
    from claimflow.db import session_scope
    from models.messages import CATALOGUE
    from models.tables import Outbox, Step
    from tasks.outbox import default_config, enqueue

    world = live
    case = world.file(product_line="motor")
    handler = _handler(world, case)
    context = {**CATALOGUE["decision"].sample, "case_number": case.number, "outcome": "rejected", "clause": ""}
    context.pop("customer_name", None)
    filed = world.case(case)
    with session_scope(world.engine) as session:
        held = enqueue(session, template="decision", recipient=f"customer:{filed.customer_id}", context=context,
                       idempotency_key=f"decision:{case.number}:test", now=world.now, case=filed,
                       config=default_config())  # fmt: skip
    assert not held.queued and held.violations  # held back by the wording check
    with Session(world.engine) as session:
        row = session.exec(select(Outbox).where(Outbox.case_id == case.id, Outbox.template == "decision")).one()
        assert row.status == "held"
        [task] = session.exec(select(Step).where(Step.case_id == case.id, Step.name == "fix_wording")).all()
        assert task.status == "open"

    state, message, _ = _run(kit, "release-message", case_number=case.number, by=handler,
                             approval_code=world.live_code(handler), outbox_id=row.id,
                             values={"clause": "4.2 (racing is excluded)"})  # fmt: skip
    assert state == StateType.COMPLETED, message
    with Session(world.engine) as session:
        assert session.get(Outbox, row.id).status == "pending"  # sent with the next delivery
        assert session.get(Step, task.id).status == "done"

"""The desk runner: a case run's legs executed in this process, without Prefect's per-run suspension watcher."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import prefect.flow_engine
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType

from models.enums import CaseKind
from tasks.runs import launch_case


def test_an_inquiry_is_suspended_and_resumed_with_no_watcher_and_only_its_writes_as_task_runs(
    live, kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []

    def watcher(*args: Any, **kwargs: Any) -> Any:  # Prefect's thread + events websocket per run, not wanted
        started.append(args)
        raise AssertionError("the suspension watcher was started")

    monkeypatch.setattr(prefect.flow_engine, "observe_flow_run_suspension", watcher)
    world = live
    case = world.file(kind=CaseKind.inquiry, product_line="health", description="Is physiotherapy covered?")
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    assert kit.wait_for("the run to suspend", lambda: kit.run_state(run_id) == StateType.PAUSED)
    kit.give(world, case, kit.handler_of(world, case), answer="Yes, with a referral.")
    kit.wait_for("the run to finish", lambda: kit.run_state(run_id) == StateType.COMPLETED)
    assert world.case(case).status == "closed"
    assert started == []

    async def task_run_names() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])))
        return sorted(r.name for r in runs)

    # the decision and the closing move; the four reads of the case are plain calls
    names = kit.wait_for(
        "the task runs to be recorded", lambda: (n := asyncio.run(task_run_names())) and len(n) >= 2 and n
    )
    assert len(names) == 2 and "finish" in names and not any(n.startswith("read-case") for n in names)

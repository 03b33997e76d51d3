"""The desk runner: a case run's legs executed in this process, without Prefect's per-run suspension watcher."""

from __future__ import annotations

import asyncio
import logging
import traceback
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import prefect.flow_engine
import pytest
from prefect.client.orchestration import PrefectClient, SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType

from models.enums import CaseKind
from tasks.runs import launch_case
from tests.flows.conftest import run_log_levels


def test_an_inquiry_is_suspended_and_resumed_with_no_watcher_and_only_its_writes_as_task_runs(
    live, kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []

    def watcher(*args: Any, **kwargs: Any) -> Any:  # Prefect's thread + events websocket per run, not wanted
        started.append(args)
        raise AssertionError("the suspension watcher was started")

    monkeypatch.setattr(prefect.flow_engine, "observe_flow_run_suspension", watcher)
    # the runner reads the server's default result storage once, as it starts (maybe while this test begins);
    # Prefect's engine would read it at every leg
    storage_reads: list[str] = []
    for client_class in (PrefectClient, SyncPrefectClient):
        real = client_class.read_server_default_result_storage

        def counted(self: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            storage_reads.append("".join(traceback.format_stack()))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(client_class, "read_server_default_result_storage", counted)
    world = live
    case = world.file(kind=CaseKind.inquiry, product_line="health", description="Is physiotherapy covered?")
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    assert kit.wait_for("the run to suspend", lambda: kit.run_state(run_id) == StateType.PAUSED)
    # the run's log in the UI tells that it waits, as information, not as an error
    suspended = kit.wait_for(
        "the suspension in the run's log",
        lambda: [
            level for message, level in run_log_levels(run_id) if message.startswith("Finished in state Suspended")
        ],
    )
    assert suspended == [logging.INFO]
    kit.give(world, case, kit.handler_of(world, case), answer="Yes, with a referral.")
    kit.wait_for("the run to finish", lambda: kit.run_state(run_id) == StateType.COMPLETED)
    assert world.case(case).status == "closed"
    assert started == []
    assert all("with_result_storage_pinned" in stack for stack in storage_reads), storage_reads

    async def task_run_names() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])))
        return sorted(r.name for r in runs)

    # the decision and the closing move; the four reads of the case are plain calls. A task run is recorded
    # under Prefect's default name first and renamed by a later state event, which the server may record after
    # this test's first read: wait for the rename rather than read the first snapshot.
    names = kit.wait_for(
        "the task runs to be recorded under their own names",
        lambda: (n := asyncio.run(task_run_names())) and len(n) >= 2 and "finish" in n and n,
    )
    assert len(names) == 2 and "finish" in names and not any(n.startswith("read-case") for n in names)


@pytest.mark.parametrize(
    ("level", "message", "logged"),
    [
        (logging.ERROR, "Finished in state Suspended(type=PAUSED)", logging.INFO),
        (logging.ERROR, "Finished in state Paused()", logging.INFO),
        (logging.ERROR, "Finished in state Failed('Flow run encountered an exception.')", logging.ERROR),
        (logging.ERROR, "Finished in state Crashed('Execution was cancelled by the runtime environment.')", 40),
        (logging.ERROR, "Suspended(type=PAUSED) somewhere else in the text", logging.ERROR),
        (logging.WARNING, "Finished in state Suspended(type=PAUSED)", logging.WARNING),
    ],
)
def test_only_a_run_that_waits_for_a_person_is_lowered_from_error(level: int, message: str, logged: int) -> None:
    from flows.runner import SuspensionIsNotAnError

    record = logging.LogRecord("prefect.flow_runs", level, __file__, 1, message, None, None)
    assert SuspensionIsNotAnError().filter(record) is True  # nothing is dropped
    assert (record.levelno, record.levelname) == (logged, logging.getLevelName(logged))


def test_the_result_storage_is_read_once_and_each_flow_keeps_whether_it_persists(prefect_server: None) -> None:
    from prefect import flow
    from prefect.settings import get_current_settings

    from flows.runner import with_result_storage_pinned

    @flow(persist_result=False)
    def quiet() -> None: ...

    @flow
    def unset() -> None: ...

    @flow(persist_result=True, result_storage=Path("/tmp/elsewhere"))
    def own() -> None: ...

    ids = [uuid4() for _ in range(3)]
    pinned = asyncio.run(with_result_storage_pinned(dict(zip(ids, (quiet, unset, own), strict=True))))
    local = Path(get_current_settings().results.local_storage_path)
    # no default block on the test server: Prefect's local storage folder, named so the engine need not ask
    assert [pinned[i].result_storage for i in ids] == [local, local, Path("/tmp/elsewhere")]
    # what the engine would have decided: the flow's own choice, else Prefect's default (off)
    assert [pinned[i].persist_result for i in ids] == [False, False, True]
    assert [pinned[i].name for i in ids] == ["quiet", "unset", "own"]


@pytest.mark.parametrize(
    ("heartbeats", "environment", "seen"), [(False, False, None), (True, False, 60), (False, True, 60)]
)
def test_the_runs_of_a_desk_runner_send_no_heartbeats_unless_asked(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch, heartbeats: bool, environment: bool, seen: int | None
) -> None:
    """Asked by CLAIMFLOW_RUNNER_HEARTBEATS, or by an operator who sets Prefect's own variable."""
    if environment:
        monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "60")
    import anyio
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    from flows.runner import DeskRunner

    frequencies: list[int | None] = []

    class Recording(DeskRunner):
        async def poll_once(self, client: Any, group: Any) -> int:  # what a run started here would read
            frequencies.append(get_current_settings().flows.heartbeat_frequency)
            stop.set()
            return 0

    stop = anyio.Event()
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 60}):  # an operator's (or Prefect's) setting
        anyio.run(Recording({}, heartbeats=heartbeats).run, stop)
    assert frequencies == [seen]


def test_run_states_asks_in_pages_the_server_accepts(prefect_server: None) -> None:
    from tasks.runs import PREFECT_PAGE, run_states

    unknown = [str(uuid4()) for _ in range(PREFECT_PAGE + 50)]  # the server refuses a limit above 200
    assert asyncio.run(run_states(unknown)) == dict.fromkeys(unknown)


def test_a_runner_that_lost_the_race_for_a_run_leaves_it_alone_and_keeps_polling(live, kit) -> None:
    """Two runners read the same due run; one claims it and runs it to its suspension before the other
    proposes Pending. The server then rejects the late claim (the run is Paused) or aborts it (already
    claimed); Prefect's ``propose_state`` raised both as BaseExceptions, which ended the losing runner and
    crashed every run it was executing (``bench/flow_runs.py``, two runners)."""
    import anyio
    from prefect.client.schemas.objects import FlowRun

    from flows.runner import DeskRunner, claim

    world = live
    case = world.file(kind=CaseKind.inquiry, product_line="health", description="Is dental covered?")
    run_id = UUID(asyncio.run(launch_case(world.engine, case_id=case.id)))
    kit.wait_for("the run to suspend", lambda: kit.run_state(str(run_id)) == StateType.PAUSED)

    class Stale:
        """The server as the late runner saw it: the run still due (its claim goes to the real server)."""

        def __init__(self, client: Any, run: FlowRun) -> None:
            self.client, self.run = client, run

        async def get_scheduled_flow_runs_for_deployments(self, **_: Any) -> list[FlowRun]:
            return [self.run]

        def __getattr__(self, name: str) -> Any:
            return getattr(self.client, name)

    async def late_runner() -> tuple[int, bool, StateType | None, str]:
        async with get_client() as client:
            run = await client.read_flow_run(run_id)
            assert run.deployment_id is not None
            late = DeskRunner({run.deployment_id: object()})  # type: ignore[dict-item]  # never executed here
            async with anyio.create_task_group() as group:
                started = await late.poll_once(Stale(client, run), group)
            again = await claim(client, run_id)  # the same answer, asked directly
            after = await client.read_flow_run(run_id)
            return started, again, after.state.type if after.state else None, after.state_name or ""

    started, again, state, name = asyncio.run(late_runner())
    assert (started, again, state) == (0, False, StateType.PAUSED), name
    # the run is still the first runner's: answered, it goes on to its end
    kit.give(world, case, kit.handler_of(world, case), answer="Yes, twice a year.")
    kit.wait_for("the run to finish", lambda: kit.run_state(str(run_id)) == StateType.COMPLETED)
    assert world.case(case).status == "closed"


def test_a_second_claim_on_a_claimed_run_is_refused(prefect_server: None) -> None:
    """Two runners proposing Pending for the same scheduled run: the server grants it to the first only."""
    from prefect import flow
    from prefect.states import Scheduled

    from flows.runner import claim

    @flow
    def nothing() -> None: ...

    async def race() -> list[bool]:
        async with get_client() as client:
            run = await client.create_flow_run(nothing, state=Scheduled())
            return [await claim(client, run.id), await claim(client, run.id)]

    assert asyncio.run(race()) == [True, False]


def test_two_runners_share_the_desk_and_lose_no_run(live, kit) -> None:
    """Scale-out on one server: a second runner beside the desk's, both polling often, so both read the same
    due runs and race for them; every case still ends, no run fails or crashes, and neither runner stops."""
    from tests.flows.conftest import RunnerThread

    world = live
    second = RunnerThread()
    second.start()
    try:
        cases = [
            world.file(kind=CaseKind.inquiry, product_line="health", description=f"Question {n}") for n in range(6)
        ]
        runs = [asyncio.run(launch_case(world.engine, case_id=case.id)) for case in cases]
        for run in runs:
            kit.wait_for("the run to suspend", lambda run=run: kit.run_state(run) == StateType.PAUSED)
        # a person's approval codes are accepted once each and in rising order (about two a minute): the
        # answers are shared between the handler and two supervisors (who may answer any inquiry)
        for n, case in enumerate(cases):
            who = [kit.handler_of(world, case), "zhao.min", "sun.li"][n % 3]
            kit.give(world, case, who, answer="Yes.")
        for run in runs:
            kit.wait_for("the run to finish", lambda run=run: kit.run_state(run) == StateType.COMPLETED)
        assert [world.case(case).status for case in cases] == ["closed"] * len(cases)
        assert second.thread.is_alive(), "the second runner stopped"
    finally:
        second.close()
    assert not second.thread.is_alive()


def test_the_desk_runner_and_the_desks_prefect_server_yield_the_cpu_to_intake(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """In a surge the runner (case runs, its delivery loop) and the Prefect server took two thirds of the two cores
    and the intake API's filing rate fell from 250 to 100 claims/s (bench/surge.py): both lower their priority at
    start, every thread of them (CLAIMFLOW_RUNNER_NICE, CLAIMFLOW_PREFECT_SERVER_NICE; 10 by default)."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    import httpx

    from claimflow.orchestrator import api_url, auth_string
    from claimflow.priority import nice_of, session_group_nice
    from claimflow.settings import Settings
    from models.errors import InvalidInput
    from tests.flows.conftest import desk_prefect_server

    defaults = Settings.model_fields
    assert defaults["runner_nice"].default == defaults["prefect_server_nice"].default == 10
    database = tmp_path / "cases.db"
    shutil.copyfile(sqlite_template, database)
    root = Path(__file__).resolve().parents[2]
    with desk_prefect_server(tmp_path / "desk", login="desk:priority-test") as server:
        assert server.process is not None
        assert set(nice_of(server.process.pid).values()) == {10}
        assert session_group_nice(server.process.pid) == 10  # a session of its own: its CPU group lowered too
        url, auth = api_url(server.settings), auth_string(server.settings)
        env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": auth,
               "CLAIMFLOW_DATABASE_URL": f"sqlite:///{database}", "CLAIMFLOW_DATA_DIR": str(tmp_path / "data"),
               "PYTHONPATH": str(root)}  # fmt: skip
        env.pop("CLAIMFLOW_RUNNER_NICE", None)
        # before any runner has registered the desk's deployments (a demo typed while 'up' still starts): a clear
        # refusal, not Prefect's traceback; the sample cases are filed and wait for the reconciler
        early = subprocess.run([sys.executable, "-m", "claimflow", "demo"], env=env, cwd=root, capture_output=True,
                               text=True, timeout=300)  # fmt: skip
        assert early.returncode == InvalidInput.exit_code, early.stdout + early.stderr
        assert "the desk's deployments are not registered yet" in early.stdout + early.stderr
        assert "Traceback" not in early.stdout + early.stderr
        log = tmp_path / "runner.log"
        with log.open("w") as out:
            runner = subprocess.Popen([sys.executable, "-m", "claimflow", "runner"], env=env, cwd=root, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            user, _, password = auth.partition(":")
            deadline = time.monotonic() + 120
            while httpx.post(f"{url}/deployments/count", json={}, auth=(user, password), timeout=10).json() < 3:
                assert runner.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)  # the runner has registered the desk's deployments: its loops are running
            threads, group = nice_of(runner.pid), session_group_nice(runner.pid)
        finally:
            runner.send_signal(signal.SIGINT)
            runner.wait(timeout=60)
        output = log.read_text()
    assert runner.returncode == 0, output[-3000:]
    assert "CPU priority nice 10" in output
    assert len(threads) > 1 and set(threads.values()) == {10}, threads
    assert group == 10

"""Flow tests run against a real, temporary Prefect server (``prefect_test_harness``), one per session."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from pydantic import SecretStr
from sqlmodel import Session, col, select

from claimflow.db import get_engine
from claimflow.orchestrator import EmbeddedServer, api_url, auth_string
from claimflow.settings import Settings, get_settings
from flows.deployments import UNSCHEDULED, register
from flows.runner import DeskRunner
from models.tables import Event, Staff
from tasks.answers import give_input, waiting_run
from tests.ports import free_port

SERVER_START_SECONDS = 120  # about 20 s on a first start (database set-up), under 10 s after


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A throwaway Prefect server and database for the whole session (about 10-20 s to start)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


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
                flows = await register(**UNSCHEDULED)
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


@contextmanager
def live_desk(database_url: str, monkeypatch: pytest.MonkeyPatch, desk_world: type) -> Iterator[Any]:
    """A desk world on the test database (sample staff, enrolled) with the desk runner running."""
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", database_url)
    get_settings.cache_clear()
    world = desk_world(get_engine(database_url))
    world.now = datetime.now(UTC)
    runner = RunnerThread()
    runner.start()
    try:
        yield world
    finally:
        runner.close()
        aside(asyncio.run, cancel_unfinished_runs())  # the browser tests run this teardown in Playwright's loop


@contextmanager
def desk_prefect_server(home: Path, *, login: str) -> Iterator[EmbeddedServer]:
    """The desk's own embedded Prefect server (as ``claimflow up`` starts it: UI on, basic auth ``login``, SQLite)
    on a free port, its data under ``home``; this process's Prefect client and the desk runner talk to it while
    the context lasts. The server can be stopped and started again inside it (same port, same data)."""
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    settings = Settings(data_dir=home / "data", prefect_port=free_port(), prefect_auth=SecretStr(login))
    server = EmbeddedServer(settings, log=home / "server.log")
    server.start(timeout=SERVER_START_SECONDS)
    try:
        with temporary_settings(
            {PREFECT_API_URL: api_url(settings), PREFECT_API_AUTH_STRING: auth_string(settings),
             PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        ):  # fmt: skip
            _restart_log_and_event_workers()  # they keep the server they started with (the harness's, if any)
            try:
                yield server
            finally:
                # ship the runs' last logs and events while the server is there, or they are retried at exit
                # for a minute or more ("Error logging to API: All connection attempts failed")
                _restart_log_and_event_workers()
    finally:
        server.stop()


def _restart_log_and_event_workers() -> None:
    """Drain and stop Prefect's log and event workers: each is started on first use with the client settings
    of that moment and keeps them, so the next ones start with the settings in force then."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        aside(worker.drain_all, timeout=10, at_exit=False)  # in a thread: see aside()


def aside(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``call`` in a thread of its own with this context's Prefect settings: Playwright's sync API keeps an
    event loop running in the test's thread, where ``asyncio.run`` (the flow helpers) is refused."""
    context = contextvars.copy_context()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(context.run, call, *args, **kwargs).result()


def run_log_levels(run_id: str) -> list[tuple[str, int]]:
    """A run's log as the server has it (what its page shows): each message with its level."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def read() -> list[tuple[str, int]]:
        async with get_client() as client:
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)])))
            return [(log.message, log.level) for log in logs]

    return asyncio.run(read())


async def cancel_unfinished_runs() -> None:
    """Cancel the runs a test leaves scheduled, running or suspended on the session's Prefect server: ids start
    again in every test's database, so the next test's runner would execute them against its own cases."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.states import Cancelled

    unfinished = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(
                any_=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]
            )
        )
    )
    async with get_client() as client:
        for _ in range(20):  # pages of 200; bounded, so a run the server will not cancel cannot hang teardown
            runs = await client.read_flow_runs(flow_run_filter=unfinished, limit=200)
            if not runs:
                return
            for run in runs:
                await client.set_flow_run_state(run.id, Cancelled(), force=True)
        raise AssertionError("runs left unfinished on the test server could not be cancelled")


@pytest.fixture
def live(prefect_server: None, database_url: str, monkeypatch: pytest.MonkeyPatch, desk_world: type) -> Iterator[Any]:
    with live_desk(database_url, monkeypatch, desk_world) as world:
        yield world


class FlowKit:
    """What a test does as a person at the desk, and how it waits for the runs."""

    @staticmethod
    def wait_for(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}")

    @staticmethod
    def run_state(run_id: str) -> StateType | None:
        async def read() -> StateType | None:
            async with get_client() as client:
                run = await client.read_flow_run(UUID(run_id))
                return run.state.type if run.state else None

        return asyncio.run(read())

    @staticmethod
    def state_message(run_id: str) -> str | None:
        """The message of a run's current state, as its page shows it under the state."""

        async def read() -> str | None:
            async with get_client() as client:
                run = await client.read_flow_run(UUID(run_id))
                return run.state.message if run.state else None

        return asyncio.run(read())

    @staticmethod
    def task_runs(run_id: str) -> list[tuple[str, StateType | None, str | None]]:
        """A flow run's task runs as its page lists them: name, state type, state message."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        async def read() -> list[tuple[str, StateType | None, str | None]]:
            async with get_client() as client:
                runs = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)]))
                )
                return [(r.name, r.state.type if r.state else None, r.state.message if r.state else None) for r in runs]

        return asyncio.run(read())

    @staticmethod
    def events(world, case) -> list[str]:
        with Session(world.engine) as session:
            return [
                e.type
                for e in session.exec(select(Event).where(Event.case_id == case.id).order_by(col(Event.sequence)))
            ]

    @staticmethod
    def handler_of(world, case) -> str:
        with Session(world.engine) as session:
            return session.get(Staff, world.case(case).handler_id).username

    @staticmethod
    def give(world, case, who: str, **answer: Any) -> str:
        """What a person does: wait until the run asks, answer it, and wait until the case has taken it."""
        run_id, _ = FlowKit.wait_for("the run to wait for a decision", lambda: FlowKit.waiting(world, case))
        before = len(FlowKit.events(world, case))  # counted once it waits: the leg before writes until then
        asyncio.run(give_input(run_id, {"staff": who, "approval_code": world.live_code(who), **answer}))
        FlowKit.wait_for("the decision to be applied", lambda: len(FlowKit.events(world, case)) > before)
        assert "decision_refused" not in FlowKit.events(world, case)[before:], "the decision was refused"
        return FlowKit.events(world, case)[-1]

    @staticmethod
    def waiting(world, case):
        try:
            return asyncio.run(waiting_run(world.engine, number=case.number))
        except Exception:
            return None


@pytest.fixture
def kit() -> type[FlowKit]:
    return FlowKit

"""The desk runner: one long-lived process that executes the desk's deployment runs in-process.

Prefect's ``serve`` and its workers start a fresh Python process for every flow run, and a case flow run is
started or resumed at every step of the case: on two cores that costs seconds per leg (importing Prefect
alone takes most of it). The desk runner instead polls the server for scheduled (or resumed) runs of the
desk's deployments and executes each with ``prefect.flow_engine.run_flow_async`` in this process, many at a
time. A suspended run still holds nothing while it waits: its coroutine ends at the suspension, and the
next poll after a resume picks it up again.

Several desk runners may run against one server (on several machines): a run is claimed by proposing the
Pending state, which the server grants to one of them only (``claim``); a runner that loses the race to
another (which may already have run it to its next suspension) leaves the run alone.

Each run executes with Prefect's own flow engine, less one thing by default: Prefect 3.9 watches every
deployment run for a suspension made from outside the run (``suspend_flow_run(flow_run_id=...)`` by another
process) with a thread, an event loop, a new API client and an events websocket of its own per run, which
the server answers with a backfill query and then filters every event of the workspace against. The desk's
runs only ever suspend themselves (``asuspend_flow_run`` in the run raises at once), so the runner leaves
that watcher out (``observe_suspension=False``): it was about 40 % of the runner's CPU per leg and a quarter of
the server's (``bench/flow_runs.py``, variant ``observer``).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
from prefect import Flow
from prefect._flow_run_suspension import FlowRunSuspensionRequest, register_flow_run_suspension_request
from prefect.client.schemas.objects import FlowRun, State
from prefect.client.schemas.responses import SetStateStatus
from prefect.context import AsyncClientContext, SyncClientContext
from prefect.exceptions import Abort, Pause
from prefect.filesystems import LocalFileSystem
from prefect.flow_engine import AsyncFlowRunEngine, FlowRunEngine, run_flow, run_flow_async
from prefect.results import aget_default_result_storage
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings
from prefect.states import Pending

logger = logging.getLogger("claimflow.runner")
HEARTBEAT_VARIABLES = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


@contextmanager
def _own_suspensions_only(engine: AsyncFlowRunEngine[Any, Any] | FlowRunEngine[Any, Any]) -> Generator[Any]:
    """Prefect's ``setup_flow_run_suspension_request`` without ``observe_flow_run_suspension``: the request
    is registered (a suspension from inside the run, or from a task of it, still ends the run), but no
    watcher thread and events websocket look for suspensions made from outside."""
    if engine.flow_run is None:
        raise ValueError("Flow run not set")
    request: FlowRunSuspensionRequest = engine._get_flow_run_suspension_request()
    with register_flow_run_suspension_request(engine.flow_run.id, request):
        request.raise_if_requested()
        yield request


class SuspensionIsNotAnError(logging.Filter):
    """Prefect's async flow engine logs the end of every leg that is not Completed at ERROR, so each case
    that stops to wait for a person (the desk's normal day) put "Finished in state Suspended(type=PAUSED)"
    among the errors an operator watches, in the run's log in the UI too. This filter, on Prefect's flow-run
    logger, lowers those lines (and Paused ones) to INFO before any handler sees them; a run that fails or
    crashes is still logged at ERROR."""

    WAITING = ("Finished in state Suspended(", "Finished in state Paused(")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and isinstance(record.msg, str) and record.msg.startswith(self.WAITING):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def quiet_suspensions() -> None:
    """Install ``SuspensionIsNotAnError`` on Prefect's flow-run logger (once)."""
    flow_runs = logging.getLogger("prefect.flow_runs")
    if not any(isinstance(f, SuspensionIsNotAnError) for f in flow_runs.filters):
        flow_runs.addFilter(SuspensionIsNotAnError())


class _DeskAsyncEngine(AsyncFlowRunEngine[Any, Any]):
    def setup_flow_run_suspension_request(self) -> Any:
        return _own_suspensions_only(self)


class _DeskSyncEngine(FlowRunEngine[Any, Any]):
    def setup_flow_run_suspension_request(self) -> Any:
        return _own_suspensions_only(self)


async def run_desk_flow_async(flow: Flow[Any, Any], run: FlowRun) -> State | None:
    """``prefect.flow_engine.run_flow_async(flow, flow_run=run, return_type="state")`` with the desk's engine."""
    engine = _DeskAsyncEngine(flow=flow, parameters=run.parameters, flow_run=run)
    async with engine.start():
        while engine.is_running():
            async with engine.run_context():
                _ = await engine.call_flow_fn()  # Prefect types the awaited value as a coroutine
    return engine.state


def run_desk_flow_sync(flow: Flow[Any, Any], run: FlowRun) -> State | None:
    """``prefect.flow_engine.run_flow_sync(flow, flow_run=run, return_type="state")`` with the desk's engine."""
    engine = _DeskSyncEngine(flow=flow, parameters=run.parameters, flow_run=run)
    with engine.start():
        while engine.is_running():
            with engine.run_context():
                engine.call_flow_fn()
    return engine.state


class DeskRunner:
    """Executes scheduled runs of the given deployments in this process.

    Args:
        flows: deployment id -> the flow it runs.
        limit: how many runs execute at once.
        poll_seconds: how often to ask the server for runs that are due.
        observe_suspension: run Prefect's per-run watcher for suspensions made from outside the run (off:
            the desk's runs suspend themselves only; see the module's docstring).
        background: jobs that run beside the poll loop until the runner stops, each called with the runner's
            Prefect client and the stop event (``flows.workspace.CaseViewPublisher.loop``).
        heartbeats: Prefect's flow-run heartbeats (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, 180 s by default).
            Off by default: a desk leg lasts seconds, so a heartbeat is one more event at every leg's start
            telling the server what the Running state just told it (about a seventh of a leg's events); the
            reconciler finds runs a dead runner left behind by their age (``CLAIMFLOW_STRANDED_RUN_MINUTES``).
            On for a Prefect automation that watches heartbeats; ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` set in
            the environment is used as it is.
    """

    def __init__(
        self,
        flows: Mapping[UUID, Flow[Any, Any]],
        *,
        limit: int = 10,
        poll_seconds: float = 1.0,
        observe_suspension: bool = False,
        heartbeats: bool = False,
        background: Sequence[Callable[[Any, anyio.Event], Coroutine[Any, Any, None]]] = (),
    ) -> None:
        self.background = list(background)
        self.flows = dict(flows)
        self.heartbeats = heartbeats
        self.limit = limit
        self.poll_seconds = poll_seconds
        self.observe_suspension = observe_suspension
        self.running: set[UUID] = set()
        self.finished = 0
        self._slots = anyio.CapacityLimiter(limit)

    async def run(self, stop: anyio.Event) -> None:
        """Poll and execute until ``stop`` is set; runs in progress are finished before returning.

        One Prefect client (sync and async) is shared by every run this runner executes: a new client per
        run costs a TLS context and a settings read each time, most of the runner's CPU per leg.

        The server's default result storage is read once here (``with_result_storage_pinned``), not by
        Prefect's engine at every leg, where it is a blocking request on this event loop.

        What exists at start-up (Prefect, SQLAlchemy, the flows, about 130,000 objects) is moved out of the
        garbage collector's reach (``gc.freeze``): a full collection then walks only what was made since,
        about 10 ms instead of 130 ms in the middle of an SLA watcher pass.
        """
        explicit = any(name in os.environ for name in HEARTBEAT_VARIABLES)  # an operator's own setting wins
        no_heartbeats = {} if self.heartbeats or explicit else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        with temporary_settings(no_heartbeats), SyncClientContext.get_or_create():
            async with AsyncClientContext.get_or_create() as context, anyio.create_task_group() as group:
                self.flows = await with_result_storage_pinned(self.flows)
                quiet_suspensions()
                gc.freeze()
                for job in self.background:
                    group.start_soon(job, context.client, stop)
                await self._loop(context.client, group, stop)

    async def _loop(self, client: Any, group: anyio.abc.TaskGroup, stop: anyio.Event) -> None:
        while not stop.is_set():
            try:
                await self.poll_once(client, group)
            except (Exception, Abort, Pause):  # the server may be restarting; Prefect's run signals are
                # BaseExceptions, and one escaping here would end the runner with every run it executes
                logger.exception("desk runner: polling the Prefect server failed")
            with anyio.move_on_after(self.poll_seconds):
                await stop.wait()

    async def poll_once(self, client: Any, group: anyio.abc.TaskGroup) -> int:
        """Claim the due runs there is room for and start them; returns how many were started."""
        room = self.limit - len(self.running)
        if room <= 0:
            return 0
        runs: list[FlowRun] = await client.get_scheduled_flow_runs_for_deployments(
            deployment_ids=list(self.flows), scheduled_before=datetime.now(UTC), limit=room
        )
        started = 0
        for run in runs:
            if run.id in self.running or run.deployment_id not in self.flows:
                continue
            if not await claim(client, run.id):
                continue
            self.running.add(run.id)
            group.start_soon(self._execute, run)
            started += 1
        return started

    async def _execute(self, run: FlowRun) -> None:
        flow = self.flows[run.deployment_id]  # type: ignore[index]
        try:
            async with self._slots:
                if self.observe_suspension and flow.isasync:
                    await run_flow_async(flow, flow_run=run, parameters=run.parameters, return_type="state")
                elif self.observe_suspension:
                    await anyio.to_thread.run_sync(
                        lambda: run_flow(flow, flow_run=run, parameters=run.parameters, return_type="state")
                    )
                elif flow.isasync:
                    await run_desk_flow_async(flow, run)
                else:
                    await anyio.to_thread.run_sync(lambda: run_desk_flow_sync(flow, run))
        except (Pause, Abort):
            pass  # suspended (waits for a person) or taken away by the server: nothing is held
        except Exception:
            logger.exception("desk runner: flow run %s (%s) failed", run.name, run.id)
        finally:
            self.running.discard(run.id)
            self.finished += 1

    async def run_until_signalled(self, *, started: Callable[[], None] | None = None) -> None:
        """Run until SIGINT or SIGTERM (``claimflow up``, ``claimflow runner``, the benchmark)."""
        stop = anyio.Event()
        async with anyio.create_task_group() as group:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        stop.set()
                        return

            group.start_soon(on_signal)
            if started is not None:
                started()
            await self.run(stop)
            group.cancel_scope.cancel()


async def claim(client: Any, run_id: UUID) -> bool:
    """Propose the Pending state for a run this runner read as due; True if the server granted it to us.

    Between the read and the proposal another runner may have claimed the run (the server aborts the
    proposal), run it to its next suspension (rejected: the run is Paused) or to its end, or the server may
    ask to wait (a concurrency limit). None of these is an error: the run is someone else's or not due, and
    the next poll reads again. Prefect's ``propose_state`` turns the first two into ``Abort`` and ``Pause``,
    BaseExceptions that would end the runner and every run it executes, and sleeps through a wait inside
    the poll, so the runner reads the server's answer itself.
    """
    response = await client.set_flow_run_state(run_id, Pending())
    if response.status == SetStateStatus.ACCEPT and response.state is not None and response.state.is_pending():
        return True
    logger.debug("desk runner: run %s not claimed (%s: %s)", run_id, response.status.value, response.details)
    return False


async def with_result_storage_pinned(flows: Mapping[UUID, Flow[Any, Any]]) -> dict[UUID, Flow[Any, Any]]:
    """The flows, each given the server's default result storage as read now, unless it names its own.

    Prefect's engine asks the server for its default result storage at every run (a blocking request per
    leg, and one more for a flow that leaves ``persist_result`` unset); a flow that names its storage and
    whether it persists skips both. Local storage (no default block on the server) is named by its folder, a
    default block by the block. ``persist_result`` keeps the value the engine would give it: the flow's own,
    else Prefect's setting, else whether the server names a default block.
    """
    storage = await aget_default_result_storage()
    server_block = getattr(storage, "_block_document_id", None) is not None
    if server_block:
        pinned: Any = storage
    elif isinstance(storage, LocalFileSystem) and storage.basepath:
        pinned = Path(storage.basepath)
    else:
        return dict(flows)
    by_default = get_current_settings().results.persist_by_default or server_block
    return {
        deployment: flow
        if flow.result_storage is not None
        else flow.with_options(
            result_storage=pinned, persist_result=by_default if flow.persist_result is None else flow.persist_result
        )
        for deployment, flow in flows.items()
    }


def drain_prefect_clients() -> None:
    """Send the last logs and events while the server still answers; otherwise Prefect's exit hooks wait on a
    server that is gone and the process never ends."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)

"""``sla-watch`` (every minute) and ``reconcile`` (every minute): what is due, and what has no run.

``sla-watch`` records reminders and escalations in one transaction, then starts an escalation run for each
escalation raised. ``reconcile`` assigns the cases that no handler had room for when they were filed, and
starts the runs that are missing (Prefect was down when a case was filed, an escalation run could not be
created), dead (crashed, cancelled, or finished while the case is open or the escalation undecided) or
stranded (Pending or Running for longer than ``CLAIMFLOW_STRANDED_RUN_MINUTES``: the runner that held it died
mid-leg, and nothing else moves a run on from there; it is marked crashed first): a new run reads the case or
the escalation from the database and carries on where it is. Every open case and undecided escalation is
checked, a page of ``RECONCILE_PAGE`` at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import StateType

from claimflow.secrets import audit_key
from claimflow.settings import get_settings
from flows.common import now as clock
from flows.common import transaction
from models.tables import Case, Escalation
from models.watch import at_most
from tasks.answers import waiting_keys, wake_if_stale
from tasks.audit import CheckpointsTampered, anchor_path, checkpoint, write_anchor
from tasks.escalations import WatchReport, watch_pass
from tasks.outbox import default_config, release_held
from tasks.runs import (
    PREFECT_PAGE,
    RunState,
    crash_if_still,
    open_with_runs,
    record_case_run,
    record_escalation_run,
    run_states,
    start_case_run,
    start_escalation_run,
    undecided_with_runs,
    unstarted,
)
from tasks.workflow import route_deferred

T = TypeVar("T")
LOGGED_LINES = 100  # of a watcher pass's lines, in the run's log (each line is a log record sent to Prefect)
RECONCILE_PAGE = PREFECT_PAGE  # open cases whose runs are checked with one request to the Prefect server


@task(name="watch-pass", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
async def watch_once(at: datetime) -> WatchReport:
    return await transaction(watch_pass, now=at)


@task(name="assign-deferred", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
async def assign_deferred(at: datetime) -> list[str]:
    return await transaction(route_deferred, now=at)


@task(name="start-case-run", task_run_name="{case.number}", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
async def start_case(case: Case) -> str:
    run_id = await start_case_run(case)
    await transaction(record_case_run, case_id=case.id, run_id=run_id)
    return run_id


@task(name="start-escalation-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
async def start_escalation(escalation: Escalation, case: Case) -> str:
    run_id = await start_escalation_run(escalation, case)
    await transaction(record_escalation_run, escalation_id=escalation.id, run_id=run_id)
    return run_id


@flow(name="sla-watch", persist_result=False)
async def sla_watch(now: datetime | None = None) -> dict[str, Any]:
    """One watcher pass at ``now`` (default: the current time): reminders, escalations, escalation runs."""
    at = now or clock()
    report = await watch_once(at)
    logger = get_run_logger()
    for line in at_most(report.lines, LOGGED_LINES):
        logger.info(line)
    for line in at_most(report.failures, LOGGED_LINES):  # the pass went on without them: someone must look
        logger.error(line)
    if report.escalations:
        pending = await transaction(lambda session: unstarted(session).escalations)
        for escalation, case in pending:
            if escalation.id in report.escalations:
                await start_escalation(escalation, case)
    return {"steps_checked": report.steps_checked, "reminders": len(report.reminders),
            "escalations": len(report.escalations), "failures": len(report.failures)}  # fmt: skip


@flow(name="reconcile", persist_result=False)
async def reconcile(now: datetime | None = None) -> dict[str, int]:
    """Assign cases nobody could take when filed, send held messages that now pass (``release_held``: the desk's
    phone set since), and start every run that should exist and does not (missing,
    dead while its case is open, or stranded: held by a runner that died mid-leg). ``now`` (default: the current
    time) is when a held run is judged stranded."""
    logger = get_run_logger()
    at = now or clock()
    assigned = await assign_deferred(at)
    if assigned:
        logger.info("assigned %d case(s) that waited for a handler with room", len(assigned))
    settings = get_settings()
    try:  # the audit log's heads, signed, and the newest one kept outside the database
        signed = await transaction(checkpoint, key=audit_key(settings), now=at, anchor=anchor_path(settings.data_dir))
    except CheckpointsTampered as tampered:  # the rest of the pass goes on; the log says it every pass
        logger.error("audit log: %s; run 'claimflow audit verify'", tampered)
        signed = None
    if signed is not None:
        write_anchor(anchor_path(settings.data_dir), signed)
    released = await transaction(release_held, now=at, config=default_config())
    if released.withdrawn:
        logger.info("withdrew %d held letter(s) their cases' decisions overtook", len(released.withdrawn))
    if released.queued:
        logger.info("sent %d held message(s) that now pass (claimflow outbox list --status held: the rest)",
                    len(released.queued))  # fmt: skip
    missing = await transaction(unstarted)
    started = 0
    fresh: set[str] = set()  # the runs this pass starts: never judged stranded by it, whatever ``now`` says
    for case in missing.cases:
        fresh.add(await start_case(case))
        started += 1
    for escalation, case in missing.escalations:
        fresh.add(await start_escalation(escalation, case))
        started += 1
    stranded_after = timedelta(minutes=get_settings().stranded_run_minutes)
    cases = await _replace_dead_runs(
        lambda after_id: transaction(open_with_runs, after_id=after_id, limit=RECONCILE_PAGE),
        lambda case: (case.id, case.flow_run_id, case.number),
        start_case,
        now=at,
        stranded_after=stranded_after,
        on_paused=_wake_stale,
        fresh=fresh,
    )
    escalations = await _replace_dead_runs(
        lambda after_id: transaction(undecided_with_runs, after_id=after_id, limit=RECONCILE_PAGE),
        lambda pair: (pair[0].id, pair[0].flow_run_id, f"{pair[1].number} escalation {pair[0].id}"),
        lambda pair: start_escalation(*pair),
        now=at,
        stranded_after=stranded_after,
        fresh=fresh,
    )
    return {"assigned": len(assigned), "started": started, "restarted": cases[0] + escalations[0],
            "checked": cases[1] + escalations[1], "released": len(released.queued), "woken": cases[2]}  # fmt: skip


async def _wake_stale(paused: list[tuple[Case, RunState]]) -> int:
    """Wake the suspended case runs whose form the case has moved past (the customer's last missing document
    restarted the clock while the run waited on the documents form), if the web app could not; the rest wait."""
    logger = get_run_logger()
    keys = await transaction(waiting_keys, case_ids=[case.id for case, _ in paused if case.id is not None])
    woken = 0
    for case, state in paused:
        now_waits = keys.get(case.id or 0, set())
        stale = state.pause_key is not None and state.pause_key not in now_waits
        if stale and await wake_if_stale(str(case.flow_run_id), now_waits):
            logger.info("%s: its run waited on %s, which the case has moved past: woken", case.number, state.pause_key)
            woken += 1
    return woken


async def _replace_dead_runs(
    page_after: Callable[[int], Awaitable[list[T]]],
    run_of: Callable[[T], tuple[int | None, str | None, str]],
    start: Callable[[T], Awaitable[str]],
    *,
    now: datetime,
    stranded_after: timedelta,
    on_paused: Callable[[list[tuple[T, RunState]]], Awaitable[int]] | None = None,
    fresh: set[str] | None = None,
) -> tuple[int, int, int]:
    """Walk the open cases (or undecided escalations) a page at a time and start a new run for each whose run is
    dead, unknown to the server, or stranded (marked crashed first); the page's suspended runs go to
    ``on_paused``. Returns (restarted, checked, what ``on_paused`` counted).

    ``fresh``: runs the same pass started a moment ago, left alone. A runner may already hold one (Pending), and a
    pass made "as if later" (``now`` given) would judge it stranded, mark it crashed and start another while the
    runner went on with the first: two runs waiting for one decision (seen in the chaos test)."""
    logger = get_run_logger()
    restarted = checked = after_id = counted = 0
    while page := await page_after(after_id):
        after_id = run_of(page[-1])[0] or after_id
        checked += len(page)
        states = await run_states([run_id for item in page if (run_id := run_of(item)[1])])
        if on_paused is not None:
            paused = [
                (item, state)
                for item in page
                if (state := states.get(run_of(item)[1] or "")) is not None and state.type == StateType.PAUSED
            ]
            counted += await on_paused(paused) if paused else 0  # fmt: skip
        for item in page:
            _, run_id, label = run_of(item)
            if fresh is not None and run_id in fresh:
                continue
            state = states.get(run_id or "")
            if state is not None and state.stranded(now=now, after=stranded_after):
                if not await crash_if_still(run_id or "", state, f"stranded: {state.type.value} over {stranded_after}"):
                    continue  # it moved meanwhile: alive after all, or another reconciler took it
                logger.warning("%s: its run %s had been %s since %s, longer than %s: its runner is gone; marked "
                               "crashed, starting a new one", label, run_id, state.type.value, state.since,
                               stranded_after)  # fmt: skip
            elif state is not None and not state.dead():
                continue
            else:
                logger.warning("%s: its run %s is %s; starting a new one", label, run_id,
                               state.type.value if state else "unknown to the server")  # fmt: skip
            await start(item)
            restarted += 1
    return restarted, checked, counted

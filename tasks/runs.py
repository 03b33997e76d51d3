"""Starting and finding the Prefect flow runs that drive cases and escalations (the outside world: the
Prefect API). The database records which run drives what; the reconciler starts what is missing or dead."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.deployments.flow_runs import arun_deployment
from prefect.states import Crashed
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from claimflow.db import session_scope
from models.errors import NotFound
from models.tables import Case, Escalation
from models.watch import escalation_run_name

DEAD = {StateType.FAILED, StateType.CRASHED, StateType.CANCELLED, StateType.COMPLETED}
HELD = {StateType.RUNNING, StateType.PENDING}  # a runner holds the run: stranded if it has died meanwhile
ESCALATION_DEPLOYMENT = "escalation/escalation"


def case_deployment(kind: str) -> str:
    return f"{kind}-process/{kind}-process"


def case_tags(case: Case) -> list[str]:
    """Tags for the operations UI: kind, channel, product line, priority (never personal data)."""
    tags = [f"kind:{case.kind}", f"channel:{case.channel}", f"priority:{case.priority}"]
    if case.product_line:
        tags.append(f"product:{case.product_line}")
    return tags


def run_key(what: str, row: Case | Escalation) -> str | None:
    """The idempotency key the next run of a case (or an escalation) is created under: its first run, or the one
    that replaces its current ``flow_run_id``. The intake API's launcher and the reconciler both start a case's
    first run (the reconciler when the launcher has not yet, or never will: the API was killed), as the watcher
    and the reconciler both start an escalation's; under one key the Prefect server creates it once and gives both
    the same run. A surge of 1,000 claims had left 402 cases with two or three runs, each waiting for the same
    decision (bench/surge.py). The key is the row's own random ``run_key`` (ids and times repeat between databases
    the same Prefect server has seen); a row from before it had one gets none."""
    if not row.run_key:
        return None
    return f"claimflow:{what}:{row.run_key}:{row.flow_run_id or 'first'}"


async def start_case_run(case: Case) -> str:
    """Create the case's flow run (named by its number, taking only its id), once per ``run_key``; returns the
    run id."""
    run = await arun_deployment(
        case_deployment(case.kind),
        parameters={"case_id": case.id},
        flow_run_name=case.number,
        tags=case_tags(case),
        timeout=0,
        idempotency_key=run_key("case", case),
        as_subflow=False,  # a case or escalation run stands on its own (subflows cannot be suspended)
    )
    return str(run.id)


async def start_escalation_run(escalation: Escalation, case: Case) -> str:
    run = await arun_deployment(
        ESCALATION_DEPLOYMENT,
        parameters={"escalation_id": escalation.id},
        flow_run_name=escalation_run_name(case.number, level=escalation.level, ladder_round=escalation.round),
        tags=[*case_tags(case), f"escalation:level-{escalation.level}"],
        timeout=0,
        idempotency_key=run_key("escalation", escalation),
        as_subflow=False,  # a case or escalation run stands on its own (subflows cannot be suspended)
    )
    return str(run.id)


@dataclass(frozen=True)
class RunState:
    """Where a flow run is, as the Prefect server says: its state's type and since when."""

    type: StateType
    since: datetime | None = None
    pause_key: str | None = None  # what a suspended run waits for: the decision key of its form

    def dead(self) -> bool:
        return self.type in DEAD

    def stranded(self, *, now: datetime, after: timedelta) -> bool:
        """Held by a runner (Pending or Running) for longer than any leg takes: the runner died mid-leg (killed,
        restarted, its machine lost) and nobody else will move the run on. A case leg is a few transactions:
        seconds, or minutes while the database is away and the tasks retry."""
        return self.type in HELD and self.since is not None and now - self.since >= after


PREFECT_PAGE = 200  # the most runs the Prefect server returns for one request (PREFECT_SERVER_API_DEFAULT_LIMIT)


async def run_states(run_ids: list[str]) -> dict[str, RunState | None]:
    """The state of each run id (None where the server does not know the run), in requests of ``PREFECT_PAGE``."""
    found: dict[str, RunState] = {}
    async with get_client() as client:
        for start in range(0, len(run_ids), PREFECT_PAGE):
            batch = run_ids[start : start + PREFECT_PAGE]
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(r) for r in batch])), limit=len(batch)
            )
            found.update(
                (str(r.id), RunState(r.state.type, r.state.timestamp, r.state.state_details.pause_key))
                for r in runs
                if r.state
            )
    return {r: found.get(r) for r in run_ids}


async def crash_if_still(run_id: str, held: RunState, message: str) -> bool:
    """Mark a stranded run crashed, unless it has moved since ``held`` was read (the state read again first,
    and the change proposed under the server's rules, not forced); True if the run is now crashed. A run
    that suspended, finished or was taken up again meanwhile is left as it is."""
    async with get_client() as client:
        run = await client.read_flow_run(UUID(run_id))
        if (
            run.state is None
            or RunState(run.state.type, run.state.timestamp, run.state.state_details.pause_key) != held
        ):
            return False
        result: Any = await client.set_flow_run_state(UUID(run_id), Crashed(message=message))
    return result.state is not None and result.state.type == StateType.CRASHED


@dataclass
class Unstarted:
    cases: list[Case] = field(default_factory=list)
    escalations: list[tuple[Escalation, Case]] = field(default_factory=list)


def unstarted(session: Session, *, limit: int = 200) -> Unstarted:
    """Open cases and undecided escalations that no run drives yet."""
    cases = list(
        session.exec(select(Case).where(col(Case.flow_run_id).is_(None), col(Case.closed_at).is_(None)).limit(limit))
    )
    escalations = []
    for escalation in session.exec(
        select(Escalation).where(col(Escalation.flow_run_id).is_(None), col(Escalation.decision).is_(None)).limit(limit)
    ):
        case = session.get(Case, escalation.case_id)
        if case is not None:
            escalations.append((escalation, case))
    return Unstarted(cases, escalations)


def open_with_runs(session: Session, *, after_id: int = 0, limit: int = 500) -> list[Case]:
    """Open cases that have a run, in id order from ``after_id`` (a page: the reconciler walks all of them)."""
    return list(
        session.exec(
            select(Case)
            .where(col(Case.flow_run_id).is_not(None), col(Case.closed_at).is_(None), col(Case.id) > after_id)
            .order_by(col(Case.id))
            .limit(limit)
        )
    )


def undecided_with_runs(session: Session, *, after_id: int = 0, limit: int = 500) -> list[tuple[Escalation, Case]]:
    """Undecided escalations that have a run, with their cases, in id order from ``after_id`` (a page)."""
    rows = session.exec(
        select(Escalation, Case)
        .join(Case, col(Case.id) == col(Escalation.case_id))
        .where(
            col(Escalation.flow_run_id).is_not(None), col(Escalation.decision).is_(None), col(Escalation.id) > after_id
        )
        .order_by(col(Escalation.id))
        .limit(limit)
    )
    return [(escalation, case) for escalation, case in rows]


def record_case_run(session: Session, *, case_id: int, run_id: str | None) -> None:
    case = session.get(Case, case_id)
    if case is not None:
        case.flow_run_id = run_id
        session.add(case)


def record_escalation_run(session: Session, *, escalation_id: int, run_id: str | None) -> None:
    escalation = session.get(Escalation, escalation_id)
    if escalation is not None:
        escalation.flow_run_id = run_id
        session.add(escalation)


async def launch_case(engine: Engine, *, case_id: int) -> str:
    """Start the run of a freshly committed case and record it (intake calls this after its commit).

    Raises whatever the Prefect client raises when the server cannot be reached: the caller reports it and
    the reconciler starts the run later.
    """
    with Session(engine) as session:
        case = session.get(Case, case_id)
        if case is None:
            raise NotFound(f"no case with id {case_id}")
        session.expunge(case)
    if case.flow_run_id is not None:  # the reconciler was first
        return case.flow_run_id
    run_id = await start_case_run(case)
    with session_scope(engine) as session:
        record_case_run(session, case_id=case_id, run_id=run_id)
    return run_id

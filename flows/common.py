"""What every claimflow flow shares: the engine and the desk rules of this process, and a thread hop.

Flows are async so that one long-lived process can drive many case runs at once (``flows.runner``); the
database work itself is synchronous and runs in a worker thread, one transaction per task.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import anyio
import prefect.flow_runs
import prefect.states
from prefect.client.schemas.objects import State
from prefect.flow_runs import asuspend_flow_run
from sqlalchemy import Engine
from sqlmodel import Session

from claimflow.db import get_engine, session_scope
from claimflow.settings import get_settings
from tasks.workflow import Desk

T = TypeVar("T")
SUSPEND_TIMEOUT = 366 * 24 * 3600  # deadlines live in the database (sla-watch), not in suspend timeouts
MAX_LEGS = 200  # a case that moves more often than this in one run has a bug, not a story
REFUSED = "refused: "
"""The start of the message of a decision task that the desk refused (wrong code, role, four eyes...)."""


def not_refused(_task: Any, _run: Any, state: State[Any]) -> bool:
    """Retry a failed decision only when it failed (the database, a bug), not when the desk refused it."""
    return not (state.message or "").startswith(REFUSED)


def refused_again(state: State[Any]) -> bool:
    """The decision task ended Failed because the desk refused the answer: the run asks again."""
    return state.is_failed() and (state.message or "").startswith(REFUSED)


def engine() -> Engine:
    return get_engine(get_settings().resolved_database_url)


def desk() -> Desk:
    settings = get_settings()
    return Desk.of(settings)


def now() -> datetime:
    return datetime.now(UTC)


def _in_transaction(work: Callable[..., T], **kwargs: Any) -> T:
    with session_scope(engine()) as session:
        return work(session, **kwargs)


async def transaction(work: Callable[..., T], **kwargs: Any) -> T:
    """Run ``work(session, **kwargs)`` in one committed transaction, in a worker thread."""
    return await anyio.to_thread.run_sync(partial(_in_transaction, work, **kwargs))


__all__ = ["MAX_LEGS", "SUSPEND_TIMEOUT", "Session", "desk", "engine", "now", "transaction"]


# --- suspending with a message --------------------------------------------------------------------------------

_SUSPEND_MESSAGE: ContextVar[str | None] = ContextVar("claimflow_suspend_message", default=None)


def _suspended(*args: Any, **kwargs: Any) -> State[Any]:
    message = _SUSPEND_MESSAGE.get()
    return prefect.states.Suspended(*args, **({"message": message, **kwargs} if message else kwargs))


# Prefect's ``asuspend_flow_run`` takes no message for the Suspended state it proposes; it builds that state with
# the ``Suspended`` of its own module, looked up at the call. This one adds the message ``suspend_for`` set for
# the current task (a context variable: runs suspending at the same moment in one runner each keep their own).
prefect.flow_runs.Suspended = _suspended


async def suspend_for(form: Any, *, key: str, message: str) -> Any:
    """Suspend the current run until someone fills ``form`` under ``key``, with ``message`` as the state message
    the run's page shows (what the run waits for, or why the last answer was refused)."""
    token = _SUSPEND_MESSAGE.set(message[:1000])
    try:
        return await asuspend_flow_run(wait_for_input=form, key=key, timeout=SUSPEND_TIMEOUT)
    finally:
        _SUSPEND_MESSAGE.reset(token)


def waiting_message(subject: str, waits_for: str, refused: str | None) -> str:
    """``CLM-2026-000123 waits for claim_review``; after a refused answer, the refusal first, as the page's
    state message: ``CLM-2026-000123: decision refused: the approval code is wrong ...; waits for a new answer``."""
    if refused:
        return f"{subject}: decision {refused}; waits for a new answer ({waits_for})"
    return f"{subject} waits for {waits_for}"

"""The case flows: one run per case (``claim-process``, ``complaint-process``, ``inquiry-process``).

A run is a loop over the case's state in the database: an automatic move, or a suspension until a person
decides (the run's process and thread are gone while it waits), or the end. Restarted from its first line,
a run reads where the case is and carries on; decisions already applied are not applied again (each is
keyed by case, step and attempt, and the database refuses a key that was answered).

The moves and the decisions are Prefect tasks (they change the case: each shows in the UI with its retries);
reading the case is not. Reads are most of a run's steps (four of an inquiry's six), and every task run
costs the Prefect server three state events and their task-run writes: as plain calls (with the same
retries, in code) they took about a quarter of the server's CPU per leg off (``bench/flow_runs.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Failed

from flows.common import (
    MAX_LEGS,
    REFUSED,
    desk,
    not_refused,
    now,
    refused_again,
    suspend_for,
    transaction,
    waiting_message,
)
from flows.inputs import FORMS, form_for
from models.errors import ClaimflowError
from models.plan import Ask, Auto, Finished
from tasks.workflow import CaseView, DecisionResult, advance, decide, view

READ_RETRY_DELAYS = (1.0, 5.0, 20.0)  # seconds: the database may be restarting or failing over


async def read_case(case_id: int, *, logger: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> CaseView:
    """Where the case is and its next move: one transaction, retried like the tasks (not a task run itself).

    ``view`` writes only to open the step of a decision that has none yet, once (the step is found the
    next time), so a retry cannot do anything twice. The desk's typed errors (no such case, no next move)
    are not retried: they would fail the same way.
    """
    for delay in (*READ_RETRY_DELAYS, None):
        try:
            return await transaction(view, desk=desk(), case_id=case_id, now=now())
        except ClaimflowError:
            raise
        except Exception as exc:
            if delay is None:
                raise
            if logger is not None:
                logger.warning("reading case %s failed (%r); again in %.0f s", case_id, exc, delay)
            await anyio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


@task(name="automatic-move", task_run_name="{action}", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 20])
async def automatic_move(case_id: int, action: str) -> None:
    await transaction(advance, desk=desk(), case_id=case_id, action=action, now=now())


@task(name="apply-decision", task_run_name="{key}", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 20],
      retry_condition_fn=not_refused)  # fmt: skip
async def apply_decision(case_id: int, key: str, answer: dict[str, Any]) -> DecisionResult | State[Any]:
    """Apply a person's answer. A refused answer (wrong code, role, four eyes, an answer the rules do not allow)
    ends the task run Failed with the reason as its message, so the run's page does not show it as a success;
    the refusal is recorded on the case and the run asks again."""
    result = await transaction(decide, desk=desk(), case_id=case_id, key=key, answer=answer, now=now())
    if result.refused:
        return Failed(message=f"{REFUSED}{result.refused}")
    return result


async def drive_case(case_id: int) -> str:
    """Drive the case until it is closed, suspending whenever a person must decide."""
    logger = get_run_logger()
    refused: str | None = None  # the last answer's refusal, while the run asks again
    for _ in range(MAX_LEGS):
        current = await read_case(case_id, logger=logger)
        move = current.move
        if isinstance(move, Finished):
            logger.info("%s is closed", current.number)
            return current.status
        if isinstance(move, Auto):
            await automatic_move(case_id, move.action)
            continue
        assert isinstance(move, Ask) and current.waiting_key is not None
        form = form_for(FORMS[move.input_kind], desk().settings.default_language).with_initial_data(
            description=current.description
        )
        logger.info("%s waits for %s (%s)", current.number, move.input_kind.value, current.waiting_key)
        message = waiting_message(current.number, move.input_kind.value, refused)
        answer = await suspend_for(form, key=current.waiting_key, message=message)
        state: State[Any] = await apply_decision(  # type: ignore[misc]  # an async task's call is awaited
            case_id, current.waiting_key, answer.model_dump(mode="json"), return_state=True
        )
        refused = state.message if refused_again(state) else None
        if refused:
            logger.warning("%s: decision %s; asking again", current.number, state.message)
        else:  # applied, or failed for another reason: then the run fails and the reconciler restarts it
            await state.aresult()
    raise RuntimeError(f"case {case_id} moved {MAX_LEGS} times in one run without closing")


@flow(name="claim-process", persist_result=False)
async def claim_process(case_id: int) -> str:
    """Drive a claim: review, documents, investigation, decision (second approval), payment, feedback."""
    return await drive_case(case_id)


@flow(name="complaint-process", persist_result=False)
async def complaint_process(case_id: int) -> str:
    """Drive a complaint: independent investigation, mediation or outcome, referral, feedback."""
    return await drive_case(case_id)


@flow(name="inquiry-process", persist_result=False)
async def inquiry_process(case_id: int) -> str:
    """Drive an inquiry to its answer."""
    return await drive_case(case_id)


CASE_FLOWS = {"claim": claim_process, "complaint": complaint_process, "inquiry": inquiry_process}

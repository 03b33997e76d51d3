"""The escalation flow: one run per raised escalation, suspended until a supervisor (level 1) or a manager
(level 2 and above) decides: extend the deadline, reassign, or take over."""

from __future__ import annotations

from typing import Any

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
from flows.inputs import EscalationDecision, form_for
from tasks.escalations import EscalationResult, EscalationView, decide_escalation, escalation_view


@task(name="read-escalation", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 20])
async def read_escalation(escalation_id: int) -> EscalationView:
    return await transaction(escalation_view, escalation_id=escalation_id, desk=desk(), now=now())


@task(name="apply-escalation-decision", task_run_name="{key}", cache_policy=NO_CACHE, retries=3,
      retry_delay_seconds=[1, 5, 20], retry_condition_fn=not_refused)  # fmt: skip
async def apply_escalation_decision(
    escalation_id: int, key: str, answer: dict[str, Any]
) -> EscalationResult | State[Any]:
    """Apply a supervisor's or manager's answer; a refused one ends the task run Failed with the reason (as a
    case's decision does), so the run's page does not show it as a success."""
    result = await transaction(
        decide_escalation, desk=desk(), escalation_id=escalation_id, key=key, answer=answer, now=now()
    )
    if result.refused:
        return Failed(message=f"{REFUSED}{result.refused}")
    return result


@flow(name="escalation", persist_result=False)
async def escalation(escalation_id: int) -> str:
    """Wait for the decision on one escalation; a superseded or decided escalation ends the run."""
    logger = get_run_logger()
    refused: str | None = None  # the last answer's refusal, while the run asks again
    for _ in range(MAX_LEGS):
        current = await read_escalation(escalation_id)
        if not current.open:
            return "decided"
        form = form_for(EscalationDecision, desk().settings.default_language).with_initial_data(
            description=current.description
        )
        logger.info("%s level %s waits for a %s (%s)", current.case_number, current.level, current.role, current.key)
        message = waiting_message(f"{current.case_number} level {current.level}", f"a {current.role}", refused)
        answer = await suspend_for(form, key=current.key, message=message)
        state: State[Any] = await apply_escalation_decision(  # type: ignore[misc]  # an async task's call is awaited
            escalation_id, current.key, answer.model_dump(mode="json"), return_state=True
        )
        refused = state.message if refused_again(state) else None
        if refused:
            logger.warning("%s: escalation decision %s; asking again", current.case_number, state.message)
        else:
            await state.aresult()
    raise RuntimeError(f"escalation {escalation_id} asked {MAX_LEGS} times without a decision")

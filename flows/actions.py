"""What a supervisor or a handler starts from the Prefect UI when no run is waiting for them: Deployments >
``reassign-cases`` (or ``extend-step``, ``release-message``) > Run > Custom run, fill in the form, Submit. The
desk runner executes the run at once; its page says what was done, or, Failed, why it was refused (a refused
action changes nothing).

The same as ``claimflow staff reassign``, ``claimflow case extend`` and ``claimflow outbox release``, with the
same checks: the approval code, the role, four eyes.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Failed

from flows.common import REFUSED, desk, now, transaction
from models.caseview import office_time
from models.errors import ClaimflowError
from tasks.extensions import extend_step
from tasks.letters import release_case_letters
from tasks.reassign import reassign_cases


async def _act(work: Any, what: str, **kwargs: Any) -> Any:
    """Run one desk action in a transaction; a refusal (code, role, four eyes, bad input) ends the run Failed with
    the reason as its state message, so the run's page says it."""
    try:
        return await transaction(work, desk=desk(), now=now(), **kwargs)
    except ClaimflowError as refused:
        get_run_logger().error("%s refused: %s", what, refused)
        return Failed(message=f"{REFUSED}{refused}")


@flow(name="reassign-cases", persist_result=False, flow_run_name="reassign {from_staff} to {to_staff}")
async def reassign_cases_flow(
    from_staff: str, to_staff: str, by: str, approval_code: str, reason: str, case_number: str = ""
) -> dict[str, Any] | State[Any]:
    """Move a person's open cases (leave, illness), or one of them, to another handler; the new handler is told.

    Args:
        from_staff: The username whose cases move, e.g. li.wei.
        to_staff: The username of the handler who takes them, e.g. wang.fang.
        by: You: a supervisor or manager (not the person whose cases move).
        approval_code: The 6-digit code your authenticator app shows now.
        reason: Why (the new handler and the audit log read it), e.g. On leave until 12 January.
        case_number: Only this case (empty: all their open cases).
    """
    done = await _act(reassign_cases, "reassignment", from_username=from_staff, to_username=to_staff, by=by,
                      code=approval_code, reason=reason, number=case_number.strip() or None)  # fmt: skip
    if isinstance(done, State):
        return done
    logger = get_run_logger()
    logger.info("moved to %s: %s", to_staff, ", ".join(done.moved) or "none")
    for number, why in done.skipped:
        logger.warning("%s stays with %s: %s", number, from_staff, why)
    return {"moved": done.moved, "skipped": [number for number, _ in done.skipped]}


@flow(name="extend-step", persist_result=False, flow_run_name="extend {case_number}")
async def extend_step_flow(
    case_number: str, by: str, approval_code: str, reason: str, step: str = "", extension: str = ""
) -> dict[str, Any] | State[Any]:
    """Extend a step's deadline before it passes, under the packs' extension rules; the customer is told the new
    date and the reason at once.

    Args:
        case_number: The case, e.g. CLM-2026-000001.
        by: You: the case's handler, or a supervisor or manager (who approves where the rule asks for approval).
        approval_code: The 6-digit code your authenticator app shows now.
        reason: Why more time is needed (the customer reads it).
        step: The step (empty: the open one due first).
        extension: The pack's extension rule (empty: its first, e.g. supervisor-extension).
    """
    done = await _act(extend_step, "extension", number=case_number, by=by, code=approval_code, reason=reason,
                      step_name=step.strip() or None, extension=extension.strip() or None)  # fmt: skip
    if isinstance(done, State):
        return done
    settings = desk().settings
    tz = ZoneInfo(settings.office_timezone)
    due = f"{office_time(done.due, tz=tz, language=settings.default_language)} ({tz.key})"
    get_run_logger().info("%s: %s extended (%s) to %s; the customer is told", done.number, done.step, done.extension,
                          due)  # fmt: skip
    return {"case": done.number, "step": done.step, "due": done.due.isoformat()}


@flow(name="release-message", persist_result=False, flow_run_name="release {case_number}")
async def release_message_flow(
    case_number: str, by: str, approval_code: str, outbox_id: int = 0, values: dict[str, str] | None = None
) -> dict[str, Any] | State[Any]:
    """Do a case's fix_wording task: check its held letter again (after the template or the wording rules were
    fixed), or give the value it lacked; it is sent when it passes, and the task is done.

    Args:
        case_number: The case whose letter was held back (its page shows the fix_wording step).
        by: You: the case's handler, or a supervisor or manager.
        approval_code: The 6-digit code your authenticator app shows now.
        outbox_id: The held message (claimflow outbox list --status held); 0: every held letter of the case.
        values: With outbox_id: the values it lacked, e.g. {"clause": "4.2"} (only values the letter has).
    """
    done = await _act(release_case_letters, "release", number=case_number, by=by, code=approval_code,
                      outbox_id=outbox_id or None, edits=values or None)  # fmt: skip
    if isinstance(done, State):
        return done
    logger = get_run_logger()
    for row in done.queued:
        logger.info("outbox #%s (%s) passes the check: sent", row.id, row.template)
    for row, why in done.still_held:
        logger.warning("outbox #%s (%s) still held: %s", row.id, row.template, why)
    for row in done.withdrawn:
        logger.info("outbox #%s (%s) withdrawn: %s", row.id, row.template, row.last_error)
    if done.still_held and not done.queued:
        return Failed(message=f"still held: {done.still_held[0][1]}")
    return {"sent": [r.id for r in done.queued], "still_held": [r.id for r, _ in done.still_held]}

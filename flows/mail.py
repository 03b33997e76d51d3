"""E-mail intake: the ``mail-intake`` flow and its deployment.

Each run takes the intake mailbox chunk after chunk (``tasks.mail.poll``) until nothing unseen is left or its budget
(the schedule's interval) is spent: every unseen mail is filed as a new case (the new cases' mails read one after
the other together, in one transaction), added to the case it answers, or recorded as skipped or rejected, and
flagged seen only after that committed. The outbox is told after each chunk that acknowledgements are queued;
the new cases' runs are started once the mail is in (the reconciler starts what the budget leaves, or what
Prefect could not start). Serve it with::

    python -m flows.mail          # or: mail_intake_deployment() passed to prefect.serve(...)

Parameters, results and logs carry counts and case ids only: no addresses, no subjects, no Message-IDs.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

import anyio
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import desk, engine
from flows.common import now as clock

DEPLOYMENT_NAME = "mail-intake"


@task(name="poll-mailbox", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60])
async def poll_mailbox(limit: int | None = None) -> dict[str, Any]:
    """One poll of the configured mailbox; returns the counts and the ids of the cases filed.

    Retried when the mailbox or the database fails: mails already taken are recognised by their Message-ID.
    """
    from tasks.mail import poll

    report = await anyio.to_thread.run_sync(partial(poll, engine(), desk(), now=clock, limit=limit))
    return {"counts": report.counts, "new_case_ids": report.new_case_ids}


@flow(name="mail-intake", persist_result=False)
async def mail_intake(limit: int | None = None, budget_seconds: float | None = None) -> dict[str, Any]:
    """Read new mail into cases, wake the outbox for the acknowledgements, start the new cases' runs.

    The mailbox is taken chunk after chunk (a ``poll-mailbox`` task run each) until nothing unseen is left or
    ``budget_seconds`` (default ``CLAIMFLOW_MAIL_POLL_SECONDS``, the deployment's interval unless it was given
    another) have passed: in a surge
    the mail is not read at one chunk a minute. The outbox is woken after each chunk. The new cases' runs are
    started once the mail is in, while the budget lasts; the reconciler starts the rest (their deadlines, their
    acknowledgements and the worklists do not wait for a run).

    Args:
        limit: mails taken per chunk at most; default ``CLAIMFLOW_MAIL_BATCH_SIZE``.
        budget_seconds: how long this run takes mail and starts runs before it leaves the rest to the next run
            and the reconciler.
    """
    from tasks.mail import more_unseen

    logger = get_run_logger()
    settings = desk().settings
    if not settings.mail_imap_host:
        logger.info("e-mail intake is not configured (CLAIMFLOW_MAIL_IMAP_HOST is unset): nothing to do")
        return {"counts": {}, "new_case_ids": []}
    chunk = limit or settings.mail_batch_size
    deadline = anyio.current_time() + (budget_seconds if budget_seconds is not None else settings.mail_poll_seconds)
    counts: Counter[str] = Counter()
    new_case_ids: list[int] = []
    while True:
        result = await poll_mailbox(chunk)
        counts.update(result["counts"])
        new_case_ids += result["new_case_ids"]
        if result["new_case_ids"]:
            _wake_outbox(len(result["new_case_ids"]), logger)
        if not more_unseen(result["counts"], limit=chunk) or anyio.current_time() >= deadline:
            break
    logger.info("mail: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    await _start_runs(new_case_ids, deadline, logger)
    return {"counts": dict(counts), "new_case_ids": new_case_ids}


async def _start_runs(case_ids: list[int], deadline: float, logger: Any) -> None:
    """Start the new cases' runs while the budget lasts (at least one); the reconciler starts the rest."""
    from tasks.runs import launch_case

    for done, case_id in enumerate(case_ids):
        if done and anyio.current_time() >= deadline:
            logger.info("%d new case(s)' runs left to the reconciler (it starts them on its next passes)",
                        len(case_ids) - done)  # fmt: skip
            return
        try:
            await launch_case(engine(), case_id=case_id)
        except Exception as exc:  # Prefect unreachable or refusing: the reconciler starts the run later
            logger.warning("case %s: run not started (%s); the reconciler will start it", case_id, type(exc).__name__)


def _wake_outbox(count: int, logger: Any) -> None:
    from flows.delivery import announce_queued

    try:
        announce_queued(count)
    except Exception as exc:  # best effort: the outbox's own schedule sends the acknowledgements anyway
        logger.warning("outbox not woken (%s); its schedule will send the acknowledgements", type(exc).__name__)


def mail_intake_deployment(interval_seconds: int | None = None) -> Any:
    """The ``mail-intake`` deployment: every ``CLAIMFLOW_MAIL_POLL_SECONDS``, one run at a time.

    Returns a ``RunnerDeployment`` for ``prefect.serve(...)``; starts nothing by itself.
    """
    from claimflow.settings import get_settings

    interval = interval_seconds or get_settings().mail_poll_seconds
    return mail_intake.to_deployment(
        name=DEPLOYMENT_NAME,
        interval=interval,
        concurrency_limit=1,
        description="Read the intake mailbox: file new cases, add replies to their cases, skip automatic mail.",
    )


if __name__ == "__main__":  # pragma: no cover - the serve process
    from prefect import serve

    serve(mail_intake_deployment())

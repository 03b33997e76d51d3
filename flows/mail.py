"""E-mail intake: the ``mail-intake`` flow and its deployment.

Each run polls the intake mailbox once (``tasks.mail.poll``): every unseen mail is filed as a new case, added
to the case it answers, or recorded as skipped or rejected, one transaction per mail, and flagged seen only
after its transaction committed. Then the new cases' runs are started (if Prefect cannot start one, the
reconciler does within a minute) and the outbox is told that acknowledgements are queued. Serve it with::

    python -m flows.mail          # or: mail_intake_deployment() passed to prefect.serve(...)

Parameters, results and logs carry counts and case ids only: no addresses, no subjects, no Message-IDs.
"""

from __future__ import annotations

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
async def mail_intake(limit: int | None = None) -> dict[str, Any]:
    """Read new mail into cases, start the new cases' runs, and wake the outbox for the acknowledgements.

    Args:
        limit: mails taken in this run at most; default ``CLAIMFLOW_MAIL_BATCH_SIZE`` (the next run takes the
            rest).
    """
    from tasks.runs import launch_case

    logger = get_run_logger()
    if not desk().settings.mail_imap_host:
        logger.info("e-mail intake is not configured (CLAIMFLOW_MAIL_IMAP_HOST is unset): nothing to do")
        return {"counts": {}, "new_case_ids": []}
    result = await poll_mailbox(limit)
    logger.info("mail: %s", ", ".join(f"{k} {v}" for k, v in result["counts"].items()))
    for case_id in result["new_case_ids"]:
        try:
            await launch_case(engine(), case_id=case_id)
        except Exception as exc:  # Prefect unreachable or refusing: the reconciler starts the run later
            logger.warning("case %s: run not started (%s); the reconciler will start it", case_id, type(exc).__name__)
    if result["new_case_ids"]:
        from flows.delivery import announce_queued

        try:
            announce_queued(len(result["new_case_ids"]))
        except Exception as exc:  # best effort: the outbox's own schedule sends the acknowledgements anyway
            logger.warning("outbox not woken (%s); its schedule will send the acknowledgements", type(exc).__name__)
    return result


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

"""Outbox delivery: the ``deliver-outbox`` flow and its deployment.

The flow only orchestrates: each batch is one task that claims due messages, sends them through apprise and
records the results (``tasks.outbox.deliver_batch``); retries, backoff and dead letters are rows in the
database, not Prefect retries, so they survive any process.

The deployment runs every few seconds (``CLAIMFLOW_OUTBOX_POLL_SECONDS``) and also whenever the event
``claimflow.outbox.queued`` arrives: intake calls ``announce_queued()`` after it commits, so an
acknowledgement leaves at once instead of at the next tick. Serve it with::

    python -m flows.delivery          # or: deliver_outbox_deployment() passed to prefect.serve(...)

Flow parameters and logs carry counts and ids only: no addresses, no names, no URLs.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.events import DeploymentEventTrigger, emit_event

QUEUED_EVENT = "claimflow.outbox.queued"
DEPLOYMENT_NAME = "deliver-outbox"


def _now() -> datetime:
    return datetime.now(UTC)


@task(name="deliver-outbox-batch", task_run_name="batch-{number}")
def deliver_outbox_batch(number: int, limit: int | None = None) -> dict[str, int]:
    """Claim, send and record one batch; returns the counts of what happened."""
    from claimflow.db import get_engine
    from claimflow.settings import get_settings
    from tasks.outbox import deliver_batch

    engine = get_engine(get_settings().resolved_database_url)
    return asdict(deliver_batch(engine, now=_now, limit=limit))


@flow(name="deliver-outbox", log_prints=False)
def deliver_outbox(max_batches: int = 20, batch_size: int | None = None) -> dict[str, int]:
    """Deliver due outbox messages, batch after batch, until none is due or ``max_batches`` were taken.

    Args:
        max_batches: an upper bound so one run stays short; the next scheduled run takes the rest.
        batch_size: messages per batch; default ``CLAIMFLOW_OUTBOX_BATCH_SIZE``.
    """
    logger = get_run_logger()
    total: dict[str, int] = {}
    for number in range(1, max_batches + 1):
        report = deliver_outbox_batch(number, batch_size)
        for key, value in report.items():
            total[key] = total.get(key, 0) + value
        if report["claimed"] == 0:
            break
    logger.info("outbox: %s", ", ".join(f"{k} {v}" for k, v in total.items()))
    return total


def deliver_outbox_deployment(interval_seconds: int | None = None) -> Any:
    """The ``deliver-outbox`` deployment: every few seconds, and on each ``claimflow.outbox.queued`` event.

    Returns a ``RunnerDeployment`` for ``prefect.serve(...)``; starts nothing by itself.
    """
    from claimflow.settings import get_settings

    interval = interval_seconds or get_settings().outbox_poll_seconds
    return deliver_outbox.to_deployment(
        name=DEPLOYMENT_NAME,
        interval=interval,
        triggers=[DeploymentEventTrigger(expect={QUEUED_EVENT}, name="deliver after intake")],
        concurrency_limit=None,
        description="Send due notification outbox messages through apprise; retries with backoff, "
        "dead letters alert staff.",
    )


def announce_queued(count: int = 1) -> None:
    """Tell Prefect that messages were queued, so the deployment runs now (call after the commit).

    Best effort: if the event cannot be sent the scheduled run picks the messages up a few seconds later.
    """
    emit_event(
        event=QUEUED_EVENT,
        resource={"prefect.resource.id": "claimflow.outbox"},
        payload={"count": count},
    )


class DeliveryLoop:
    """Outbox delivery as a loop of the desk runner (``DeskRunner(background=[DeliveryLoop().loop])``, as
    ``claimflow up`` and ``claimflow runner`` start it): every ``CLAIMFLOW_OUTBOX_POLL_SECONDS`` the due messages
    are sent, batch after batch, with the same claims, retries and dead letters as the ``deliver-outbox`` flow.
    Not a flow run: a run every few seconds was 17,280 a day on the Runs page, burying the cases. Several
    runners deliver side by side safely (a message is claimed by one, under a lease)."""

    def __init__(self, *, every: float | None = None, max_batches: int = 20) -> None:
        from claimflow.settings import get_settings

        self.every = every if every is not None else get_settings().outbox_poll_seconds
        self.max_batches = max_batches

    def deliver_due(self, stop: threading.Event | None = None) -> dict[str, int]:
        """Send what is due now; returns the counts (what ``deliver_outbox`` returns). ``stop``, once set: the
        messages in hand are sent and recorded, the rest of their batches go back to the queue (``drain``)."""
        from claimflow.db import get_engine
        from claimflow.settings import get_settings
        from tasks.outbox import default_config, drain

        config = default_config()
        engine = get_engine(get_settings().resolved_database_url)
        report = drain(engine, now=_now, config=config, max_batches=self.max_batches, senders=config.senders,
                       stop=stop)  # fmt: skip
        return asdict(report)

    async def loop(self, _client: Any, stop: Any) -> None:
        """Deliver every ``every`` seconds until ``stop``; a pass that fails (the database restarting) is logged
        and the next one tries again. When ``stop`` is set during a pass, the pass ends after the messages in
        hand (the runner stopping waits for it): it does not go on through its batches, nor leave its claims to
        wait out their lease."""
        import logging

        import anyio

        logger = logging.getLogger("claimflow.delivery")
        halt = threading.Event()  # ``stop`` as the senders' threads see it

        async def relay() -> None:
            await stop.wait()
            halt.set()

        async with anyio.create_task_group() as group:
            group.start_soon(relay)
            while not stop.is_set():
                try:
                    total = await anyio.to_thread.run_sync(self.deliver_due, halt)
                    if total.get("claimed"):
                        logger.info("outbox: %s", ", ".join(f"{k} {v}" for k, v in total.items()))
                except Exception:
                    logger.exception("outbox delivery failed; trying again in %.0f s", self.every)
                with anyio.move_on_after(self.every):
                    await stop.wait()
            group.cancel_scope.cancel()


if __name__ == "__main__":  # pragma: no cover - the serve process
    from prefect import serve

    serve(deliver_outbox_deployment())

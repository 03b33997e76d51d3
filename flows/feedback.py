"""``satisfaction-survey``: the periodic satisfaction survey (every ``CLAIMFLOW_SURVEY_INTERVAL_HOURS``).

One pass samples the cases closed in the last ``CLAIMFLOW_SURVEY_LOOKBACK_DAYS`` that have no survey yet, a
share per handler and product line (``CLAIMFLOW_SURVEY_SHARE``), leaves alone customers invited within
``CLAIMFLOW_SURVEY_QUIET_DAYS``, and queues their invitations in one transaction (``tasks.feedback``). The
invitations leave through the outbox. Logs carry counts only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import desk, transaction
from flows.common import now as clock
from tasks.feedback import SampleReport, periodic_survey

DEPLOYMENT_NAME = "satisfaction-survey"


@task(name="survey-sample", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
async def survey_sample(at: datetime) -> SampleReport:
    return await transaction(periodic_survey, desk=desk(), now=at)


@flow(name="satisfaction-survey", persist_result=False)
async def satisfaction_survey(now: datetime | None = None) -> dict[str, Any]:
    """One pass of the periodic satisfaction survey at ``now`` (default: the current time)."""
    report = await survey_sample(now or clock())
    get_run_logger().info("%d recently closed case(s) without a survey; %d invited", report.closed,
                          len(report.invited))  # fmt: skip
    return {"closed": report.closed, "invited": len(report.invited)}

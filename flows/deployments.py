"""The desk's deployments, and registering them with the Prefect server.

| deployment | runs | schedule |
|---|---|---|
| ``claim-process/claim-process`` (and complaint, inquiry) | one run per case, named by its number | started at intake |
| ``escalation/escalation`` | one run per raised escalation | started by sla-watch |
| ``sla-watch/sla-watch`` | reminders and escalations that are due | every minute |
| ``reconcile/reconcile`` | runs that are missing, dead or stranded | every minute |
| ``deliver-outbox/deliver-outbox`` | the notification outbox | every few seconds and after intake |
| ``mail-intake/mail-intake`` | the intake mailbox (IMAP) | every minute |
| ``quality-report/quality-report`` | quality artifacts | daily 06:00, Monday 06:30 (office time) |
| ``satisfaction-survey/satisfaction-survey`` | survey invitations to a sample of closed cases | every day |
| ``reassign-cases/reassign-cases`` | a supervisor moves a person's cases (Run > Custom run in the UI) | on demand |
| ``extend-step/extend-step`` | a step's deadline extended before it passes (Run > Custom run) | on demand |
| ``release-message/release-message`` | a held letter fixed or checked again (a fix_wording task) | on demand |
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import anyio
from prefect import Flow

from flows.actions import extend_step_flow, reassign_cases_flow, release_message_flow
from flows.case import claim_process, complaint_process, inquiry_process
from flows.delivery import DEPLOYMENT_NAME as DELIVERY_DEPLOYMENT
from flows.delivery import deliver_outbox, deliver_outbox_deployment
from flows.escalation import escalation
from flows.feedback import DEPLOYMENT_NAME as SURVEY_DEPLOYMENT
from flows.feedback import satisfaction_survey
from flows.mail import DEPLOYMENT_NAME as MAIL_DEPLOYMENT
from flows.mail import mail_intake, mail_intake_deployment
from flows.reports import DEPLOYMENT_NAME as REPORT_DEPLOYMENT
from flows.reports import quality_report, quality_report_deployment
from flows.watch import reconcile, sla_watch
from models.forms import parameter_words


def desk_deployments(
    *,
    watch_interval: int = 60,
    reconcile_interval: int = 60,
    delivery_interval: int | None = None,
    mail_interval: int | None = None,
    reports: bool = True,
    survey_interval: int | None = None,
) -> list[tuple[Flow[Any, Any], Any]]:
    """(flow, RunnerDeployment) for every deployment of the desk.

    Intervals are in seconds; 0 registers the deployment without a schedule (tests run passes by hand).
    ``delivery_interval`` None: the ``CLAIMFLOW_OUTBOX_POLL_SECONDS`` setting; ``mail_interval`` None:
    ``CLAIMFLOW_MAIL_POLL_SECONDS``; ``reports`` False: the quality report without its schedules (tests);
    ``survey_interval`` None: ``CLAIMFLOW_SURVEY_INTERVAL_HOURS``.
    """
    from claimflow.settings import get_settings

    if survey_interval is None:
        survey_interval = get_settings().survey_interval_hours * 3600

    def every(seconds: int | None) -> dict[str, Any]:
        return {"interval": seconds} if seconds else {}

    delivery = (
        deliver_outbox.to_deployment(name=DELIVERY_DEPLOYMENT)
        if delivery_interval == 0
        else deliver_outbox_deployment(delivery_interval)
    )
    pairs: list[tuple[Flow[Any, Any], Any]] = [
        (claim_process, claim_process.to_deployment(name="claim-process", description="One run per claim.")),
        (
            complaint_process,
            complaint_process.to_deployment(name="complaint-process", description="One run per complaint."),
        ),
        (inquiry_process, inquiry_process.to_deployment(name="inquiry-process", description="One run per inquiry.")),
        (escalation, escalation.to_deployment(name="escalation", description="One run per raised escalation.")),
        (
            sla_watch,
            sla_watch.to_deployment(
                name="sla-watch", description="Reminders and escalations that are due.", **every(watch_interval)
            ),
        ),
        (
            reconcile,
            reconcile.to_deployment(
                name="reconcile", description="Start runs that are missing or dead.", **every(reconcile_interval)
            ),
        ),
        (deliver_outbox, delivery),
        (
            mail_intake,
            mail_intake.to_deployment(name=MAIL_DEPLOYMENT)
            if mail_interval == 0
            else mail_intake_deployment(mail_interval),
        ),
        (
            quality_report,
            quality_report_deployment() if reports else quality_report.to_deployment(name=REPORT_DEPLOYMENT),
        ),
        (
            satisfaction_survey,
            satisfaction_survey.to_deployment(
                name=SURVEY_DEPLOYMENT,
                description="Survey invitations to a sample of recently closed cases.",
                **every(survey_interval),
            ),
        ),
        (
            reassign_cases_flow,
            reassign_cases_flow.to_deployment(
                name="reassign-cases",
                description="A supervisor moves a person's open cases (or one) to another handler: Run > Custom run.",
            ),
        ),
        (
            extend_step_flow,
            extend_step_flow.to_deployment(
                name="extend-step",
                description="Extend a step's deadline before it passes (the customer is told): Run > Custom run.",
            ),
        ),
        (
            release_message_flow,
            release_message_flow.to_deployment(
                name="release-message",
                description="A case's fix_wording task: check its held letter again, or give the value it lacked: "
                "Run > Custom run.",
            ),
        ),
    ]
    language = get_settings().default_language
    for flow, deployment in pairs:  # the desk actions' Custom-run forms, titled and explained in the desk's language
        schema = getattr(deployment, "_parameter_openapi_schema", None)
        if flow.name in ACTIONS and schema is not None:
            schema.properties = parameter_words(schema.properties, language, flow.name)
    for flow, deployment in pairs:  # the Runs page can leave them out: filter on the case flows, or on this tag
        if flow.name in HOUSEKEEPING:
            deployment.tags = sorted({*(deployment.tags or []), HOUSEKEEPING_TAG})
    return pairs


HOUSEKEEPING = frozenset({"sla-watch", "reconcile", "deliver-outbox", "mail-intake", "quality-report",
                          "satisfaction-survey"})  # fmt: skip
"""The flows whose runs are the desk's housekeeping, not a case or an escalation."""
HOUSEKEEPING_TAG = "housekeeping"
ACTIONS = frozenset({"reassign-cases", "extend-step", "release-message"})
"""The flows a person starts from the Deployments page (Run > Custom run), with a form of their parameters."""


def up_schedules(settings: Any) -> dict[str, Any]:
    """The schedules ``claimflow up`` registers: outbox delivery is a loop of the desk runner (no deployment
    schedule: every few seconds it was 17,280 runs a day), reconcile every ``CLAIMFLOW_RECONCILE_SECONDS``, the
    mailbox only when one is configured (else a run a minute that does nothing); the watcher every minute."""
    return {
        "watch_interval": 60,
        "reconcile_interval": settings.reconcile_seconds,
        "delivery_interval": 0,
        "mail_interval": None if settings.mail_imap_host else 0,
        "reports": True,
        "survey_interval": None,
    }


async def runs_per_day(pairs: list[tuple[Flow[Any, Any], Any]], *, start: Any) -> dict[str, int]:
    """How many runs each scheduled deployment makes in the 24 hours from ``start``, by the Prefect server's own
    schedule arithmetic (its scheduler creates exactly these); a deployment without a schedule makes none."""
    from datetime import timedelta

    from prefect.server.schemas import schedules as server_schedules

    end = start + timedelta(days=1)
    counts: dict[str, int] = {}
    for flow, deployment in pairs:
        total = 0
        for schedule in deployment.schedules or []:
            kind = getattr(server_schedules, type(schedule.schedule).__name__)
            server_schedule = kind.model_validate(schedule.schedule.model_dump())
            at = start
            while dates := [d for d in await server_schedule.get_dates(n=500, start=at, end=end) if d < end]:
                total += len(dates)  # the server checks up to 1,000 candidates a call: a day is asked in pieces
                at = dates[-1] + timedelta(microseconds=1)
        counts[flow.name] = total
    return counts


UNSCHEDULED: dict[str, Any] = {
    "watch_interval": 0,
    "reconcile_interval": 0,
    "delivery_interval": 0,
    "mail_interval": 0,
    "reports": False,
    "survey_interval": 0,
}
"""Every deployment without a schedule: tests and benchmarks run the periodic passes themselves."""


async def register(**kwargs: Any) -> dict[UUID, Flow[Any, Any]]:
    """Create or update every deployment on the server; returns deployment id -> flow for the desk runner."""
    flows: dict[UUID, Flow[Any, Any]] = {}
    # to_deployment is async-dispatched: called from a thread with no running loop it returns the object
    pairs = await anyio.to_thread.run_sync(lambda: desk_deployments(**kwargs))
    for flow, deployment in pairs:
        flows[await deployment.aapply()] = flow
    return flows

"""The ``quality-report`` flow: the desk's quality figures as Prefect artifacts, daily and weekly.

Each run computes the report for one period (the last whole day or ISO week in the office's time zone, or
the dates given) with ``tasks.reports`` (aggregations in the database) and publishes:

- one **table artifact** per table (``quality-<period>-<table>``, e.g. ``quality-week-sla-by-handler``);
- a **markdown artifact** ``quality-<period>-summary``: the headline figures, every table, and the charts;
- an **image artifact** ``quality-<period>-chart``: claim cycle time (mean and p90, working days) and SLA
  compliance per week over the last weeks. Prefect's image artifact takes a URL; the chart is sent as a
  ``data:image/png;base64`` URL so it needs no file server (the markdown summary embeds the same image).

Flow parameters and artifacts carry figures and staff usernames only: no customer data.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import anyio
from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_image_artifact, acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE

from models.reports import (
    PeriodKind,
    ReportPeriod,
    ReportTable,
    cell_text,
    period_for,
    ratio,
    trend_period,
)

DEPLOYMENT_NAME = "quality-report"
DAILY_CRON = "0 6 * * *"
WEEKLY_CRON = "30 6 * * 1"


@dataclass(frozen=True)
class QualityReport:
    """Everything one run publishes."""

    period: ReportPeriod
    kind: str
    tables: list[ReportTable]
    cycle_trend: list[tuple[date, int, float, float | None]]
    compliance_trend: list[tuple[date, int, int]]
    generated_at: datetime


def _period(kind: str, start: str | None, end: str | None, timezone: str, now: datetime) -> ReportPeriod:
    if start or end:
        return ReportPeriod.parse(start or end or "", end or start or "", timezone)
    chosen: PeriodKind = "day" if kind == "day" else "week"
    return period_for(chosen, _local_today(now, timezone), timezone)


def _local_today(now: datetime, timezone: str) -> date:
    return now.astimezone(ZoneInfo(timezone)).date()


def compute_report(kind: str, start: str | None, end: str | None, trend_weeks: int, now: datetime) -> QualityReport:
    """Run every query of the report in one read-only session."""
    from sqlmodel import Session

    from claimflow.settings import get_settings
    from flows.common import engine
    from models.calendar import region_calendar
    from tasks.reports import ReportScope, compliance_by_week, cycle_by_week, report_tables

    settings = get_settings()
    period = _period(kind, start, end, settings.office_timezone, now)
    calendar = region_calendar(settings.region, unknown_years="weekends", timezone=settings.office_timezone)
    scope = ReportScope(period, calendar, now)
    trend = ReportScope(trend_period(period, trend_weeks), calendar, now)
    with Session(engine()) as session:
        tables = [make() for _, make in report_tables(session, scope=scope)]
        cycle = cycle_by_week(session, scope=trend, kind="claim")
        compliance = compliance_by_week(session, scope=trend)
    return QualityReport(period, kind, tables, cycle, compliance, now)


def chart_png(report: QualityReport) -> bytes:
    """Two panels a supervisor reads at a glance: claim cycle time per week, SLA compliance per week."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.4), dpi=100)
    FigureCanvasAgg(figure)
    cycle_axes, compliance_axes = figure.subplots(1, 2)
    weeks = [w for w, *_ in report.cycle_trend]
    cycle_axes.plot(weeks, [m for _, _, m, _ in report.cycle_trend], marker="o", label="mean")
    cycle_axes.plot(weeks, [p if p is not None else float("nan") for *_, p in report.cycle_trend], marker="s",
                    linestyle="--", label="p90")  # fmt: skip
    cycle_axes.set_title("Claim cycle time (working days, filing to payment)", fontsize=9)
    cycle_axes.legend(fontsize=8)
    cycle_axes.set_ylim(bottom=0)
    labels = [w.strftime("%d %b") for w, *_ in report.compliance_trend]
    rates = [100 * (ratio(met, n) or 0.0) for _, n, met in report.compliance_trend]
    bars = compliance_axes.bar(labels, rates, color=["#2e7d32" if r >= 95 else "#f9a825" if r >= 85 else "#c62828"
                                                     for r in rates])  # fmt: skip
    compliance_axes.bar_label(bars, fmt="%.0f%%", fontsize=7)
    compliance_axes.set_ylim(0, 110)
    compliance_axes.set_title("SLA compliance by week (steps met / measured)", fontsize=9)
    for axes in (cycle_axes, compliance_axes):
        axes.tick_params(axis="x", labelsize=7, rotation=45)
        axes.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def summary_markdown(report: QualityReport, chart: str) -> str:
    """The markdown summary: headline figures, the chart, then every table."""
    by_key = {t.key: t for t in report.tables}
    headline: list[str] = []
    kind_rows = by_key["sla-by-kind"].rows
    measured, met = sum(r[1] for r in kind_rows), sum(r[2] for r in kind_rows)
    rate = ratio(met, measured)
    headline.append(
        f"- **SLA compliance**: {'-' if rate is None else f'{100 * rate:.1f}%'} ({met} of {measured} steps met)"
    )
    for kind, cases, mean, p90 in by_key["cycle-time"].rows:
        headline.append(f"- **{kind} cycle time**: mean {mean:.1f}, p90 {cell_text(p90)} working days ({cases} cases)")
    answers = sum(r[1] for r in by_key["satisfaction-by-handler"].rows)
    headline.append(f"- **Survey answers**: {answers}")
    headline.append(f"- **Open cases**: {sum(r[2] for r in by_key['backlog'].rows)}")
    parts = [
        f"# Quality report: {report.period.label} ({report.period.timezone})",
        "",
        *headline,
        "",
        f"![weekly trend]({chart})",
        "",
    ]
    for table in report.tables:
        parts += [f"## {table.title}", "", table.markdown(), ""]
        if table.note:
            parts += [f"_{table.note}_", ""]
    parts.append(f"Generated {report.generated_at.astimezone(UTC).isoformat(timespec='seconds')}.")
    return "\n".join(parts)


@task(name="quality-report-figures", cache_policy=NO_CACHE)
async def report_figures(kind: str, start: str | None, end: str | None, trend_weeks: int, now: datetime) -> Any:
    return await anyio.to_thread.run_sync(lambda: compute_report(kind, start, end, trend_weeks, now))


@task(name="quality-report-publish", cache_policy=NO_CACHE)
async def publish(report: QualityReport) -> dict[str, str]:
    """Create the artifacts; returns artifact key -> id."""
    prefix = f"quality-{report.kind}" if report.kind in ("day", "week") else "quality-range"
    period = report.period.label
    ids: dict[str, str] = {}
    for table in report.tables:
        key = f"{prefix}-{table.key}"
        ids[key] = str(
            await acreate_table_artifact(
                table=table.records(),
                key=key,
                description=f"{table.title}, {period}. {table.note}".strip(),
            )
        )
    png = await anyio.to_thread.run_sync(chart_png, report)
    chart = data_url(png)
    ids[f"{prefix}-chart"] = str(
        await acreate_image_artifact(
            image_url=chart,
            key=f"{prefix}-chart",
            description=f"Claim cycle time and SLA compliance per week, up to {period}",
        )
    )
    ids[f"{prefix}-summary"] = str(
        await acreate_markdown_artifact(
            markdown=summary_markdown(report, chart),
            key=f"{prefix}-summary",
            description=f"Quality report {period}",
        )
    )
    return ids


@flow(name="quality-report", flow_run_name="quality-{period}", log_prints=False)
async def quality_report(
    period: Literal["day", "week", "range"] = "week",
    start: str | None = None,
    end: str | None = None,
    trend_weeks: int = 8,
) -> dict[str, str]:
    """Publish the quality report for the last whole day or week (office time zone), or ``start``..``end``.

    Args:
        period: ``day`` (yesterday), ``week`` (last Monday-Sunday), or ``range`` with ``start`` and ``end``.
        start: first day (YYYY-MM-DD) when ``period`` is ``range``.
        end: last day, included.
        trend_weeks: how many weeks the charts show.

    Returns:
        Artifact key -> artifact id.
    """
    logger = get_run_logger()
    if period == "range" and not (start and end):
        raise ValueError("period 'range' needs start and end (YYYY-MM-DD)")
    now = datetime.now(UTC)
    report = await report_figures(period, start if period == "range" else None, end if period == "range" else None,
                                  trend_weeks, now)  # fmt: skip
    ids = await publish(report)
    logger.info("quality report %s: %d artifacts", report.period.label, len(ids))
    return ids


def quality_report_deployment(timezone: str | None = None) -> Any:
    """The ``quality-report`` deployment: daily at 06:00 (yesterday) and weekly on Monday at 06:30 (last week),
    in the office's time zone. Returns a ``RunnerDeployment``; starts nothing by itself."""
    from prefect.schedules import Cron

    from claimflow.settings import get_settings

    zone = timezone or get_settings().office_timezone
    return quality_report.to_deployment(
        name=DEPLOYMENT_NAME,
        schedules=[
            Cron(DAILY_CRON, timezone=zone, parameters={"period": "day"}, slug="daily"),
            Cron(WEEKLY_CRON, timezone=zone, parameters={"period": "week"}, slug="weekly"),
        ],
        description="Quality report as artifacts: SLA compliance, cycle time, backlog, satisfaction, complaint "
        "causes, handler scorecard, weekly charts.",
    )


if __name__ == "__main__":  # pragma: no cover - the serve process
    from prefect import serve

    serve(quality_report_deployment())

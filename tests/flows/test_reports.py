"""The ``quality-report`` flow on a real Prefect server: its artifacts exist, with the figures in them."""

from __future__ import annotations

import asyncio
import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlmodel import Session

from claimflow.settings import get_settings
from flows.reports import DAILY_CRON, WEEKLY_CRON, quality_report, quality_report_deployment
from models.enums import CaseKind
from models.tables import Staff

TABLES = (
    "sla-by-kind", "sla-by-step", "sla-by-handler", "sla-by-department", "breaches", "escalations", "cycle-time",
    "backlog", "satisfaction-by-handler", "satisfaction-by-product-line", "complaint-causes", "scorecard",
)  # fmt: skip


async def _artifacts(keys: list[str]) -> dict[str, Any]:
    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    return {a.key: a for a in found}


@pytest.fixture
def desk_with_a_paid_claim(prefect_server: None, world: Any, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", database_url)
    get_settings.cache_clear()
    claim = world.file(CaseKind.claim, product_line="motor", amount_claimed=Decimal("800"))
    with Session(world.engine) as session:
        who = session.get(Staff, world.case(claim).handler_id).username
    assert world.decide(claim, who, decision="approve", amount="800").applied
    assert world.decide(claim, who, amount="800", reference="T-1").applied
    return world


def test_quality_report_publishes_tables_summary_and_chart(desk_with_a_paid_claim: Any) -> None:
    ids = asyncio.run(quality_report(period="range", start="2026-03-02", end="2026-03-08", trend_weeks=4))
    keys = [f"quality-range-{t}" for t in TABLES] + ["quality-range-summary", "quality-range-chart"]
    assert set(keys) <= set(ids)
    artifacts = asyncio.run(_artifacts(keys))
    assert set(artifacts) == set(keys)

    cycle = artifacts["quality-range-cycle-time"]
    assert cycle.type == "table"
    rows = json.loads(cycle.data) if isinstance(cycle.data, str) else cycle.data
    assert rows == [{"kind": "claim", "cases": "1", "mean": "0.0", "p90": "0.0"}]

    chart = artifacts["quality-range-chart"]
    assert chart.type == "image"
    prefix = "data:image/png;base64,"
    assert chart.data.startswith(prefix)
    assert base64.b64decode(chart.data[len(prefix) :])[:8] == b"\x89PNG\r\n\x1a\n"

    summary = artifacts["quality-range-summary"]
    assert summary.type == "markdown"
    assert "# Quality report: 2026-03-02 to 2026-03-08 (Asia/Shanghai)" in summary.data
    assert "- **claim cycle time**: mean 0.0, p90 0.0 working days (1 cases)" in summary.data
    assert f"![weekly trend]({prefix}" in summary.data


def test_the_deployment_runs_daily_and_weekly_in_the_office_time_zone() -> None:
    deployment = quality_report_deployment("Asia/Shanghai")
    schedules = {s.parameters["period"]: s.schedule for s in deployment.schedules}
    assert schedules["day"].cron == DAILY_CRON and schedules["week"].cron == WEEKLY_CRON
    assert {s.timezone for s in schedules.values()} == {"Asia/Shanghai"}
    assert deployment.name == "quality-report"

"""``claimflow report ...`` at a terminal: the same figures as the flow, a CSV on request, clear errors."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlmodel import Session
from typer.testing import CliRunner

from claimflow.cli.reports import report_app
from claimflow.settings import get_settings
from models.enums import CaseKind
from models.errors import InvalidInput
from models.tables import Staff

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    import claimflow.cli.reports as cli_reports

    monkeypatch.setattr(cli_reports, "out", Console(width=250, highlight=False, soft_wrap=True))


@pytest.fixture
def paid_claim(world: Any, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", database_url)
    get_settings.cache_clear()
    claim = world.file(CaseKind.claim, product_line="motor", amount_claimed=Decimal("800"))
    with Session(world.engine) as session:
        who = session.get(Staff, world.case(claim).handler_id).username
    assert world.decide(claim, who, decision="approve", amount="800").applied
    assert world.decide(claim, who, amount="800", reference="T-1").applied
    return who


def test_report_cycle_prints_the_table_and_writes_csv(paid_claim: str, tmp_path: Path) -> None:
    target = tmp_path / "cycle.csv"
    result = runner.invoke(report_app, ["cycle", "--from", "2026-03-02", "--to", "2026-03-08", "--csv", str(target)])
    assert result.exit_code == 0, result.output
    assert "Cycle time in working days" in result.output
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# Cycle time in working days"
    assert list(csv.reader(lines[1:3])) == [["kind", "cases", "mean", "p90"], ["claim", "1", "0.0", "0.0"]]


@pytest.mark.parametrize("command", ["sla", "satisfaction", "scorecard"])
def test_every_report_command_runs(paid_claim: str, command: str) -> None:
    result = runner.invoke(report_app, [command, "--from", "2026-03-02", "--to", "2026-03-08"])
    assert result.exit_code == 0, result.output
    if command == "scorecard":
        assert paid_claim in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--from", "2026-03-09", "--to", "2026-03-02"], "ends (2026-03-02) before it starts", id="reversed"
        ),
        pytest.param(["--from", "March", "--to", "2026-03-02"], "--from: 'March' is not a date", id="not-a-date"),
    ],
)
def test_bad_dates_are_refused_with_what_was_wrong(args: list[str], message: str) -> None:
    result = runner.invoke(report_app, ["sla", *args])
    assert isinstance(result.exception, InvalidInput | typer.Exit)
    assert message in str(result.exception)

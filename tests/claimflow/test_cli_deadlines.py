"""``claimflow calendar | sla | policy``: a person checks a date without reading code."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from claimflow.cli.deadlines import calendar_app, policy_app, sla_app
from models.errors import InvalidInput

runner = CliRunner()


def run_ok(app, *args: str) -> list[str]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output.splitlines()


def run_bad(app, *args: str) -> str:
    """Bad input raises InvalidInput (exit code 2, one line); claimflow.cli prints it as ``error: ...``."""
    result = runner.invoke(app, list(args))
    if isinstance(result.exception, SystemExit):  # usage errors caught by typer itself
        assert result.exit_code == 2
        return result.output
    assert isinstance(result.exception, InvalidInput), repr(result.exception)
    assert result.exception.exit_code == 2
    message = str(result.exception)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["2025-09-30", "1", "--region", "CN"], "2025-10-09", id="over-national-day"),
        pytest.param(["2025-09-26", "1", "--region", "CN"], "2025-09-28", id="makeup-sunday"),
        pytest.param(
            ["2025-09-20", "11", "--calendar-days", "--region", "CN"],
            "2025-10-09",
            id="calendar-days-roll-past-holiday",
        ),
        pytest.param(
            ["2025-09-20", "11", "--calendar-days", "--no-roll", "--region", "CN"],
            "2025-10-01",
            id="calendar-days-no-roll",
        ),
        pytest.param(["2025-08-22", "1", "--region", "GB"], "2025-08-26", id="gb-summer-bank-holiday"),
        pytest.param(["2025-08-22", "1", "--region", "GB-SCT"], "2025-08-25", id="gb-scotland-works-that-monday"),
    ],
)
def test_calendar_add(args: list[str], expected: str) -> None:
    assert run_ok(calendar_app, "add", *args) == [expected]


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        pytest.param("2025-10-11", "working", id="makeup-saturday"),
        pytest.param("2025-10-08", "rest", id="national-day-week"),
        pytest.param("2025-10-12", "rest", id="plain-sunday"),
    ],
)
def test_calendar_is_working(day: str, expected: str) -> None:
    assert run_ok(calendar_app, "is-working", day, "--region", "CN") == [expected]


def test_calendar_overlay(tmp_path: Path) -> None:
    overlay = tmp_path / "typhoon.yaml"
    overlay.write_text("name: sz\nclosures: [{from: 2025-09-24, reason: typhoon}]\n", encoding="utf-8")
    assert run_ok(calendar_app, "is-working", "2025-09-24", "--region", "CN", "--overlay", str(overlay)) == ["rest"]


def test_weekend_fallback_is_announced() -> None:
    result = runner.invoke(calendar_app, ["add", "2026-12-31", "1", "--region", "CN", "--weekends-fallback"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["2027-01-04"]  # New Year's Day is a statutory holiday in any year
    assert "weekends and statutory holidays assumed" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["add", "2026-12-30", "5", "--region", "CN"],
            "no official CN calendar data for 2027; known years 2001-2026",
            id="beyond-the-notices",
        ),
        pytest.param(
            ["add", "2025-13-01", "5", "--region", "CN"],
            "START '2025-13-01' is not an ISO date",
            id="bad-date",
        ),
        pytest.param(["is-working", "2025-10-01", "--region", "XX"], "unknown region 'XX'", id="bad-region"),
        pytest.param(["add", "2025-10-01", "x", "--region", "CN"], "Invalid value", id="bad-number"),
    ],
)
def test_calendar_bad_input(args: list[str], message: str) -> None:
    assert message in run_bad(calendar_app, *args)


def test_sla_due_prints_due_reminders_escalation_and_rule() -> None:
    lines = run_ok(
        sla_app,
        "due",
        "--policy",
        "service-standard",
        "--kind",
        "claim",
        "--step",
        "review",
        "--start",
        "2025-09-26T15:00:00+08:00",
        "--region",
        "CN",
        "--timezone",
        "Asia/Shanghai",
    )
    assert lines[0] == "due: 2025-10-01T00:00:00+08:00 (end of 2025-09-30)"
    assert lines[1].startswith("rule: service-standard claim.review: 3 working days (Service code")
    assert "reminder 50%: 2025-09-29T12:00:00+08:00" in lines
    assert "reminder 75%: 2025-09-30T06:00:00+08:00" in lines
    assert "escalation 1 supervisor: 2025-10-01T00:00:00+08:00" in lines
    assert "escalation 2 manager: 2025-10-10T00:00:00+08:00, if the supervisor has not decided" in lines


def test_sla_due_with_pause_and_several_packs() -> None:
    lines = run_ok(
        sla_app,
        "due",
        "--policy",
        "service-standard",
        "--policy",
        "cn-regulatory",
        "--kind",
        "complaint",
        "--step",
        "resolution",
        "--start",
        "2025-09-26T15:00+08:00",
        "--region",
        "CN",
        "--timezone",
        "Asia/Shanghai",
        "--pause",
        "2025-09-29T00:00+08:00/2025-09-30T00:00+08:00",
    )
    assert lines[0] == "due: 2025-10-14T00:00:00+08:00 (end of 2025-10-13)"
    assert lines[1].startswith("rule: cn-regulatory complaint.resolution: 15 calendar days")
    assert "considered: service-standard 10 working days: 2025-10-18T00:00:00+08:00" in lines


def test_sla_due_open_pause_stops_the_clock() -> None:
    lines = run_ok(
        sla_app,
        "due",
        "--policy",
        "service-standard",
        "--kind",
        "claim",
        "--step",
        "review",
        "--start",
        "2025-09-26T15:00+08:00",
        "--region",
        "CN",
        "--pause",
        "2025-09-29T09:00+08:00/",
    )
    assert lines[0] == "due: none while paused (an open pause stops the clock)"


def test_sla_due_in_another_region_prints_its_offset() -> None:
    lines = run_ok(
        sla_app,
        "due",
        "--policy",
        "uk-fca",
        "--kind",
        "complaint",
        "--step",
        "resolution",
        "--start",
        "2025-06-02T10:00:00+01:00",
        "--region",
        "GB",
    )
    assert lines[0] == "due: 2025-07-29T00:00:00+01:00 (end of 2025-07-28)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--kind", "claim", "--step", "review", "--start", "yesterday"],
            "is not an ISO 8601 date-time",
            id="bad-start",
        ),
        pytest.param(
            ["--kind", "claims", "--step", "review", "--start", "2025-09-26T15:00+08:00"],
            "unknown kind 'claims'",
            id="bad-kind",
        ),
        pytest.param(
            ["--kind", "claim", "--step", "review", "--start", "2025-09-26T15:00+08:00", "--policy", "nope"],
            "unknown policy pack 'nope'",
            id="bad-pack",
        ),
        pytest.param(
            [
                "--kind",
                "claim",
                "--step",
                "review",
                "--start",
                "2025-09-26T15:00+08:00",
                "--pause",
                "2025-09-29",
            ],
            "is not FROM/TO",
            id="bad-pause",
        ),
        pytest.param(
            [
                "--kind",
                "inquiry",
                "--step",
                "answer",
                "--start",
                "2025-09-26T15:00+08:00",
                "--policy",
                "service-standard",
            ],
            "depends on the channel",
            id="missing-channel",
        ),
    ],
)
def test_sla_bad_input(args: list[str], message: str) -> None:
    assert message in run_bad(sla_app, "due", "--region", "CN", *args)


def test_policy_check_accepts_shipped_packs() -> None:
    for name in ["service-standard", "cn-regulatory", "uk-fca", "au-asic", "us-ca"]:
        path = Path(__file__).resolve().parents[2] / "policies" / f"{name}.yaml"
        assert run_ok(policy_app, "check", str(path))[0].startswith(f"ok: {name} (")


def test_policy_check_points_at_the_offending_key(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(
        "name: broken\ntitle: t\nsteps:\n  claim:\n    review:\n      description: d\n"
        "      starts_on: claim_received\n      limit: {value: 3, unit: weeks, source: s}\n",
        encoding="utf-8",
    )
    assert run_bad(policy_app, "check", str(path)) == (
        "steps.claim.review.limit.unit: 'weeks' is not one of hours, business_hours, calendar_days, working_days"
    )


def test_policy_check_missing_file(tmp_path: Path) -> None:
    assert "cannot read" in run_bad(policy_app, "check", str(tmp_path / "nope.yaml"))

"""``claimflow calendar``, ``claimflow sla`` and ``claimflow policy``: check a date without reading code.

Registered by ``claimflow.cli`` as the ``calendar``, ``sla`` and ``policy`` groups. Bad input raises
``InvalidInput`` (one line, exit code 2); the main wrapper prints it. Times print as ISO 8601 with offset.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

import claimflow.cli.common as common
from claimflow.settings import get_settings
from models.calendar import (
    Calendar,
    add_working_days,
    calendar_period_end,
    load_overlay,
    region_calendar,
)
from models.clock import Pause
from models.errors import InvalidInput
from models.sla import Deadline, Pack, load_pack, load_pack_file, strictest

calendar_app = typer.Typer(help="Working days of a region: add days, check a date.", no_args_is_help=True)
sla_app = typer.Typer(help="Due times under the SLA policy packs.", no_args_is_help=True)
policy_app = typer.Typer(help="Validate SLA policy packs.", no_args_is_help=True)

RegionOption = Annotated[
    str | None,
    typer.Option("--region", help="Region calendar (CN, GB, US, AU, GB-SCT, AU-VIC...); default CLAIMFLOW_REGION."),
]
TimezoneOption = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        help="Time zone of days and office hours; default CLAIMFLOW_OFFICE_TIMEZONE for the default region, "
        "else the region's own zone.",
    ),
]
OverlayOption = Annotated[
    Path | None, typer.Option("--overlay", help="Company overlay YAML (closures, extra working days).")
]
FallbackOption = Annotated[
    bool,
    typer.Option(
        "--weekends-fallback",
        help="For years without official data, assume Monday-Friday working weeks (flagged) instead of failing.",
    ),
]


@sla_app.callback()
def _sla() -> None:
    """Due times under the SLA policy packs."""


@policy_app.callback()
def _policy() -> None:
    """Validate SLA policy packs."""


def _calendar(region: str | None, timezone: str | None, overlay: Path | None, fallback: bool = False) -> Calendar:
    settings = get_settings()
    code = (region or settings.region).upper()
    if timezone is None and code == settings.region.upper():
        timezone = settings.office_timezone
    calendar = region_calendar(code, unknown_years="weekends" if fallback else "raise", timezone=timezone)
    if overlay is not None:
        calendar = calendar.with_overlay(load_overlay(overlay))
    return calendar


def _date(text: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not an ISO date (YYYY-MM-DD)") from None


def _instant(text: str, what: str, calendar: Calendar) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not an ISO 8601 date-time (e.g. 2025-09-26T15:00+08:00)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=calendar.office.zone)
    return value


def _pause(text: str, calendar: Calendar) -> Pause:
    start, slash, end = text.partition("/")
    if not slash or not start:
        raise InvalidInput(f"--pause {text!r} is not FROM/TO (TO may be empty: still paused)")
    return Pause(
        _instant(start, "--pause start", calendar),
        _instant(end, "--pause end", calendar) if end else None,
    )


@calendar_app.command("add")
def calendar_add(
    start: Annotated[str, typer.Argument(help="Trigger day, YYYY-MM-DD (it does not count).")],
    n: Annotated[int, typer.Argument(help="How many working (or calendar) days.")],
    region: RegionOption = None,
    calendar_days: Annotated[
        bool,
        typer.Option("--calendar-days", help="End of an N-calendar-day period, rolled past rest days."),
    ] = False,
    no_roll: Annotated[
        bool,
        typer.Option("--no-roll", help="With --calendar-days: do not roll a last day that is a rest day."),
    ] = False,
    overlay: OverlayOption = None,
    weekends_fallback: FallbackOption = False,
) -> None:
    """Print the ISO date N working days after START (N-th working day; START itself never counts)."""
    calendar = _calendar(region, None, overlay, weekends_fallback)
    day = _date(start, "START")
    if calendar_days:
        result = calendar_period_end(day, n, calendar=calendar, roll=not no_roll)
    else:
        result = add_working_days(day, n, calendar=calendar)
    typer.echo(result.isoformat())
    _warn_if_assumed(calendar, day, result)


@calendar_app.command("is-working")
def calendar_is_working(
    date: Annotated[str, typer.Argument(help="Day to check, YYYY-MM-DD.")],
    region: RegionOption = None,
    overlay: OverlayOption = None,
    weekends_fallback: FallbackOption = False,
) -> None:
    """Print ``working`` or ``rest``."""
    calendar = _calendar(region, None, overlay, weekends_fallback)
    day = _date(date, "DATE")
    typer.echo("working" if calendar.is_working(day) else "rest")
    _warn_if_assumed(calendar, day, day)


def _warn_if_assumed(calendar: Calendar, *days: dt.date) -> None:
    unknown = sorted({day.year for day in days if not calendar.is_official(day)})
    if unknown:
        years = ", ".join(str(year) for year in unknown)
        typer.echo(
            f"note: no official {calendar.region} calendar for {years}; weekends and statutory holidays assumed",
            err=True,
        )


@sla_app.command("due")
def sla_due(
    kind: Annotated[str, typer.Option("--kind", help="claim, complaint or inquiry.")],
    step: Annotated[str, typer.Option("--step", help="intake, review, answer, resolution, payment...")],
    start: Annotated[
        str,
        typer.Option("--start", help="When the clock started, ISO 8601 (no offset: the office's time zone)."),
    ],
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "--policy",
            help="Policy pack; repeat to apply several (the strictest governs). Default CLAIMFLOW_POLICY_PACK.",
        ),
    ] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", help="phone, email, webhook, app, counter, letter.")
    ] = None,
    pause: Annotated[
        list[str] | None,
        typer.Option("--pause", help="Paused interval FROM/TO in ISO 8601; repeatable; empty TO: still paused."),
    ] = None,
    extension: Annotated[
        list[str] | None, typer.Option("--extension", help="Extension granted, by name; repeatable.")
    ] = None,
    region: RegionOption = None,
    timezone: TimezoneOption = None,
    overlay: OverlayOption = None,
) -> None:
    """Print the due time, the reminder times, the escalation times and the rule that set them."""
    calendar = _calendar(region, timezone, overlay)
    packs: list[Pack] = [load_pack(name) for name in (policy or [get_settings().policy_pack])]
    started = _instant(start, "--start", calendar)
    pauses = [_pause(text, calendar) for text in (pause or [])]
    result = strictest(
        packs,
        kind=kind,
        step=step,
        start=started,
        calendar=calendar,
        channel=channel,
        pauses=pauses,
        extensions=extension or [],
    )
    for line in describe_deadline(result):
        typer.echo(line)


def describe_deadline(deadline: Deadline) -> list[str]:
    """The lines ``claimflow sla due`` prints for a deadline."""
    lines = []
    if deadline.due is None:
        lines.append("due: none while paused (an open pause stops the clock)")
    else:
        end = f" (end of {deadline.last_day.isoformat()})" if deadline.last_day else ""
        label = "window ends" if deadline.window else "due"
        lines.append(f"{label}: {deadline.due.isoformat()}{end}")
    lines.append(f"rule: {deadline.rule.text}")
    if deadline.rolled:
        lines.append("rolled: the last day was a rest day; the period ends on the next working day")
    for reminder in deadline.reminders:
        when = reminder.at.isoformat() if reminder.at else "none while paused"
        lines.append(f"reminder {reminder.fraction:.0%}: {when}")
    ladder = f" (ladder from {deadline.ladder_from})" if deadline.ladder_from else ""
    for point in deadline.escalations:
        when = point.at.isoformat() if point.at else "none while paused"
        condition = f", if {point.condition}" if point.condition else ""
        lines.append(f"escalation {point.level} {point.role}: {when}{condition}{ladder}")
    if len(deadline.considered) > 1:
        for considered in deadline.considered:
            when = considered.due.isoformat() if considered.due else "none while paused"
            lines.append(f"considered: {considered.rule.pack} {considered.rule.limit}: {when}")
    lines.append(f"calendar: {deadline.calendar}")
    if deadline.assumed:
        lines.append(f"assumed: {deadline.assumed}")
    return lines


@policy_app.command("check")
def policy_check(file: Annotated[Path, typer.Argument(help="Policy pack YAML file.")]) -> None:
    """Validate a policy pack; on error, name the offending key and the reason."""
    pack = load_pack_file(file)
    rules = list(pack.rules())
    numbers = sum(1 for _, _, rule in rules if rule.limit is not None or rule.limit_by_channel)
    typer.echo(f"ok: {pack.name} ({len(rules)} rules, {numbers} with a limit, {len(rules) - numbers} duties only)")


@calendar_app.command("import")
def calendar_import(
    path: Annotated[Path, typer.Argument(help="YAML: years: {2027: {notices, rest_days, working_days}}.")],
) -> None:
    """Add a year's official CN calendar (the State Council's notice), checked: every date in the year, each
    make-up working day a weekend, every statutory holiday in a rest block, the notice cited. Open steps whose due
    time was assumed are counted again; each that moved is on its case's log and its handler is told. Restart the
    desk runner afterwards so it reads the new year."""
    from tasks.calendars import import_years, retime_assumed
    from tasks.workflow import Desk

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read: {exc}") from None
    settings = get_settings()
    years = import_years(settings, text)
    with common.session() as session:
        moved = retime_assumed(session, Desk.of(settings), now=common.now())
        lines = [f"{r.number} {r.step}: due {r.due.isoformat() if r.due else '-'} (was "
                 f"{r.previous.isoformat() if r.previous else '-'})" for r in moved]  # fmt: skip
    typer.echo(f"official years imported: {', '.join(map(str, years))}")
    for line in lines:
        typer.echo(line)
    typer.echo(f"{len(lines)} open step(s) re-timed")

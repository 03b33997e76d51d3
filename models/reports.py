"""The quality reports' rules: report periods, working-day calendar rows, percentiles, the handler scorecard.

Pure functions over values: no database, no Prefect, no clock. ``tasks.reports`` runs the aggregations in
the database and hands their results to these functions; ``flows.reports`` and ``claimflow.cli.reports``
print and publish what comes back.

Definitions used by every report (the docstrings of ``tasks.reports`` repeat them where they apply):

- **Period**: whole local days ``start``..``end`` (both included) in the office's time zone, i.e. the
  instants ``[start 00:00, end+1 00:00)`` local time, converted to UTC.
- **Working days between two instants**: the number of working days after the first instant's local date
  up to and including the second's (``models.calendar.working_days_between``): filed and paid on the same
  day is 0, filed on a Friday and paid the next Monday is 1.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.calendar import Calendar
from models.errors import InvalidInput

PeriodKind = Literal["day", "week"]


# --- periods ----------------------------------------------------------------------------------------------


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {timezone!r}") from None


@dataclass(frozen=True)
class ReportPeriod:
    """Whole local days ``start``..``end`` (both included) in ``timezone``.

    Raises:
        InvalidInput: ``end`` is before ``start``, or the time zone is unknown.
    """

    start: date
    end: date
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidInput(f"the period ends ({self.end}) before it starts ({self.start})")
        _zone(self.timezone)

    @classmethod
    def parse(cls, start: str, end: str, timezone: str) -> ReportPeriod:
        """A period from two ISO dates (``2026-03-02``), as typed at the command line."""
        days: list[date] = []
        for name, text in (("--from", start), ("--to", end)):
            try:
                days.append(date.fromisoformat(text.strip()))
            except ValueError:
                raise InvalidInput(f"{name}: {text!r} is not a date (YYYY-MM-DD)") from None
        return cls(days[0], days[1], timezone)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()} to {self.end.isoformat()}" if self.days > 1 else self.start.isoformat()

    def bounds(self) -> tuple[datetime, datetime]:
        """The period as UTC instants ``[from, to)``: local midnight of ``start`` to local midnight after ``end``."""
        zone = _zone(self.timezone)
        first = datetime.combine(self.start, time(0), tzinfo=zone).astimezone(UTC)
        after = datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
        return first, after

    def as_of(self, now: datetime) -> datetime:
        """The instant the period's figures are taken at: its end, or ``now`` while it is still running."""
        return min(self.bounds()[1], now)


def period_for(kind: PeriodKind, today: date, timezone: str) -> ReportPeriod:
    """The last complete day (``day``: yesterday) or ISO week (``week``: Monday to Sunday) before ``today``."""
    if kind == "day":
        yesterday = today - timedelta(days=1)
        return ReportPeriod(yesterday, yesterday, timezone)
    if kind == "week":
        monday = today - timedelta(days=today.weekday()) - timedelta(days=7)
        return ReportPeriod(monday, monday + timedelta(days=6), timezone)
    raise InvalidInput(f"period: {kind!r} is not one of day, week")


def trend_period(period: ReportPeriod, weeks: int) -> ReportPeriod:
    """``weeks`` whole ISO weeks ending with the week that holds ``period.end`` (for the weekly charts)."""
    if weeks < 1:
        raise InvalidInput("a trend needs at least one week")
    sunday = period.end + timedelta(days=6 - period.end.weekday())
    return ReportPeriod(sunday - timedelta(days=7 * weeks - 1), sunday, period.timezone)


def week_start(day: date) -> date:
    """The Monday of ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


# --- the working-day table the database joins against -----------------------------------------------------


@dataclass(frozen=True)
class WorkdayRow:
    """One local day of the report's calendar.

    ``worked`` counts the working days from the first row up to and including this day, so the working days
    between two dates are ``worked(end) - worked(start)`` (``working_days_between``'s definition).
    """

    day: date
    worked: int
    week: date


def workday_rows(calendar: Calendar, first: date, last: date) -> list[WorkdayRow]:
    """Every day from ``first`` to ``last`` with its running count of working days and its ISO week.

    Years without official calendar data follow the calendar's ``unknown_years`` choice (a report is built
    with the weekend-only fallback, so it never refuses to print for a far date).
    """
    rows: list[WorkdayRow] = []
    worked = 0
    day = first
    while day <= last:
        worked += calendar.is_working(day)
        rows.append(WorkdayRow(day, worked, week_start(day)))
        day += timedelta(days=1)
    return rows


def utc_offsets(timezone: str, first: datetime, last: datetime) -> list[tuple[datetime, int]]:
    """The UTC offsets (seconds) of ``timezone`` in force from ``first`` to ``last``, with when each starts.

    The first entry starts at ``first``; one more entry per change of offset (DST), at the exact UTC instant
    of the change. SQLite has no time zones: the report turns a stored UTC time into a local date with these.
    """
    zone = _zone(timezone)

    def offset(moment: datetime) -> int:
        delta = moment.astimezone(zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    first, last = first.astimezone(UTC), last.astimezone(UTC)
    changes = [(first, offset(first))]
    moment = first
    while moment < last:
        step = min(moment + timedelta(days=1), last)
        if offset(step) != changes[-1][1]:
            low, high = moment, step  # the change lies in (low, high]: halve to the second
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if offset(middle) == changes[-1][1] else (low, middle)
            changes.append((high.replace(microsecond=0), offset(high)))
        moment = step
    return changes


# --- percentiles ------------------------------------------------------------------------------------------

P90_PERMILLE = 900


def percentile(values: Sequence[float], permille: int = P90_PERMILLE) -> float | None:
    """The continuous percentile (PostgreSQL's ``percentile_cont``, linear interpolation), permille 0..1000.

    The reference for the database's computation (``interpolate``); None for no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    position = permille * (len(ordered) - 1)
    low, remainder = divmod(position, 1000)
    high = ordered[low + 1] if low + 1 < len(ordered) else ordered[low]
    return interpolate(ordered[low], high, remainder)


def interpolate(low: float | None, high: float | None, remainder: int) -> float | None:
    """Finish a percentile from the database's aggregates.

    The database numbers the ordered values 1..n and picks the values at rows ``k + 1`` (``low``) and
    ``k + 2`` (``high``, missing when ``k + 1 = n``) where ``k, remainder = divmod(permille * (n - 1), 1000)``
    in integer arithmetic (identical on PostgreSQL and SQLite).
    """
    if low is None:
        return None
    if high is None or remainder == 0:
        return float(low)
    return float(low) + (float(high) - float(low)) * remainder / 1000


# --- ratios and the scorecard ----------------------------------------------------------------------------


def ratio(part: int | float, whole: int | float) -> float | None:
    """``part / whole``, or None when there is nothing to measure."""
    return None if not whole else float(part) / float(whole)


AGE_BUCKETS: tuple[tuple[int, int | None, str], ...] = (
    (0, 2, "0-2"),
    (3, 5, "3-5"),
    (6, 10, "6-10"),
    (11, 20, "11-20"),
    (21, None, "21+"),
)
"""Backlog age buckets, in working days since the case was filed."""


def age_bucket(working_days: int) -> str:
    """The backlog bucket of a case that has been open ``working_days`` working days."""
    for low, high, label in AGE_BUCKETS:
        if working_days >= low and (high is None or working_days <= high):
            return label
    return AGE_BUCKETS[0][2]  # negative ages (clock skew) count as new


@dataclass(frozen=True)
class ScorecardWeights:
    """How the scorecard weighs its four parts (they need not add up to 1: the score renormalises)."""

    compliance: float = 0.4
    satisfaction: float = 0.3
    reopened: float = 0.15
    wording: float = 0.15


@dataclass(frozen=True)
class HandlerFigures:
    """What the database counted for one handler in the period."""

    handler: str
    steps_measured: int = 0
    steps_met: int = 0
    cases: int = 0
    """Distinct cases among the handler's measured steps: the denominator of the reopen and wording rates."""
    feedback: int = 0
    score_sum: int = 0
    reopened: int = 0
    wording_failures: int = 0


@dataclass(frozen=True)
class ScoreLine:
    handler: str
    compliance: float | None
    satisfaction: float | None
    reopen_rate: float | None
    wording_rate: float | None
    score: float | None
    figures: HandlerFigures = field(repr=False)


def score_handler(figures: HandlerFigures, weights: ScorecardWeights | None = None) -> ScoreLine:
    """The scorecard line of one handler: four parts on 0..1, combined into a score out of 100.

    - deadline compliance: ``steps_met / steps_measured`` (see ``tasks.reports.sla_compliance``);
    - satisfaction: the mean survey score mapped from 1..5 to 0..1, ``(mean - 1) / 4``;
    - reopened cases: ``1 - min(1, reopened / cases)``;
    - wording-check failures: ``1 - min(1, failures / cases)``.

    A part with nothing to measure (no steps, no survey answers, no cases and no reopen or failure) is left
    out and the weights of the others are scaled up to the whole; with no part at all there is no score.
    """
    weights = weights or ScorecardWeights()
    compliance = ratio(figures.steps_met, figures.steps_measured)
    mean = ratio(figures.score_sum, figures.feedback)
    satisfaction = None if mean is None else (mean - 1) / 4

    def rate(count: int) -> float | None:
        if figures.cases:
            return count / figures.cases
        return None if count == 0 else 1.0

    reopen_rate, wording_rate = rate(figures.reopened), rate(figures.wording_failures)
    parts = [
        (weights.compliance, compliance),
        (weights.satisfaction, satisfaction),
        (weights.reopened, None if reopen_rate is None else 1 - min(1.0, reopen_rate)),
        (weights.wording, None if wording_rate is None else 1 - min(1.0, wording_rate)),
    ]
    present = [(w, v) for w, v in parts if v is not None and w > 0]
    total = sum(w for w, _ in present)
    score = None if not present or total <= 0 else round(100 * sum(w * v for w, v in present) / total, 1)
    return ScoreLine(figures.handler, compliance, satisfaction, reopen_rate, wording_rate, score, figures)


# --- tables and formatting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportTable:
    """One table of a report, as the CLI prints it and a Prefect table artifact shows it."""

    key: str
    """Artifact key part: lower-case letters, digits and dashes."""
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""

    def records(self) -> list[dict[str, Any]]:
        """Rows as dictionaries with formatted cells (a table artifact takes a list of these)."""
        return [dict(zip(self.columns, (cell_text(v) for v in row), strict=True)) for row in self.rows]

    def markdown(self) -> str:
        lines = [
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" for _ in self.columns) + "|",
        ]
        lines += ["| " + " | ".join(cell_text(v).replace("|", "\\|") for v in row) + " |" for row in self.rows]
        if not self.rows:
            lines.append("| " + " | ".join("-" for _ in self.columns) + " |")
        return "\n".join(lines)

    def csv(self) -> str:
        """CSV with raw values (ratios as fractions, no rounding) for spreadsheets."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(["" if v is None else v for v in row] for row in self.rows)
        return buffer.getvalue()


def cell_text(value: Any) -> str:
    """A cell as printed: ratios (``Percent``) as ``97.5%``, day figures to one decimal, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, Percent):
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


class Percent(float):
    """A ratio 0..1 that prints as a percentage."""


def percent(value: float | None) -> Percent | None:
    return None if value is None else Percent(value)


def csv_document(tables: Iterable[ReportTable]) -> str:
    """Several tables in one CSV file, each headed by a ``# title`` line and separated by a blank line."""
    return "\n".join(f"# {t.title}\n{t.csv()}" for t in tables)

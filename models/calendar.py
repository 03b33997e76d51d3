"""Working-day calendars: which days an office works, and arithmetic in working days.

A ``Calendar`` knows, for one region, which days are working days and which are rest days — weekends,
public holidays and, in China, the make-up working weekends (调休上班) of the State Council's yearly
notice — together with the region's office hours and time zone. Company overlays add closures (an office
shut for a typhoon) and extra working days on top.

Semantics (the same in every function here and in ``models.clock``):

* A period starts the day after its trigger: the day of the trigger itself never counts.
* N working days after D is the N-th working day after D (D itself never counts, even when it is a
  working day). 0 working days after D is D.
* A calendar-day period of N days after D ends on D + N; when that day is a rest day it ends on the next
  working day (PRC Civil Code art. 203: 期间的最后一日是法定休假日的，以法定休假日结束的次日为期间的最后一日).
* A year for which a region has no official data is never guessed: every function raises
  ``NoOfficialCalendar`` naming the year and the known years — unless the calendar was built with the
  explicit fallback (``unknown_years="weekends"``), in which case days of unknown years are working Monday to
  Friday except the statutory public holidays the law fixes (China: without the make-up working days only the
  year's notice sets), and ``Calendar.is_official`` says they were assumed.

Data come from ``policies/data/regions.yaml`` (regions, time zones, office hours), ``policies/data/cn.yaml``
(China, year by year, each year citing its notice) and the ``holidays`` package (GB, US, AU and China for
the years cn.yaml delegates to it). Everything is read once per process and turned into sorted arrays of
day ordinals, so the arithmetic is a few list look-ups per call.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.errors import InvalidInput

UnknownYears = Literal["raise", "weekends"]

# The span of years a calendar's arrays cover. Years outside it are unknown for every region.
FIRST_YEAR = 1970
LAST_YEAR = 2100

_WEEKDAYS = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
}


class UnknownRegion(InvalidInput):
    """A region code that has no calendar."""


class NoOfficialCalendar(InvalidInput):
    """A date in a year for which the region's calendar has no official data."""

    def __init__(self, *, region: str, year: int, first_year: int, last_year: int) -> None:
        self.region = region
        self.year = year
        super().__init__(f"no official {region} calendar data for {year}; known years {first_year}-{last_year}")


@dataclass(frozen=True)
class OfficeHours:
    """When an office is open on a working day, read in its time zone.

    Attributes:
        timezone: IANA time zone name, e.g. ``Asia/Shanghai``.
        opens: opening time (wall clock).
        closes: closing time (wall clock), later than ``opens`` on the same day.
    """

    timezone: str
    opens: dt.time = dt.time(9)
    closes: dt.time = dt.time(18)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"unknown time zone {self.timezone!r}") from exc
        if _seconds(self.closes) <= _seconds(self.opens):
            raise InvalidInput(f"office hours {self.opens:%H:%M}-{self.closes:%H:%M}: closing must be after opening")

    @cached_property
    def zone(self) -> ZoneInfo:
        """The time zone as a ``ZoneInfo``."""
        return ZoneInfo(self.timezone)

    @property
    def text(self) -> str:
        """``09:00-18:00 Asia/Shanghai``."""
        return f"{self.opens:%H:%M}-{self.closes:%H:%M} {self.timezone}"

    @classmethod
    def parse(cls, hours: str, timezone: str) -> OfficeHours:
        """Office hours from ``"09:00-18:00"`` and a time zone name.

        Raises:
            InvalidInput: the hours are not ``HH:MM-HH:MM`` or the zone is unknown.
        """
        try:
            opens_text, closes_text = hours.split("-")
            opens = dt.time.fromisoformat(opens_text.strip())
            closes = dt.time.fromisoformat(closes_text.strip())
        except ValueError as exc:
            raise InvalidInput(f"office hours {hours!r} are not HH:MM-HH:MM") from exc
        return cls(timezone=timezone, opens=opens, closes=closes)


def _seconds(moment: dt.time) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


class _Closure(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: dt.date = Field(alias="from")
    to: dt.date | None = None
    reason: str

    @model_validator(mode="after")
    def _ordered(self) -> _Closure:
        if self.to is not None and self.to < self.from_:
            raise ValueError(f"closure ends ({self.to}) before it starts ({self.from_})")
        return self

    def days(self) -> Iterable[dt.date]:
        last = self.to or self.from_
        for ordinal in range(self.from_.toordinal(), last.toordinal() + 1):
            yield dt.date.fromordinal(ordinal)


class _ExtraWorkingDay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: dt.date
    reason: str


class Overlay(BaseModel):
    """A company's changes to a region calendar, read from YAML.

    Example::

        name: shenzhen-office
        closures:
          - {from: 2025-09-24, to: 2025-09-25, reason: typhoon Ragasa, office closed}
        working_days:
          - {date: 2025-12-27, reason: year-end closing}

    Closures make days rest days; extra working days make days working days. When a day is listed in
    both, the closure wins (an office that is shut cannot work).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    closures: tuple[_Closure, ...] = ()
    working_days: tuple[_ExtraWorkingDay, ...] = ()

    def closed_days(self) -> frozenset[dt.date]:
        """Every day a closure covers."""
        return frozenset(day for closure in self.closures for day in closure.days())

    def extra_working_days(self) -> frozenset[dt.date]:
        """Every day declared a working day."""
        return frozenset(extra.date for extra in self.working_days)


def load_overlay(source: str | Path) -> Overlay:
    """Read a company overlay from a YAML file (a ``Path``) or from YAML text (a ``str``).

    Raises:
        InvalidInput: the file is missing, is not YAML, or does not describe an overlay; the message
            names the offending key.
    """
    if isinstance(source, Path):
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read overlay {source}: {exc.strerror}") from exc
    else:
        text = source
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"overlay is not valid YAML: {str(exc).splitlines()[0]}") from exc
    try:
        return Overlay.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise InvalidInput(f"overlay {path}: {first['msg']}") from exc


class Calendar:
    """The working days of one region (plus overlays), with its office hours.

    Build one with ``region_calendar``; it is immutable. All lookups are O(1) list indexing on day
    ordinals (``date.toordinal()``).
    """

    __slots__ = (
        "_base",
        "_flags",
        "_hi",
        "_lo",
        "_rank",
        "_working",
        "description",
        "office",
        "official_first_year",
        "official_last_year",
        "overlays",
        "region",
        "site_years",
        "unknown_years",
    )

    def __init__(
        self,
        *,
        region: str,
        description: str,
        office: OfficeHours,
        flags: bytes,
        first_year: int,
        official_first_year: int,
        official_last_year: int,
        unknown_years: UnknownYears,
        overlays: tuple[str, ...] = (),
        site_years: str = "",
    ) -> None:
        self.region = region
        self.site_years = site_years
        """The desk's own years (``claimflow calendar import``), as YAML text: a pack's calendar of the same
        region is built with them too (``models.sla.pack_calendar``)."""
        self.description = description
        self.office = office
        self.official_first_year = official_first_year
        self.official_last_year = official_last_year
        self.unknown_years: UnknownYears = unknown_years
        self.overlays = overlays
        self._base = dt.date(first_year, 1, 1).toordinal()
        self._flags = flags
        rank = [0] * (len(flags) + 1)
        working: list[int] = []
        count = 0
        for index, flag in enumerate(flags):
            rank[index] = count
            if flag:
                working.append(self._base + index)
                count += 1
        rank[len(flags)] = count
        self._rank = rank
        self._working = working
        if unknown_years == "raise":
            self._lo = dt.date(official_first_year, 1, 1).toordinal()
            self._hi = dt.date(official_last_year, 12, 31).toordinal()
        else:
            self._lo = self._base
            self._hi = self._base + len(flags) - 1

    def __repr__(self) -> str:
        return (
            f"Calendar({self.region!r}, official {self.official_first_year}-{self.official_last_year}, "
            f"unknown_years={self.unknown_years!r}, office={self.office.text!r})"
        )

    # -- single days -------------------------------------------------------------------------------

    def check(self, ordinal: int) -> int:
        """The ordinal itself when the calendar can answer for that day.

        Raises:
            NoOfficialCalendar: the day lies in a year without official data (and no fallback was chosen).
        """
        if ordinal < self._lo or ordinal > self._hi:
            self._raise_for(ordinal)
        return ordinal

    def _raise_for(self, ordinal: int) -> None:
        year = dt.date.fromordinal(min(max(ordinal, 1), dt.date.max.toordinal())).year
        first, last = dt.date.fromordinal(self._lo).year, dt.date.fromordinal(self._hi).year
        raise NoOfficialCalendar(region=self.region, year=year, first_year=first, last_year=last)

    def is_working(self, day: dt.date) -> bool:
        """Whether ``day`` is a working day.

        Raises:
            NoOfficialCalendar: ``day`` is in a year without official data.
        """
        return bool(self._flags[self.check(day.toordinal()) - self._base])

    def is_official(self, day: dt.date) -> bool:
        """Whether ``day`` is covered by official data (False: assumed by the fallback: weekends and the statutory
        holidays, no make-up working days)."""
        return self.official_first_year <= day.year <= self.official_last_year

    def working_days_of(self, year: int) -> list[dt.date]:
        """Every working day of ``year``, in order.

        Raises:
            NoOfficialCalendar: the year has no official data.
        """
        first = self.check(dt.date(year, 1, 1).toordinal())
        last = self.check(dt.date(year, 12, 31).toordinal())
        lo, hi = self._rank[first - self._base], self._rank[last - self._base + 1]
        return [dt.date.fromordinal(ordinal) for ordinal in self._working[lo:hi]]

    # -- building ----------------------------------------------------------------------------------

    def with_overlay(self, overlay: Overlay) -> Calendar:
        """This calendar with a company overlay's closures and extra working days applied."""
        flags = bytearray(self._flags)
        last = self._base + len(flags) - 1
        for day in overlay.extra_working_days():
            ordinal = day.toordinal()
            if self._base <= ordinal <= last:
                flags[ordinal - self._base] = 1
        for day in overlay.closed_days():
            ordinal = day.toordinal()
            if self._base <= ordinal <= last:
                flags[ordinal - self._base] = 0
        return Calendar(
            region=self.region,
            description=f"{self.description} + overlay {overlay.name}",
            office=self.office,
            flags=bytes(flags),
            first_year=dt.date.fromordinal(self._base).year,
            official_first_year=self.official_first_year,
            official_last_year=self.official_last_year,
            unknown_years=self.unknown_years,
            overlays=(*self.overlays, overlay.name),
        )

    def with_office_hours(self, office: OfficeHours) -> Calendar:
        """This calendar with other office hours (or another time zone)."""
        twin = copy.copy(self)
        twin.office = office
        return twin


# -- arithmetic ------------------------------------------------------------------------------------


def add_working_days(start: dt.date, n: int, *, calendar: Calendar) -> dt.date:
    """The N-th working day after ``start`` (before it when N is negative).

    ``start`` itself never counts: 1 working day after a Friday is the next Monday (if it is a working
    day), and 1 working day after a Monday is the Tuesday. 0 working days after ``start`` is ``start``.

    Args:
        start: the trigger day.
        n: how many working days to move; negative moves back.
        calendar: the region calendar.

    Returns:
        The working day reached.

    Raises:
        NoOfficialCalendar: ``start`` or the answer lies in a year without official data.
    """
    ordinal = calendar.check(start.toordinal())
    if n == 0:
        return start
    index = ordinal - calendar._base
    position = calendar._rank[index + 1] + n - 1 if n > 0 else calendar._rank[index] + n
    if position < 0 or position >= len(calendar._working):
        calendar._raise_for(calendar._hi + 1 if n > 0 else calendar._lo - 1)
    return dt.date.fromordinal(calendar.check(calendar._working[position]))


def working_days_between(start: dt.date, end: dt.date, *, calendar: Calendar) -> int:
    """How many working days lie after ``start`` up to and including ``end``.

    When ``end`` is before ``start`` the answer is negative: minus the working days on or after ``end``
    and before ``start``. So ``working_days_between(d, add_working_days(d, n)) == n`` for every n.

    Raises:
        NoOfficialCalendar: a date lies in a year without official data.
    """
    a = calendar.check(start.toordinal()) - calendar._base
    b = calendar.check(end.toordinal()) - calendar._base
    rank = calendar._rank
    if b >= a:
        return rank[b + 1] - rank[a + 1]
    return -(rank[a] - rank[b])


def next_working_day(day: dt.date, *, calendar: Calendar) -> dt.date:
    """``day`` when it is a working day, else the first working day after it.

    Raises:
        NoOfficialCalendar: the answer lies in a year without official data.
    """
    ordinal = calendar.check(day.toordinal())
    position = calendar._rank[ordinal - calendar._base]
    if position >= len(calendar._working):
        calendar._raise_for(calendar._hi + 1)
    return dt.date.fromordinal(calendar.check(calendar._working[position]))


def calendar_period_end(start: dt.date, n: int, *, calendar: Calendar, roll: bool = True) -> dt.date:
    """Last day of a period of N calendar days after ``start``.

    The period starts the day after ``start`` and its N-th day is ``start + N days``; when that day is a
    rest day the period ends on the next working day (PRC Civil Code art. 203), unless ``roll`` is False
    (a source that counts plain calendar days with no such rule).

    Args:
        start: the trigger day (does not count).
        n: length in calendar days, at least 1.
        calendar: the region calendar that says which days are rest days.
        roll: whether a last day that is a rest day moves to the next working day.

    Raises:
        InvalidInput: n is less than 1.
        NoOfficialCalendar: the last day lies in a year without official data.
    """
    if n < 1:
        raise InvalidInput(f"a calendar-day period needs at least 1 day, got {n}")
    last = start + dt.timedelta(days=n)
    if not roll:
        return last
    return next_working_day(last, calendar=calendar)


# -- construction from data ------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionSpec:
    """One entry of ``policies/data/regions.yaml``."""

    code: str
    name: str
    source: Literal["cn-notices", "holidays"]
    timezone: str
    office_hours: str
    country: str | None = None
    subdivision: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _policy_data(name: str) -> Any:
    text = resources.files("policies").joinpath("data", name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


@cache
def _region_table() -> dict[str, RegionSpec]:
    table: dict[str, RegionSpec] = {}
    for code, entry in _policy_data("regions.yaml")["regions"].items():
        table[code] = RegionSpec(
            code=code,
            name=entry["name"],
            source=entry["source"],
            timezone=entry["timezone"],
            office_hours=entry["office_hours"],
            country=entry.get("country"),
            subdivision=entry.get("subdivision"),
        )
    return table


def known_regions() -> list[str]:
    """Region codes listed in ``policies/data/regions.yaml``."""
    return sorted(_region_table())


def region_spec(region: str) -> RegionSpec:
    """The region entry for ``region`` (``GB``, ``AU-VIC``, ``GB-SCT``...).

    Raises:
        UnknownRegion: no such region or subdivision.
    """
    code = region.strip().upper()
    table = _region_table()
    if code in table:
        return table[code]
    base_code, _, subdivision = code.partition("-")
    base = table.get(base_code)
    if base is None or not subdivision or base.source != "holidays" or base.country is None:
        raise UnknownRegion(f"unknown region {region!r}; known: {', '.join(known_regions())}")
    import holidays

    supported = holidays.country_holidays(base.country).subdivisions
    if subdivision not in supported:
        raise UnknownRegion(f"unknown subdivision {subdivision!r} of {base_code}; known: {', '.join(supported)}")
    return RegionSpec(
        code=code,
        name=f"{base.name.split(',')[0]}, subdivision {subdivision}",
        source="holidays",
        timezone=base.timezone,
        office_hours=base.office_hours,
        country=base.country,
        subdivision=subdivision,
    )


def _weekend_flags(first_year: int, last_year: int, weekend: frozenset[int]) -> bytearray:
    base = dt.date(first_year, 1, 1).toordinal()
    end = dt.date(last_year, 12, 31).toordinal()
    # date.weekday() of ordinal o is (o + 6) % 7
    return bytearray(0 if (ordinal + 6) % 7 in weekend else 1 for ordinal in range(base, end + 1))


def _set(flags: bytearray, base: int, days: Iterable[dt.date], value: int) -> None:
    for day in days:
        index = day.toordinal() - base
        if 0 <= index < len(flags):
            flags[index] = value


def _cn_flags(site_years: str = "") -> tuple[bytearray, int, int]:
    import holidays

    data = _policy_data("cn.yaml")
    data["years"].update(parse_site_years(site_years))
    weekend = frozenset(_WEEKDAYS[name] for name in data["weekend"])
    years = sorted(int(year) for year in data["years"])
    if years != list(range(years[0], years[-1] + 1)):
        raise InvalidInput("policies/data/cn.yaml: official years must be contiguous")
    flags = _weekend_flags(FIRST_YEAR, LAST_YEAR, weekend)
    base = dt.date(FIRST_YEAR, 1, 1).toordinal()
    package_years = [year for year in years if data["years"][year].get("source") == "holidays"]
    if package_years:
        china = holidays.China(years=package_years)
        _set(flags, base, (day for day in china if day.year in package_years), 0)
        _set(flags, base, (day for day in china.weekend_workdays if day.year in package_years), 1)
    for year in years:
        entry = data["years"][year]
        if entry.get("source") == "holidays":
            continue
        for block in entry["rest_days"]:
            span = range(block["from"].toordinal(), block["to"].toordinal() + 1)
            _set(flags, base, (dt.date.fromordinal(ordinal) for ordinal in span), 0)
        _set(flags, base, (item["date"] for item in entry["working_days"]), 1)
    # Years no notice covers yet: the statutory public holidays the law fixes (国务院《全国年节及纪念日放假办法》:
    # New Year's Day, the Spring Festival, Qingming, Labour Day, the Dragon Boat Festival, Mid-Autumn, National
    # Day), as the holidays package computes them without its guesses of the days moved in lieu; the make-up
    # working days only a notice sets are not known (``Calendar.is_official`` stays False for these years).
    later = range(years[-1] + 1, LAST_YEAR + 1)
    statutory = holidays.China(years=later, observed=False)
    _set(flags, base, (day for day in statutory if day.year in later), 0)
    return flags, years[0], years[-1]


def _package_flags(spec: RegionSpec) -> tuple[bytearray, int, int]:
    import holidays

    assert spec.country is not None
    probe = holidays.country_holidays(spec.country, subdiv=spec.subdivision)
    first = max(FIRST_YEAR, probe.start_year)
    last = min(LAST_YEAR, probe.end_year)
    observed = holidays.country_holidays(spec.country, subdiv=spec.subdivision, years=range(first, last + 1))
    flags = _weekend_flags(FIRST_YEAR, LAST_YEAR, frozenset(observed.weekend))
    base = dt.date(FIRST_YEAR, 1, 1).toordinal()
    _set(flags, base, observed.keys(), 0)
    _set(flags, base, observed.weekend_workdays, 1)
    return flags, first, last


@cache
def _region_flags(code: str, site_years: str = "") -> tuple[bytes, int, int]:
    spec = region_spec(code)
    flags, first, last = _cn_flags(site_years) if spec.source == "cn-notices" else _package_flags(spec)
    return bytes(flags), first, last


def parse_site_years(text: str) -> dict[int, dict[str, Any]]:
    """The years a desk imported (``claimflow calendar import``): YAML ``years: {2027: {notices, rest_days,
    working_days}}`` in ``policies/data/cn.yaml``'s form, each one validated (``year_problems``).

    Raises:
        InvalidInput: not that form, or a year that does not hold (every problem named).
    """
    if not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the calendar file is not YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("years"), dict):
        raise InvalidInput("the calendar file needs 'years:' with one entry per year (2027: {notices, rest_days, "
                           "working_days})")  # fmt: skip
    years: dict[int, dict[str, Any]] = {}
    problems: list[str] = []
    for year, entry in data["years"].items():
        if not isinstance(year, int) or not isinstance(entry, dict):
            problems.append(f"{year!r}: a year (2027) with its notices, rest_days and working_days")
            continue
        problems += [f"{year}: {problem}" for problem in year_problems(year, entry)]
        years[year] = entry
    if problems:
        raise InvalidInput("; ".join(problems))
    return years


def year_problems(year: int, entry: Mapping[str, Any]) -> list[str]:
    """What is wrong with one year of a State Council notice: it must cite the notice, every date must be in the
    year, every rest block run forwards, every make-up working day fall on a weekend outside the blocks, and every
    statutory public holiday of the year lie in a rest block."""
    import holidays

    problems: list[str] = []
    notices = entry.get("notices") or []
    if not notices or not all(isinstance(n, dict) and str(n.get("title", "")).strip() for n in notices):
        problems.append("cite the notice: notices: [{title: ..., url: ...}]")
    rest: set[dt.date] = set()
    for block in entry.get("rest_days") or []:
        start, end = (block.get("from"), block.get("to")) if isinstance(block, dict) else (None, None)
        if not isinstance(start, dt.date) or not isinstance(end, dt.date) or start > end:
            problems.append(f"rest block {block!r}: from and to are dates, from <= to")
            continue
        if start.year != year or end.year != year:
            problems.append(f"rest block {start}..{end} is not in {year}")
        rest.update(dt.date.fromordinal(o) for o in range(start.toordinal(), end.toordinal() + 1))
    for item in entry.get("working_days") or []:
        day = item.get("date") if isinstance(item, dict) else None
        if not isinstance(day, dt.date):
            problems.append(f"working day {item!r}: date is a date")
        elif day.year != year:
            problems.append(f"working day {day} is not in {year}")
        elif day.weekday() < 5:
            problems.append(f"working day {day} is a weekday: a make-up working day is a Saturday or Sunday")
        elif day in rest:
            problems.append(f"working day {day} lies in a rest block")
    if not rest:
        problems.append("rest_days: the notice's holiday blocks")
    else:
        missing = sorted(day for day in holidays.China(years=year, observed=False) if day not in rest)
        if missing:
            problems.append("statutory holidays outside every rest block: " + ", ".join(map(str, missing)))
    return problems


@cache
def region_calendar(
    region: str, *, unknown_years: UnknownYears = "raise", timezone: str | None = None, site_years: str = ""
) -> Calendar:
    """The calendar of a region (``CN``, ``GB``, ``US``, ``AU``, ``GB-SCT``, ``AU-VIC``...).

    Args:
        region: region code, optionally with a subdivision.
        unknown_years: ``"raise"`` (default) refuses days in years without official data;
            ``"weekends"`` treats those years as Monday-Friday working weeks, flagged by
            ``Calendar.is_official``.
        timezone: read days and office hours in this zone instead of the region's own.

    Raises:
        UnknownRegion: no such region.
        InvalidInput: unknown time zone.
    """
    spec = region_spec(region)
    site_years = site_years if spec.source == "cn-notices" else ""  # only China's calendar is read from notices
    flags, first, last = _region_flags(spec.code, site_years)
    office = OfficeHours.parse(spec.office_hours, timezone or spec.timezone)
    return Calendar(
        region=spec.code,
        description=spec.name,
        office=office,
        flags=flags,
        first_year=FIRST_YEAR,
        official_first_year=first,
        official_last_year=last,
        unknown_years=unknown_years,
        site_years=site_years,
    )

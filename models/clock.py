"""Counted time: how an SLA clock runs in each unit, with pauses.

An SLA clock does not count real time: it counts *units* — wall-clock hours, business hours, calendar
days or working days — and stops while the case is paused. This module maps every instant to a
*position* on the clock of one unit (an integer number of counted microseconds since the calendar's
origin) and back, so that every question becomes integer arithmetic:

* ``hours``: every microsecond counts (elapsed real time, DST-safe: computed in UTC).
* ``business_hours``: only the office hours of working days count, read in the office's time zone.
* ``calendar_days``: every day counts as a whole 24-hour day of the office's time zone.
* ``working_days``: working days count as whole days; rest days do not count at all.

Semantics:

* A day-based period starts the day after its trigger (00:00 the next day in the office's zone); an
  hour-based one starts at the trigger itself (a business-hour one at the next opening if the office is
  closed).
* A day-based deadline falls at the end of its last day (shown as 00:00 of the next day: the instant the
  limit is used up). When pauses push the count into the middle of a day, the deadline is the end of that
  day. A calendar-day period whose last day is a rest day ends at the end of the next working day
  (unless the rule says it does not roll).
* Time inside a paused interval does not count. A pause of k counted units before the deadline moves
  the deadline by exactly k units on the same clock. A pause with no end stops the clock: there is no
  due time until it ends.
* The fraction of a limit used at ``now`` is counted time elapsed divided by the counted time the
  deadline allows (so it is exactly 1.0 at the due time, roll past rest days included).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from models.calendar import Calendar
from models.errors import InvalidInput

MICROSECOND = dt.timedelta(microseconds=1)
HOUR_US = 3_600_000_000
DAY_US = 86_400_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MIDNIGHT = dt.time()


class Unit(StrEnum):
    """The unit an SLA limit is counted in."""

    HOURS = "hours"
    BUSINESS_HOURS = "business_hours"
    CALENDAR_DAYS = "calendar_days"
    WORKING_DAYS = "working_days"

    @property
    def is_days(self) -> bool:
        """Whether the unit counts whole days (and deadlines fall at the end of a day)."""
        return self in (Unit.CALENDAR_DAYS, Unit.WORKING_DAYS)

    def describe(self, value: Fraction | int | float) -> str:
        """``3 working days``, ``24 hours``, ``1 business hour``."""
        number = int(value) if float(value).is_integer() else float(value)
        words = self.value.replace("_", " ")
        return f"{number} {words[:-1] if number == 1 else words}"


@dataclass(frozen=True)
class Pause:
    """An interval during which the clock stands still (``end`` None: still paused)."""

    start: dt.datetime
    end: dt.datetime | None = None

    def __post_init__(self) -> None:
        _require_aware(self.start, "pause start")
        if self.end is not None:
            _require_aware(self.end, "pause end")
            if self.end < self.start:
                raise InvalidInput(f"pause ends ({self.end.isoformat()}) before it starts ({self.start.isoformat()})")


def _require_aware(instant: dt.datetime, what: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidInput(f"{what} {instant.isoformat()} has no time zone offset")


class Clock:
    """Counted time of one unit on one calendar: instants to positions and back.

    Positions are integers (counted microseconds); converting an instant to a position and the position
    back gives the same instant whenever the instant is counted time (a working day for
    ``working_days``, office hours for ``business_hours``).
    """

    __slots__ = (
        "_base",
        "_close",
        "_open",
        "_rank",
        "_span",
        "_unit_us",
        "_working",
        "calendar",
        "unit",
        "zone",
    )

    def __init__(self, unit: Unit, calendar: Calendar) -> None:
        self.unit = unit
        self.calendar = calendar
        self.zone = calendar.office.zone
        self._base = calendar._base
        self._rank = calendar._rank
        self._working = calendar._working
        office = calendar.office
        self._open = (office.opens.hour * 3600 + office.opens.minute * 60 + office.opens.second) * 1_000_000
        self._close = (office.closes.hour * 3600 + office.closes.minute * 60 + office.closes.second) * 1_000_000
        self._span = self._close - self._open
        self._unit_us = HOUR_US if unit in (Unit.HOURS, Unit.BUSINESS_HOURS) else DAY_US

    @property
    def unit_us(self) -> int:
        """Counted microseconds in one unit."""
        return self._unit_us

    def _local(self, instant: dt.datetime) -> tuple[int, int]:
        """(index of the local day in the calendar arrays, wall-clock microseconds into that day)."""
        local = instant.astimezone(self.zone)
        index = self.calendar.check(local.toordinal()) - self._base
        into = ((local.hour * 60 + local.minute) * 60 + local.second) * 1_000_000 + local.microsecond
        return index, into

    def position(self, instant: dt.datetime) -> int:
        """Counted microseconds from the clock's origin to ``instant``."""
        unit = self.unit
        if unit is Unit.HOURS:
            return (instant - _EPOCH) // MICROSECOND
        index, into = self._local(instant)
        if unit is Unit.CALENDAR_DAYS:
            return index * DAY_US + into
        working = self.calendar._flags[index]
        if unit is Unit.WORKING_DAYS:
            return self._rank[index] * DAY_US + (into if working else 0)
        if not working:
            return self._rank[index] * self._span
        return self._rank[index] * self._span + min(max(into - self._open, 0), self._span)

    def origin(self, trigger: dt.datetime) -> int:
        """Position where a period triggered at ``trigger`` starts counting.

        Day units start at 00:00 after the trigger's day; hour units start at the trigger.
        """
        unit = self.unit
        if unit is Unit.HOURS or unit is Unit.BUSINESS_HOURS:
            return self.position(trigger)
        index, _ = self._local(trigger)
        self.calendar.check(self._base + index + 1)
        if unit is Unit.CALENDAR_DAYS:
            return (index + 1) * DAY_US
        return self._rank[index + 1] * DAY_US

    def _midnight(self, ordinal: int) -> dt.datetime:
        self.calendar.check(ordinal - 1)
        return dt.datetime.combine(dt.date.fromordinal(ordinal), dt.time(), self.zone)

    def _working_ordinal(self, index: int) -> int:
        if index < 0 or index >= len(self._working):
            self.calendar._raise_for(self.calendar._hi + 1 if index >= 0 else self.calendar._lo - 1)
        return self._working[index]

    def instant(self, position: int, *, end_of_day: bool = False) -> dt.datetime:
        """The instant at which the clock reads ``position``.

        Args:
            position: counted microseconds from the origin.
            end_of_day: for day units, round up to the end of the day the position falls in (deadlines).
        """
        unit = self.unit
        if unit is Unit.HOURS:
            return (_EPOCH + position * MICROSECOND).astimezone(self.zone)
        if unit is Unit.BUSINESS_HOURS:
            days, into = divmod(position, self._span)
            if into == 0 and days > 0:
                # the end of the previous working day's office hours, not the next opening
                ordinal, into = self._working_ordinal(days - 1), self._span
            else:
                ordinal = self._working_ordinal(days)
            self.calendar.check(ordinal)
            wall = self._open + into
            return dt.datetime.combine(dt.date.fromordinal(ordinal), _wall_time(wall), self.zone)
        days, into = divmod(position, DAY_US)
        if end_of_day and into:
            days, into = days + 1, 0
        if unit is Unit.CALENDAR_DAYS:
            ordinal = self._base + days
            if into == 0:
                return self._midnight(ordinal)
            self.calendar.check(ordinal)
            return dt.datetime.combine(dt.date.fromordinal(ordinal), _wall_time(into), self.zone)
        if into == 0:
            return self._midnight(self._working_ordinal(days - 1) + 1)
        ordinal = self.calendar.check(self._working_ordinal(days))
        return dt.datetime.combine(dt.date.fromordinal(ordinal), _wall_time(into), self.zone)


@lru_cache(maxsize=256)
def clock_for(unit: Unit, calendar: Calendar) -> Clock:
    """The (cached) clock of ``unit`` on ``calendar``."""
    return Clock(unit, calendar)


def _wall_time(microseconds: int) -> dt.time:
    seconds, micro = divmod(microseconds, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return dt.time(hour, minute, second, micro)


def merged_pauses(pauses: Sequence[Pause]) -> list[Pause]:
    """Pauses sorted by start, overlapping or touching ones merged."""
    merged: list[Pause] = []
    for pause in sorted(pauses, key=lambda p: p.start):
        if merged and (merged[-1].end is None or pause.start <= merged[-1].end):
            last = merged[-1]
            end = None if last.end is None or pause.end is None else max(last.end, pause.end)
            merged[-1] = Pause(last.start, end)
        else:
            merged.append(pause)
    return merged


def advance(clock: Clock, origin: int, amount: int, pauses: Sequence[Pause] = ()) -> int | None:
    """Position reached after ``amount`` counted microseconds from ``origin``, skipping pauses.

    Returns None when an open-ended pause starts before the amount is used up (the clock stopped).
    """
    target = origin + amount
    for pause in merged_pauses(pauses) if len(pauses) > 1 else pauses:
        start = max(clock.position(pause.start), origin)
        if start >= target:
            break
        if pause.end is None:
            return None
        target += max(clock.position(pause.end), origin) - start
    return target


def counted(clock: Clock, origin: int, now: dt.datetime, pauses: Sequence[Pause] = ()) -> int:
    """Counted microseconds from ``origin`` to ``now``, paused time excluded (0 before the origin)."""
    end = clock.position(now)
    if end <= origin:
        return 0
    total = end - origin
    for pause in merged_pauses(pauses):
        start = max(clock.position(pause.start), origin)
        if start >= end:
            break
        stop = end if pause.end is None else min(max(clock.position(pause.end), origin), end)
        total -= stop - start
    return total


def exact(value: Fraction | int | float) -> Fraction:
    """``value`` as an exact fraction; floats are read as the decimal they print as (0.8 is 4/5)."""
    if isinstance(value, float):
        return _float_fraction(value)
    return Fraction(value)


@lru_cache(maxsize=1024)
def _float_fraction(value: float) -> Fraction:
    return Fraction(repr(value))


def units_to_us(value: Fraction | int | float, unit: Unit) -> int:
    """``value`` units as counted microseconds (exact for rationals, rounded up to the microsecond)."""
    per = HOUR_US if unit is Unit.HOURS or unit is Unit.BUSINESS_HOURS else DAY_US
    if type(value) is int or (type(value) is float and value.is_integer()):
        return int(value) * per
    return math.ceil(exact(value) * per)


def share(amount: int, fraction: Fraction | float) -> int:
    """``fraction`` of ``amount`` counted microseconds, rounded up (exact: no float arithmetic)."""
    ratio = exact(fraction)
    return -(-amount * ratio.numerator // ratio.denominator)


class DueTime(NamedTuple):
    """When a limit is used up, and how much counted time it allows.

    Fields: ``due`` — the instant the limit is used up (None: an open pause stopped the clock);
    ``last_day`` — for day units, the last day of the period (``due`` is the end of it); ``origin`` — clock
    position where counting started; ``allowed`` — counted microseconds from the origin to ``due``, pauses
    excluded; ``rolled`` — whether the last day was moved past rest days.
    """

    due: dt.datetime | None
    last_day: dt.date | None
    origin: int
    allowed: int | None
    rolled: bool = False


def due_time(
    trigger: dt.datetime,
    value: Fraction | int | float,
    unit: Unit,
    *,
    calendar: Calendar,
    pauses: Sequence[Pause] = (),
    roll: bool = True,
) -> DueTime:
    """When a limit of ``value`` ``unit`` triggered at ``trigger`` is used up.

    Args:
        trigger: the event that starts the clock (aware datetime).
        value: the limit, positive.
        unit: the unit it is counted in.
        calendar: working days, office hours and time zone.
        pauses: intervals during which the clock stood still.
        roll: for calendar days, whether a last day that is a rest day moves to the next working day.

    Returns:
        The due instant (in the office's time zone), the last day for day units, and the counted time
        the limit allows.

    Raises:
        InvalidInput: naive datetimes or a non-positive limit.
        NoOfficialCalendar: the period touches a year without official calendar data.
    """
    if trigger.tzinfo is None:
        _require_aware(trigger, "start")
    if value <= 0:
        raise InvalidInput(f"a limit must be positive, got {value}")
    clock = clock_for(unit, calendar)
    origin = clock.origin(trigger)
    amount = value * clock.unit_us if type(value) is int else units_to_us(value, unit)
    target = advance(clock, origin, amount, pauses) if pauses else origin + amount
    if target is None:
        return DueTime(None, None, origin, None)
    if unit is Unit.HOURS or unit is Unit.BUSINESS_HOURS:
        return DueTime(clock.instant(target), None, origin, target - origin)
    # day units end at the end of the day the count reaches (rounded up to whole days)
    days = -(-target // DAY_US)
    base = clock._base
    rolled = False
    if unit is Unit.WORKING_DAYS:
        last = clock._working_ordinal(days - 1)
        end = days * DAY_US
    else:
        last = base + days - 1
        if roll and not calendar._flags[calendar.check(last) - base]:
            last = clock._working_ordinal(clock._rank[last - base])
            rolled = True
        end = (last - base + 1) * DAY_US
    calendar.check(last)
    due = dt.datetime.combine(dt.date.fromordinal(last + 1), _MIDNIGHT, clock.zone)
    allowed = end - origin if not pauses else counted(clock, origin, due, pauses)
    return DueTime(due, dt.date.fromordinal(last), origin, allowed, rolled)


def add_business_hours(start: dt.datetime, hours: Fraction | int | float, *, calendar: Calendar) -> dt.datetime:
    """The instant ``hours`` office hours after ``start`` (counting from the next opening if closed).

    A result that falls exactly at a closing time is given as that closing time, not the next opening.

    Raises:
        InvalidInput: naive datetime.
        NoOfficialCalendar: the answer lies in a year without official data.
    """
    _require_aware(start, "start")
    clock = clock_for(Unit.BUSINESS_HOURS, calendar)
    return clock.instant(clock.position(start) + units_to_us(hours, Unit.BUSINESS_HOURS))


def elapsed(
    start: dt.datetime,
    now: dt.datetime,
    unit: Unit,
    *,
    calendar: Calendar,
    pauses: Sequence[Pause] = (),
) -> Fraction:
    """Counted time from a trigger to ``now``, in ``unit``, paused intervals excluded.

    Day units count from 00:00 after the trigger's day, so on the trigger's own day nothing has elapsed.

    Returns:
        The counted amount as an exact fraction of the unit (0 when ``now`` is before the count starts).
    """
    _require_aware(start, "start")
    _require_aware(now, "now")
    clock = clock_for(unit, calendar)
    return Fraction(counted(clock, clock.origin(start), now, pauses), clock.unit_us)


def fraction_used(
    start: dt.datetime,
    now: dt.datetime,
    value: Fraction | int | float,
    unit: Unit,
    *,
    calendar: Calendar,
    pauses: Sequence[Pause] = (),
    roll: bool = True,
) -> float:
    """Fraction of a limit used at ``now``: 0.0 at the start, 1.0 at the due time, above 1 after it.

    The denominator is the counted time the deadline allows (a calendar-day period rolled past rest days
    allows those days too), so ``fraction_used(due) == 1.0`` exactly.
    """
    due = due_time(start, value, unit, calendar=calendar, pauses=pauses, roll=roll)
    clock = clock_for(unit, calendar)
    used = counted(clock, due.origin, now, pauses)
    allowed = due.allowed if due.allowed is not None else units_to_us(value, unit)
    return used / allowed


def at_fraction(
    clock: Clock, origin: int, allowed: int, fraction: Fraction | float, pauses: Sequence[Pause] = ()
) -> dt.datetime | None:
    """The instant at which ``fraction`` of ``allowed`` counted time has been used (None: clock stopped)."""
    target = advance(clock, origin, share(allowed, fraction), pauses) if pauses else origin + share(allowed, fraction)
    return None if target is None else clock.instant(target)

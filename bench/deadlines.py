"""How many due-time computations per second the deadline rules do, against a plain day-by-day loop.

Run: ``python bench/deadlines.py [--n 100000] [--seed 7]``

The mix: starts spread over 2024-2026 in CN, GB, US and AU, limits in hours, business hours, calendar days
and working days (1-30 units). Three figures, all on one core in this process:

* ``due_time``: the rule the sla-watch recomputes (models.clock.due_time: due instant only);
* ``due``: the full answer of a policy pack (due, two reminders, two escalation times, the rule);
* ``day-by-day loop``: the obvious implementation (walk the calendar one day at a time, a set of rest days),
  on the same inputs; the answers of both are compared before timing.

The target: at least 200,000 due_time computations per second (100,000 deadlines well under a second).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import holidays

from models.calendar import Calendar, region_calendar, region_spec
from models.clock import Unit, due_time
from models.sla import due, load_pack

REGIONS = ["CN", "GB", "US", "AU"]
UNITS = list(Unit)


def make_inputs(n: int, seed: int) -> list[tuple[Calendar, dt.datetime, int, Unit]]:
    rng = random.Random(seed)
    calendars = [region_calendar(region) for region in REGIONS]
    first = dt.datetime(2024, 1, 1).timestamp()
    last = dt.datetime(2026, 9, 30).timestamp()
    inputs = []
    for _ in range(n):
        calendar = rng.choice(calendars)
        naive = dt.datetime.fromtimestamp(rng.uniform(first, last)).replace(microsecond=0)
        start = naive.replace(tzinfo=calendar.office.zone)
        inputs.append((calendar, start, rng.randint(1, 30), rng.choice(UNITS)))
    return inputs


class DayByDay:
    """The plain implementation: a set of rest days straight from the ``holidays`` package, walked one day
    (or one office day) at a time."""

    def __init__(self, calendars: list[Calendar]) -> None:
        self.rest: dict[str, set[dt.date]] = {}
        for calendar in calendars:
            spec = region_spec(calendar.region)
            source = holidays.country_holidays(spec.country or "CN", subdiv=spec.subdivision, years=range(2023, 2028))
            days = (dt.date(2023, 12, 1) + dt.timedelta(days=i) for i in range(1300))
            self.rest[calendar.region] = {day for day in days if not source.is_working_day(day)}

    def due(self, calendar: Calendar, start: dt.datetime, value: int, unit: Unit) -> dt.datetime:
        zone = calendar.office.zone
        rest = self.rest[calendar.region]
        local = start.astimezone(zone)
        if unit is Unit.HOURS:
            return (start.astimezone(dt.UTC) + dt.timedelta(hours=value)).astimezone(zone)
        if unit is Unit.CALENDAR_DAYS:
            day = local.date() + dt.timedelta(days=value)
            while day in rest:
                day += dt.timedelta(days=1)
            return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
        if unit is Unit.WORKING_DAYS:
            day, left = local.date(), value
            while left:
                day += dt.timedelta(days=1)
                if day not in rest:
                    left -= 1
            return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
        opens, closes = calendar.office.opens, calendar.office.closes
        span = dt.datetime.combine(local.date(), closes) - dt.datetime.combine(local.date(), opens)
        left_time = dt.timedelta(hours=value)
        day = local.date()
        moment = local.replace(tzinfo=None)
        while True:
            if day not in rest:
                begin = max(moment, dt.datetime.combine(day, opens))
                end = dt.datetime.combine(day, closes)
                if begin < end:
                    if end - begin >= left_time:
                        return (begin + left_time).replace(tzinfo=zone)
                    left_time -= end - begin
            day += dt.timedelta(days=1)
            moment = dt.datetime.combine(day, dt.time())
            assert span  # office hours are never empty


def rate(label: str, seconds: float, count: int) -> float:
    per_second = count / seconds
    print(f"{label:<34} {count:>9,} in {seconds:7.3f} s = {per_second:>12,.0f} /s")
    return per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    inputs = make_inputs(args.n, args.seed)
    calendars = [region_calendar(region) for region in REGIONS]
    naive = DayByDay(calendars)

    for calendar, start, value, unit in inputs[:5000]:
        fast = due_time(start, value, unit, calendar=calendar).due
        slow = naive.due(calendar, start, value, unit)
        assert fast == slow, (calendar.region, start, value, unit, fast, slow)

    print(
        f"python {sys.version.split()[0]}, {args.n:,} deadlines, regions {', '.join(REGIONS)}, "
        f"units {', '.join(UNITS)}; answers agree on 5,000 samples"
    )
    begin = time.perf_counter()
    for calendar, start, value, unit in inputs:
        due_time(start, value, unit, calendar=calendar)
    fast_rate = rate("due_time (sorted arrays)", time.perf_counter() - begin, len(inputs))

    begin = time.perf_counter()
    for calendar, start, value, unit in inputs:
        naive.due(calendar, start, value, unit)
    slow_rate = rate("day-by-day loop", time.perf_counter() - begin, len(inputs))

    pack = load_pack("service-standard")
    steps = [("claim", "review", None), ("complaint", "resolution", None), ("inquiry", "answer", "email")]
    begin = time.perf_counter()
    for index, (calendar, start, _, _) in enumerate(inputs):
        kind, step, channel = steps[index % 3]
        due(pack, kind=kind, step=step, start=start, calendar=calendar, channel=channel)
    rate("due (pack: +reminders, escalation)", time.perf_counter() - begin, len(inputs))

    print(
        f"ratio due_time / day-by-day: {fast_rate / slow_rate:.1f}x; "
        f"target 200,000/s: {'met' if fast_rate >= 200_000 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()

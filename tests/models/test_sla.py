"""SLA arithmetic: counted time, pauses, due times, reminders, escalations, several packs, validation."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.calendar import NoOfficialCalendar, region_calendar
from models.clock import (
    Pause,
    Unit,
    add_business_hours,
    clock_for,
    due_time,
    elapsed,
    fraction_used,
    units_to_us,
)
from models.errors import InvalidInput
from models.sla import NoRule, PolicyError, due, load_pack, notice_times, parse_pack, strictest

SH = ZoneInfo("Asia/Shanghai")
CN = region_calendar("CN")


def at(text: str, zone: ZoneInfo = SH) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone)


# -- due times per unit ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "value", "unit", "expected"),
    [
        pytest.param(
            "2025-09-26 15:00",
            3,
            Unit.WORKING_DAYS,
            "2025-10-01 00:00",
            id="working-days-count-makeup-sunday-end-of-third-day",
        ),
        pytest.param("2025-09-30 10:00", 1, Unit.WORKING_DAYS, "2025-10-10 00:00", id="working-day-over-national-day"),
        pytest.param(
            "2025-09-26 15:00",
            5,
            Unit.CALENDAR_DAYS,
            "2025-10-10 00:00",
            id="calendar-days-end-in-holiday-roll-to-oct-9",
        ),
        pytest.param(
            "2025-09-26 23:59",
            15,
            Unit.CALENDAR_DAYS,
            "2025-10-12 00:00",
            id="calendar-days-end-on-makeup-saturday-no-roll",
        ),
        pytest.param("2025-09-30 20:00", 24, Unit.HOURS, "2025-10-01 20:00", id="wall-clock-hours-ignore-holidays"),
        pytest.param(
            "2025-09-26 15:00",
            10,
            Unit.BUSINESS_HOURS,
            "2025-09-28 16:00",
            id="business-hours-use-makeup-sunday",
        ),
        pytest.param(
            "2025-09-30 17:00",
            2,
            Unit.BUSINESS_HOURS,
            "2025-10-09 10:00",
            id="business-hours-skip-national-day",
        ),
        pytest.param(
            "2025-09-30 07:00",
            9,
            Unit.BUSINESS_HOURS,
            "2025-09-30 18:00",
            id="business-hours-before-opening-start-at-opening-end-at-close",
        ),
        pytest.param(
            "2025-09-30 19:00",
            1,
            Unit.BUSINESS_HOURS,
            "2025-10-09 10:00",
            id="business-hours-after-closing-start-next-opening",
        ),
    ],
)
def test_due_time_per_unit(start: str, value: int, unit: Unit, expected: str) -> None:
    assert due_time(at(start), value, unit, calendar=CN).due == at(expected)


def test_day_deadline_names_its_last_day() -> None:
    result = due_time(at("2025-09-26 15:00"), 5, Unit.CALENDAR_DAYS, calendar=CN)
    assert result.last_day == dt.date(2025, 10, 9)
    assert result.rolled is True


def test_wall_clock_hours_are_dst_safe() -> None:
    london = region_calendar("GB")
    start = dt.datetime(2025, 3, 29, 12, 0, tzinfo=ZoneInfo("Europe/London"))
    result = due_time(start, 24, Unit.HOURS, calendar=london).due
    assert result is not None
    assert result.astimezone(dt.UTC) - start.astimezone(dt.UTC) == dt.timedelta(hours=24)
    assert result.isoformat() == "2025-03-30T13:00:00+01:00"


def test_add_business_hours() -> None:
    assert add_business_hours(at("2025-09-30 17:00"), 2, calendar=CN) == at("2025-10-09 10:00")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="has no time zone offset"):
        due_time(dt.datetime(2025, 9, 26, 15), 3, Unit.HOURS, calendar=CN)


def test_unknown_year_raises_for_deadlines() -> None:
    with pytest.raises(NoOfficialCalendar, match="2027"):
        due_time(at("2026-12-28 10:00"), 10, Unit.WORKING_DAYS, calendar=CN)


# -- pauses, elapsed, fraction ---------------------------------------------------------------------


def test_pause_of_one_working_day_moves_deadline_one_working_day() -> None:
    pause = Pause(at("2025-09-29 00:00"), at("2025-09-30 00:00"))
    result = due_time(at("2025-09-26 15:00"), 3, Unit.WORKING_DAYS, calendar=CN, pauses=[pause])
    assert result.due == at("2025-10-10 00:00")


def test_pause_on_rest_days_moves_nothing() -> None:
    pause = Pause(at("2025-10-01 00:00"), at("2025-10-09 00:00"))
    plain = due_time(at("2025-09-30 10:00"), 2, Unit.WORKING_DAYS, calendar=CN)
    paused = due_time(at("2025-09-30 10:00"), 2, Unit.WORKING_DAYS, calendar=CN, pauses=[pause])
    assert paused.due == plain.due


def test_partial_day_pause_ends_day_deadline_at_end_of_day() -> None:
    pause = Pause(at("2025-10-09 12:00"), at("2025-10-09 18:00"))
    result = due_time(at("2025-10-08 10:00"), 1, Unit.WORKING_DAYS, calendar=CN, pauses=[pause])
    assert result.due == at("2025-10-11 00:00")


def test_pause_after_due_changes_nothing() -> None:
    pause = Pause(at("2025-10-20 00:00"), at("2025-10-25 00:00"))
    result = due_time(at("2025-09-26 15:00"), 3, Unit.WORKING_DAYS, calendar=CN, pauses=[pause])
    assert result.due == at("2025-10-01 00:00")


def test_open_pause_stops_the_clock() -> None:
    result = due_time(at("2025-09-26 15:00"), 3, Unit.WORKING_DAYS, calendar=CN, pauses=[Pause(at("2025-09-29 09:00"))])
    assert result.due is None


def test_overlapping_pauses_count_once() -> None:
    pauses = [
        Pause(at("2025-09-27 10:00"), at("2025-09-27 14:00")),
        Pause(at("2025-09-27 12:00"), at("2025-09-27 16:00")),
    ]
    result = due_time(at("2025-09-27 09:00"), 10, Unit.HOURS, calendar=CN, pauses=pauses)
    assert result.due == at("2025-09-28 01:00")  # 10 hours + the 6 paused hours 10:00-16:00


def test_elapsed_counts_working_days_minus_pauses() -> None:
    pause = Pause(at("2025-09-29 00:00"), at("2025-09-29 12:00"))
    assert elapsed(at("2025-09-26 15:00"), at("2025-09-30 12:00"), Unit.WORKING_DAYS, calendar=CN) == Fraction(5, 2)
    assert elapsed(at("2025-09-26 15:00"), at("2025-09-30 12:00"), Unit.WORKING_DAYS, calendar=CN, pauses=[pause]) == 2
    assert elapsed(at("2025-09-26 15:00"), at("2025-09-26 23:00"), Unit.WORKING_DAYS, calendar=CN) == 0


@pytest.mark.parametrize(
    ("now", "fraction"),
    [
        pytest.param("2025-09-26 18:00", 0.0, id="trigger-day-does-not-count"),
        pytest.param("2025-09-29 12:00", 0.5, id="half-way"),
        pytest.param("2025-10-01 00:00", 1.0, id="due"),
        pytest.param("2025-10-09 00:00", 1.0, id="national-day-does-not-count"),
        pytest.param("2025-10-09 12:00", 7 / 6, id="past-due"),
    ],
)
def test_fraction_used(now: str, fraction: float) -> None:
    used = fraction_used(at("2025-09-26 15:00"), at(now), 3, Unit.WORKING_DAYS, calendar=CN)
    assert used == pytest.approx(fraction)


def test_fraction_is_one_at_a_rolled_due() -> None:
    start = at("2025-09-26 15:00")
    result = due_time(start, 5, Unit.CALENDAR_DAYS, calendar=CN)
    assert result.due is not None
    assert fraction_used(start, result.due, 5, Unit.CALENDAR_DAYS, calendar=CN) == 1.0


# -- due(): reminders, escalation, rule ------------------------------------------------------------


def test_claim_review_under_service_standard() -> None:
    result = due(load_pack("service-standard"), kind="claim", step="review", start=at("2025-09-26 15:00"), calendar=CN)
    assert result.due == at("2025-10-01 00:00")
    assert [(r.fraction, r.at) for r in result.reminders] == [
        (0.5, at("2025-09-29 12:00")),
        (0.75, at("2025-09-30 06:00")),
    ]
    assert [(e.level, e.role, e.at) for e in result.escalations] == [
        (1, "supervisor", at("2025-10-01 00:00")),
        (2, "manager", at("2025-10-10 00:00")),
    ]
    assert result.rule.pack == "service-standard"
    assert result.rule.limit == "3 working days"
    assert "Service code" in result.rule.source


def test_reminders_skip_paused_time() -> None:
    pause = Pause(at("2025-09-28 00:00"), at("2025-09-29 00:00"))
    result = due(
        load_pack("service-standard"),
        kind="claim",
        step="review",
        start=at("2025-09-26 15:00"),
        calendar=CN,
        pauses=[pause],
    )
    assert result.due == at("2025-10-10 00:00")
    assert result.reminders[0].at == at("2025-09-30 12:00")


def test_inquiry_limit_depends_on_channel() -> None:
    pack = load_pack("service-standard")
    start = at("2025-09-26 15:00")
    assert due(pack, kind="inquiry", step="answer", channel="phone", start=start, calendar=CN).due == at(
        "2025-09-27 15:00"
    )
    assert due(pack, kind="inquiry", step="answer", channel="email", start=start, calendar=CN).due == at(
        "2025-09-28 15:00"
    )
    with pytest.raises(NoRule, match="depends on the channel"):
        due(pack, kind="inquiry", step="answer", start=start, calendar=CN)


def test_duty_only_step_has_no_due_time() -> None:
    with pytest.raises(NoRule, match="duty with no number"):
        due(load_pack("cn-regulatory"), kind="claim", step="intake", start=at("2025-09-26 15:00"), calendar=CN)


def test_extensions_apply_in_order_and_only_as_often_as_allowed() -> None:
    pack = load_pack("cn-regulatory")
    start = at("2025-09-26 15:00")
    assert due(pack, kind="complaint", step="resolution", start=start, calendar=CN, extensions=["complex"]).due == at(
        "2025-10-28 00:00"
    )  # 30th day Sun 26 Oct rolls to Mon
    with pytest.raises(InvalidInput, match="may be granted 1 time"):
        due(
            pack,
            kind="complaint",
            step="resolution",
            start=start,
            calendar=CN,
            extensions=["complex", "complex"],
        )
    with pytest.raises(InvalidInput, match="unknown extension 'forever'"):
        due(pack, kind="complaint", step="resolution", start=start, calendar=CN, extensions=["forever"])


# -- several packs ---------------------------------------------------------------------------------


def test_strictest_picks_the_regulator_when_it_is_earlier() -> None:
    packs = [load_pack("service-standard"), load_pack("cn-regulatory")]
    result = strictest(packs, kind="complaint", step="resolution", start=at("2025-09-26 15:00"), calendar=CN)
    assert result.rule.pack == "cn-regulatory"
    assert result.due == at("2025-10-12 00:00")
    assert {c.rule.pack: c.due for c in result.considered} == {
        "service-standard": at("2025-10-17 00:00"),
        "cn-regulatory": at("2025-10-12 00:00"),
    }
    # the regulator has no ladder: the house ladder applies to the regulator's due time
    assert result.ladder_from == "service-standard"
    assert result.escalations[0].at == at("2025-10-12 00:00")
    assert [r.at for r in result.reminders] == [at("2025-10-04 12:00"), at("2025-10-08 06:00")]


def test_strictest_picks_the_house_standard_when_it_is_earlier() -> None:
    packs = [load_pack("service-standard"), load_pack("cn-regulatory")]
    result = strictest(packs, kind="claim", step="review", start=at("2025-09-26 15:00"), calendar=CN)
    assert result.rule.pack == "service-standard"
    assert result.ladder_from is None
    assert len(result.considered) == 2


def test_strictest_skips_windows_and_reports_when_nothing_applies() -> None:
    with pytest.raises(NoRule, match=r"no rule with a number for complaint\.intake"):
        strictest([load_pack("uk-fca")], kind="complaint", step="intake", start=at("2025-09-26 15:00"), calendar=CN)


def test_pack_counts_on_its_own_region_calendar() -> None:
    """uk-fca counts on the GB calendar in London time, whatever the case's calendar is."""
    start = dt.datetime(2025, 8, 21, 10, 0, tzinfo=ZoneInfo("Europe/London"))
    result = due(load_pack("uk-fca"), kind="complaint", step="review", start=start, calendar=CN)
    assert result.last_day == dt.date(2025, 8, 27)  # Fri, Tue (after the summer bank holiday), Wed


def test_weekend_fallback_is_flagged_in_the_answer() -> None:
    pack = parse_pack(
        """
name: fallback-test
title: t
region: CN
unknown_years: weekends
steps:
  claim:
    review:
      description: d
      starts_on: claim_received
      limit: {value: 3, unit: working_days, source: s}
"""
    )
    result = due(pack, kind="claim", step="review", start=at("2026-12-30 10:00"), calendar=CN)
    assert result.last_day == dt.date(2027, 1, 5)  # 31 Dec, (New Year's Day a statutory holiday), 4 and 5 Jan
    assert result.assumed is not None
    assert "2027" in result.assumed and "weekends and statutory holidays assumed" in result.assumed


def test_repeating_notice_every_thirty_days_while_undecided() -> None:
    pack = load_pack("us-ca")
    rule = pack.rule("claim", "review")
    assert rule is not None
    la = ZoneInfo("America/Los_Angeles")
    ca = region_calendar("US-CA")
    first = dt.datetime(2025, 3, 12, 0, 0, tzinfo=la)
    times = notice_times(rule.notices[0], first=first, until=dt.datetime(2025, 6, 1, tzinfo=la), calendar=ca)
    assert [t.date() for t in times] == [dt.date(2025, 3, 12), dt.date(2025, 4, 11), dt.date(2025, 5, 11)]


# -- validation ------------------------------------------------------------------------------------

VALID = """
name: test-pack
title: Test
steps:
  claim:
    review:
      description: Review
      starts_on: claim_received
      limit: {value: 3, unit: working_days, source: somewhere}
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            ("working_days", "weeks"),
            "steps.claim.review.limit.unit: 'weeks' is not one of hours, business_hours, calendar_days, working_days",
            id="unknown-unit",
        ),
        pytest.param(
            ("  claim:", "  claims:"),
            "steps.claims: 'claims' is not one of claim, complaint, inquiry",
            id="unknown-kind",
        ),
        pytest.param(
            ("    review:", "    reveiw:"),
            "steps.claim.reveiw: 'reveiw' is not one of intake",
            id="unknown-step",
        ),
        pytest.param(
            (", source: somewhere", ""),
            "steps.claim.review.limit.source: required key is missing",
            id="number-without-source",
        ),
        pytest.param(
            ("value: 3", "value: -3"),
            "steps.claim.review.limit.value: Input should be greater than 0",
            id="negative-limit",
        ),
        pytest.param(
            ("      starts_on: claim_received\n", ""),
            "steps.claim.review: a step with a limit needs 'starts_on'",
            id="no-start-event",
        ),
        pytest.param(("title: Test", "title: Test\nlimits: {}"), "limits: unknown key", id="unknown-key"),
        pytest.param(("steps:", "region: ZZ\nsteps:"), "region: unknown region 'ZZ'", id="unknown-region"),
        pytest.param(("name: test-pack", "name: [broken"), "not valid YAML", id="broken-yaml"),
    ],
)
def test_policy_errors_point_at_the_key(change: tuple[str, str], message: str) -> None:
    text = VALID.replace(*change)
    with pytest.raises(PolicyError) as caught:
        parse_pack(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_reminder_points_must_be_fractions() -> None:
    text = VALID + "      reminders: {at: [0.75, 1.5], source: s}\n"
    with pytest.raises(
        PolicyError, match=r"steps.claim.review.reminders.at: reminder point 1.5 is not between 0 and 1"
    ):
        parse_pack(text)


def test_escalation_needs_exactly_one_time() -> None:
    text = VALID + "      escalation:\n        - {level: 1, role: supervisor, source: s}\n"
    with pytest.raises(PolicyError, match=r"steps.claim.review.escalation.0: give exactly one of"):
        parse_pack(text)


def test_unknown_pack_lists_shipped_ones() -> None:
    with pytest.raises(InvalidInput, match="unknown policy pack 'nope'; shipped: au-asic, cn-regulatory"):
        load_pack("nope")


# -- properties ------------------------------------------------------------------------------------

UNITS = list(Unit)
REGIONS = ["CN", "GB", "US", "AU"]
moments = st.datetimes(min_value=dt.datetime(2002, 1, 1), max_value=dt.datetime(2026, 6, 30))


def _aware(moment: dt.datetime, region: str) -> dt.datetime:
    return moment.replace(tzinfo=region_calendar(region).office.zone)


@settings(max_examples=300, deadline=None)
@given(
    region=st.sampled_from(REGIONS),
    unit=st.sampled_from(UNITS),
    start=moments,
    value=st.integers(min_value=1, max_value=30),
    later=st.integers(min_value=0, max_value=30),
)
def test_due_times_are_monotonic(region: str, unit: Unit, start: dt.datetime, value: int, later: int) -> None:
    calendar = region_calendar(region)
    first = _aware(start, region)
    second = first + dt.timedelta(hours=later)
    a = due_time(first, value, unit, calendar=calendar).due
    b = due_time(second, value, unit, calendar=calendar).due
    longer = due_time(first, value + 1, unit, calendar=calendar).due
    exact_a = due_time(first, value, unit, calendar=calendar, roll=False).due
    exact_longer = due_time(first, value + 1, unit, calendar=calendar, roll=False).due
    assert a is not None and b is not None and longer is not None
    assert exact_a is not None and exact_longer is not None
    # compared as instants: Python compares two times of one zone by wall clock and ignores ``fold``, so
    # 01:00 and the repeated 01:00 of a DST fall-back would look equal
    utc = dt.UTC
    assert a.astimezone(utc) <= b.astimezone(utc)
    assert a.astimezone(utc) <= longer.astimezone(utc)  # two periods may roll to the same working day
    assert exact_a.astimezone(utc) < exact_longer.astimezone(utc)


@settings(max_examples=300, deadline=None)
@given(
    region=st.sampled_from(REGIONS),
    unit=st.sampled_from(UNITS),
    start=moments,
    value=st.integers(min_value=1, max_value=20),
    offset=st.integers(min_value=0, max_value=19),
    k=st.integers(min_value=1, max_value=10),
)
def test_a_pause_of_k_counted_units_moves_the_deadline_by_k(
    region: str, unit: Unit, start: dt.datetime, value: int, offset: int, k: int
) -> None:
    """Pause the clock for exactly k counted units somewhere before the due time: due moves k units."""
    calendar = region_calendar(region)
    trigger = _aware(start, region)
    clock = clock_for(unit, calendar)
    origin = clock.origin(trigger)
    per = units_to_us(1, unit)
    pause_from = origin + (offset % value) * per
    pause = Pause(clock.instant(pause_from), clock.instant(pause_from + k * per))
    roll = False  # rolling past rest days is applied after the count; compare raw counted positions
    plain = due_time(trigger, value, unit, calendar=calendar, roll=roll)
    paused = due_time(trigger, value, unit, calendar=calendar, pauses=[pause], roll=roll)
    assert plain.due is not None and paused.due is not None
    assert clock.position(paused.due) - clock.position(plain.due) == k * per


@settings(max_examples=200, deadline=None)
@given(
    region=st.sampled_from(REGIONS),
    unit=st.sampled_from(UNITS),
    start=moments,
    value=st.integers(min_value=1, max_value=30),
)
def test_elapsed_at_the_due_time_is_the_limit(region: str, unit: Unit, start: dt.datetime, value: int) -> None:
    calendar = region_calendar(region)
    trigger = _aware(start, region)
    result = due_time(trigger, value, unit, calendar=calendar, roll=False)
    assert result.due is not None
    assert elapsed(trigger, result.due, unit, calendar=calendar) == value

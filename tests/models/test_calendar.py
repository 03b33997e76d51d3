"""Working-day calendars: the official notices, the arithmetic and its properties."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.calendar import (
    NoOfficialCalendar,
    OfficeHours,
    UnknownRegion,
    add_working_days,
    calendar_period_end,
    load_overlay,
    next_working_day,
    region_calendar,
    working_days_between,
)
from models.errors import InvalidInput

D = dt.date.fromisoformat
CN = region_calendar("CN")


def _days(first: str, last: str) -> list[dt.date]:
    return [D(first) + dt.timedelta(days=n) for n in range((D(last) - D(first)).days + 1)]


# Every rest block and make-up working day of the State Council notices for 2024-2026
# (国务院办公厅关于2024年/2025年/2026年部分节假日安排的通知).
NOTICE_REST = [
    pytest.param("2024-01-01", "2024-01-01", id="2024-new-year"),
    pytest.param("2024-02-10", "2024-02-17", id="2024-spring-festival"),
    pytest.param("2024-04-04", "2024-04-06", id="2024-qingming"),
    pytest.param("2024-05-01", "2024-05-05", id="2024-labour-day"),
    pytest.param("2024-06-10", "2024-06-10", id="2024-dragon-boat"),
    pytest.param("2024-09-15", "2024-09-17", id="2024-mid-autumn"),
    pytest.param("2024-10-01", "2024-10-07", id="2024-national-day"),
    pytest.param("2025-01-01", "2025-01-01", id="2025-new-year"),
    pytest.param("2025-01-28", "2025-02-04", id="2025-spring-festival"),
    pytest.param("2025-04-04", "2025-04-06", id="2025-qingming"),
    pytest.param("2025-05-01", "2025-05-05", id="2025-labour-day"),
    pytest.param("2025-05-31", "2025-06-02", id="2025-dragon-boat"),
    pytest.param("2025-10-01", "2025-10-08", id="2025-national-day-and-mid-autumn"),
    pytest.param("2026-01-01", "2026-01-03", id="2026-new-year"),
    pytest.param("2026-02-15", "2026-02-23", id="2026-spring-festival-nine-days"),
    pytest.param("2026-04-04", "2026-04-06", id="2026-qingming"),
    pytest.param("2026-05-01", "2026-05-05", id="2026-labour-day"),
    pytest.param("2026-06-19", "2026-06-21", id="2026-dragon-boat"),
    pytest.param("2026-09-25", "2026-09-27", id="2026-mid-autumn"),
    pytest.param("2026-10-01", "2026-10-07", id="2026-national-day"),
]

NOTICE_MAKEUP = [
    pytest.param("2024-02-04", id="2024-spring-festival-makeup-sunday"),
    pytest.param("2024-02-18", id="2024-spring-festival-makeup-sunday-after"),
    pytest.param("2024-04-07", id="2024-qingming-makeup-sunday"),
    pytest.param("2024-04-28", id="2024-labour-day-makeup-sunday"),
    pytest.param("2024-05-11", id="2024-labour-day-makeup-saturday"),
    pytest.param("2024-09-14", id="2024-mid-autumn-makeup-saturday"),
    pytest.param("2024-09-29", id="2024-national-day-makeup-sunday"),
    pytest.param("2024-10-12", id="2024-national-day-makeup-saturday"),
    pytest.param("2025-01-26", id="2025-spring-festival-makeup-sunday"),
    pytest.param("2025-02-08", id="2025-spring-festival-makeup-saturday"),
    pytest.param("2025-04-27", id="2025-labour-day-makeup-sunday"),
    pytest.param("2025-09-28", id="2025-national-day-makeup-sunday"),
    pytest.param("2025-10-11", id="2025-national-day-makeup-saturday"),
    pytest.param("2026-01-04", id="2026-new-year-makeup-sunday"),
    pytest.param("2026-02-14", id="2026-spring-festival-makeup-saturday-before"),
    pytest.param("2026-02-28", id="2026-spring-festival-makeup-saturday-after"),
    pytest.param("2026-05-09", id="2026-labour-day-makeup-saturday"),
    pytest.param("2026-09-20", id="2026-national-day-makeup-sunday"),
    pytest.param("2026-10-10", id="2026-national-day-makeup-saturday"),
]


@pytest.mark.parametrize(("first", "last"), NOTICE_REST)
def test_cn_notice_rest_days_are_rest(first: str, last: str) -> None:
    assert [day for day in _days(first, last) if CN.is_working(day)] == []


@pytest.mark.parametrize("day", NOTICE_MAKEUP)
def test_cn_notice_makeup_weekends_are_working(day: str) -> None:
    assert D(day).weekday() >= 5
    assert CN.is_working(D(day))


@pytest.mark.parametrize("year", [2024, 2025, 2026])
def test_cn_year_has_no_other_exceptions(year: int) -> None:
    """Outside the notice's blocks and make-up days, a year is plain Monday-Friday."""
    rest = {day for param in NOTICE_REST for day in _days(*param.values) if day.year == year}
    makeup = {D(param.values[0]) for param in NOTICE_MAKEUP if param.values[0].startswith(str(year))}
    for day in _days(f"{year}-01-01", f"{year}-12-31"):
        expected = day in makeup or (day not in rest and day.weekday() < 5)
        assert CN.is_working(day) is expected, day


@pytest.mark.parametrize("year", [2024, 2025, 2026])
def test_cn_package_agrees_with_notices(year: int) -> None:
    """The holidays package (pinned >= 0.109) says the same as policies/data/cn.yaml, day by day."""
    china = holidays.China(years=year)
    for day in _days(f"{year}-01-01", f"{year}-12-31"):
        assert china.is_working_day(day) is CN.is_working(day), day


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        pytest.param("2025-09-26", 1, "2025-09-28", id="friday-plus-one-is-makeup-sunday"),
        pytest.param("2025-09-30", 1, "2025-10-09", id="national-day-week-skipped"),
        pytest.param("2025-09-30", 2, "2025-10-10", id="national-day-plus-two"),
        pytest.param("2025-10-10", 1, "2025-10-11", id="makeup-saturday-after-national-day"),
        pytest.param("2025-10-01", 1, "2025-10-09", id="start-on-a-holiday"),
        pytest.param("2026-02-13", 1, "2026-02-14", id="spring-festival-makeup-saturday-before"),
        pytest.param("2026-02-14", 1, "2026-02-24", id="nine-day-spring-festival"),
        pytest.param("2026-02-27", 1, "2026-02-28", id="spring-festival-makeup-saturday-after"),
        pytest.param("2024-02-08", 3, "2024-02-19", id="2024-spring-festival"),
        pytest.param("2025-12-31", 1, "2026-01-04", id="across-the-year-to-new-year-makeup-sunday"),
        pytest.param("2025-10-09", -1, "2025-09-30", id="back-over-national-day"),
        pytest.param("2025-10-09", 0, "2025-10-09", id="zero-is-the-day-itself"),
    ],
)
def test_cn_add_working_days(start: str, n: int, expected: str) -> None:
    assert add_working_days(D(start), n, calendar=CN) == D(expected)


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        pytest.param("2025-09-20", 11, "2025-10-09", id="ends-on-national-day-rolls-to-first-working-day"),
        pytest.param("2025-09-26", 15, "2025-10-11", id="ends-on-makeup-saturday-no-roll"),
        pytest.param("2025-09-26", 14, "2025-10-10", id="plain-friday"),
        pytest.param("2025-10-01", 3, "2025-10-09", id="starts-and-ends-in-holiday"),
        pytest.param("2026-02-05", 10, "2026-02-24", id="ends-in-spring-festival"),
        pytest.param("2025-11-14", 1, "2025-11-17", id="ends-on-saturday-rolls-to-monday"),
    ],
)
def test_cn_calendar_period_end(start: str, n: int, expected: str) -> None:
    assert calendar_period_end(D(start), n, calendar=CN) == D(expected)


def test_calendar_period_without_roll_ends_on_the_rest_day() -> None:
    assert calendar_period_end(D("2025-09-20"), 11, calendar=CN, roll=False) == D("2025-10-01")


@pytest.mark.parametrize(
    ("region", "day", "working"),
    [
        pytest.param("GB", "2025-08-25", False, id="gb-england-summer-bank-holiday"),
        pytest.param("GB-SCT", "2025-08-25", True, id="gb-scotland-works-on-english-summer-holiday"),
        pytest.param("GB-SCT", "2025-08-04", False, id="gb-scotland-summer-bank-holiday"),
        pytest.param("GB", "2026-12-28", False, id="gb-boxing-day-substitute"),
        pytest.param("US", "2025-11-27", False, id="us-thanksgiving"),
        pytest.param("US", "2026-07-03", False, id="us-independence-day-observed-friday"),
        pytest.param("US", "2025-11-28", True, id="us-federal-works-day-after-thanksgiving"),
        pytest.param("US-CA", "2025-11-28", False, id="us-california-day-after-thanksgiving"),
        pytest.param("AU", "2025-10-06", False, id="au-nsw-labour-day"),
        pytest.param("AU-VIC", "2025-10-06", True, id="au-victoria-no-october-labour-day"),
        pytest.param("AU", "2026-01-26", False, id="au-australia-day"),
        pytest.param("CN", "2025-12-25", True, id="cn-christmas-is-a-working-day"),
    ],
)
def test_region_calendars(region: str, day: str, working: bool) -> None:
    assert region_calendar(region).is_working(D(day)) is working


@pytest.mark.parametrize(
    ("region", "timezone", "hours"),
    [
        pytest.param("CN", "Asia/Shanghai", "09:00-18:00", id="cn"),
        pytest.param("GB", "Europe/London", "09:00-17:00", id="gb"),
        pytest.param("US", "America/New_York", "09:00-17:00", id="us"),
        pytest.param("AU", "Australia/Sydney", "09:00-17:00", id="au-nsw"),
        pytest.param("AU-WA", "Australia/Perth", "09:00-17:00", id="au-wa"),
    ],
)
def test_office_hours_per_region(region: str, timezone: str, hours: str) -> None:
    assert region_calendar(region).office.text == f"{hours} {timezone}"


def test_unknown_cn_year_raises_with_known_years() -> None:
    with pytest.raises(NoOfficialCalendar, match=r"no official CN calendar data for 2027; known years 2001-2026"):
        CN.is_working(D("2027-01-04"))


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: add_working_days(D("2026-12-30"), 5, calendar=CN), id="add-runs-into-2027"),
        pytest.param(lambda: add_working_days(D("2027-01-04"), 1, calendar=CN), id="start-in-2027"),
        pytest.param(lambda: calendar_period_end(D("2026-12-20"), 30, calendar=CN), id="period-ends-in-2027"),
        pytest.param(lambda: working_days_between(D("2026-12-01"), D("2027-01-10"), calendar=CN), id="count"),
        pytest.param(lambda: next_working_day(D("2000-06-01"), calendar=CN), id="before-2001"),
    ],
)
def test_no_guessing_beyond_the_notices(call) -> None:
    with pytest.raises(NoOfficialCalendar):
        call()


def test_the_fallback_is_explicit_flagged_and_keeps_the_statutory_holidays() -> None:
    fallback = region_calendar("CN", unknown_years="weekends")
    # New Year's Day 2027 is a statutory holiday even before the year's notice: the next working day is Monday
    assert add_working_days(D("2026-12-31"), 1, calendar=fallback) == D("2027-01-04")
    # the Spring Festival 2027 (eve 5 Feb to 8 Feb) and National Day (1-3 Oct) are rest days; no make-up day known
    assert [fallback.is_working(D(f"2027-{day}")) for day in ("02-05", "02-08", "02-09", "10-01", "10-04")] == [
        False,
        False,
        True,
        False,
        True,
    ]
    assert not fallback.is_working(D("2027-05-01")) and fallback.is_working(D("2027-05-03"))
    assert fallback.is_official(D("2027-01-01")) is False
    assert fallback.is_official(D("2026-12-31")) is True


def test_error_is_invalid_input_with_exit_code_two() -> None:
    with pytest.raises(InvalidInput) as caught:
        region_calendar("XX")
    assert isinstance(caught.value, UnknownRegion)
    assert caught.value.exit_code == 2
    assert "known: AU" in str(caught.value)


def test_unknown_subdivision_lists_the_known_ones() -> None:
    with pytest.raises(UnknownRegion, match="unknown subdivision 'ZZ' of GB; known: ENG, NIR, SCT, WLS"):
        region_calendar("GB-ZZ")


OVERLAY = """
name: shenzhen-office
closures:
  - {from: 2025-09-24, to: 2025-09-25, reason: "typhoon, office closed"}
working_days:
  - {date: 2025-12-27, reason: year-end closing}
"""


def test_overlay_closures_and_extra_working_days() -> None:
    overlaid = CN.with_overlay(load_overlay(OVERLAY))
    assert not overlaid.is_working(D("2025-09-24"))
    assert not overlaid.is_working(D("2025-09-25"))
    assert overlaid.is_working(D("2025-12-27"))
    assert add_working_days(D("2025-09-23"), 1, calendar=overlaid) == D("2025-09-26")
    assert add_working_days(D("2025-09-23"), 1, calendar=CN) == D("2025-09-24")
    assert overlaid.overlays == ("shenzhen-office",)


def test_overlay_from_file(tmp_path: Path) -> None:
    path = tmp_path / "overlay.yaml"
    path.write_text(OVERLAY, encoding="utf-8")
    assert load_overlay(path).name == "shenzhen-office"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("name: x\nclosures: [{from: 2025-09-24, reson: typo}]", r"closures\.0\.(reson|reason)", id="typo"),
        pytest.param(
            "name: x\nclosures: [{from: 2025-09-24, to: 2025-09-01, reason: r}]",
            "before it starts",
            id="reversed",
        ),
        pytest.param("name: [", "not valid YAML", id="yaml"),
    ],
)
def test_overlay_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_overlay(text)


def test_office_hours_must_close_after_opening() -> None:
    with pytest.raises(InvalidInput, match="closing must be after opening"):
        OfficeHours.parse("18:00-09:00", "Asia/Shanghai")
    with pytest.raises(InvalidInput, match="unknown time zone"):
        OfficeHours.parse("09:00-18:00", "Mars/Olympus")


# -- properties ---------------------------------------------------------------------------------------

REGIONS = ["CN", "GB", "US", "AU"]
# far enough inside the official years that 40 working days either way stay inside them
known_days = st.dates(min_value=dt.date(2001, 4, 1), max_value=dt.date(2026, 10, 31))


@settings(max_examples=300, deadline=None)
@given(region=st.sampled_from(REGIONS), start=known_days, n=st.integers(min_value=-40, max_value=40))
def test_adding_then_counting_is_the_identity(region: str, start: dt.date, n: int) -> None:
    calendar = region_calendar(region)
    assert working_days_between(start, add_working_days(start, n, calendar=calendar), calendar=calendar) == n


@settings(max_examples=300, deadline=None)
@given(region=st.sampled_from(REGIONS), start=known_days, n=st.integers(min_value=1, max_value=40))
def test_add_working_days_lands_on_a_working_day_after_start(region: str, start: dt.date, n: int) -> None:
    calendar = region_calendar(region)
    result = add_working_days(start, n, calendar=calendar)
    assert result > start
    assert calendar.is_working(result)


@settings(max_examples=300, deadline=None)
@given(
    region=st.sampled_from(REGIONS),
    a=known_days,
    b=known_days,
    n=st.integers(min_value=1, max_value=40),
)
def test_results_are_monotonic(region: str, a: dt.date, b: dt.date, n: int) -> None:
    calendar = region_calendar(region)
    early, late = min(a, b), max(a, b)
    assert add_working_days(early, n, calendar=calendar) <= add_working_days(late, n, calendar=calendar)
    assert add_working_days(early, n, calendar=calendar) < add_working_days(early, n + 1, calendar=calendar)
    assert calendar_period_end(early, n, calendar=calendar) <= calendar_period_end(late, n, calendar=calendar)


@settings(max_examples=200, deadline=None)
@given(region=st.sampled_from(REGIONS), start=known_days, n=st.integers(min_value=1, max_value=60))
def test_day_by_day_loop_agrees(region: str, start: dt.date, n: int) -> None:
    """The array arithmetic says the same as walking the calendar one day at a time."""
    calendar = region_calendar(region)
    day, left = start, n
    while left:
        day += dt.timedelta(days=1)
        left -= calendar.is_working(day)
    assert add_working_days(start, n, calendar=calendar) == day

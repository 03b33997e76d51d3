"""The desk's deadline rules at the edge of the published calendars: December's cases reach into a year whose
official calendar is not out yet; every pack then counts weekends-only and says so, instead of refusing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from claimflow.settings import get_settings
from models.calendar import NoOfficialCalendar, region_calendar
from models.sla import load_pack, pack_calendar
from tasks.deadlines import desk_rules

LAST_OFFICIAL = region_calendar("CN").official_last_year
DECEMBER = datetime(LAST_OFFICIAL, 12, 3, 2, 0, tzinfo=UTC)


def test_a_december_claim_under_the_cn_regulator_gets_a_deadline_flagged_as_assumed() -> None:
    rules = desk_rules(get_settings())
    schedule = rules.schedule(kind="claim", step="review", jurisdiction="CN", channel="email", start=DECEMBER)
    # it used to refuse the case: the CN pack's 30 days cross the year. The house pack's 3 working days govern.
    assert schedule.due is not None and DECEMBER < schedule.due <= datetime(LAST_OFFICIAL, 12, 9, tzinfo=UTC)


def test_a_period_that_crosses_into_an_unpublished_year_is_counted_weekends_only_and_says_so() -> None:
    rules = desk_rules(get_settings())
    schedule = rules.schedule(kind="complaint", step="resolution", jurisdiction="CN", channel="email",
                              start=datetime(LAST_OFFICIAL, 12, 28, 2, 0, tzinfo=UTC))  # fmt: skip
    assert schedule.due is not None and schedule.due.year == LAST_OFFICIAL + 1
    assert "assumed calendar, weekends and statutory holidays only" in schedule.rule


def test_a_pack_with_its_own_region_follows_the_fallback_it_is_given() -> None:
    pack = load_pack("cn-regulatory")
    strict = pack_calendar(pack, region_calendar("CN"))
    relaxed = pack_calendar(pack, region_calendar("CN", unknown_years="weekends"))
    day = datetime(LAST_OFFICIAL + 1, 1, 15).date()
    saturday = datetime(LAST_OFFICIAL + 1, 1, 16).date()
    assert (day.weekday(), saturday.weekday()) == (4, 5)
    with pytest.raises(NoOfficialCalendar):
        strict.is_working(day)
    assert relaxed.is_working(day) and not relaxed.is_working(saturday)
    assert not relaxed.is_official(day)

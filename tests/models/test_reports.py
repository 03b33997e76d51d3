"""The quality reports' pure rules: periods, the working-day table, percentiles, the scorecard, formatting."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from models.calendar import region_calendar, working_days_between
from models.errors import InvalidInput
from models.reports import (
    HandlerFigures,
    Percent,
    ReportPeriod,
    ReportTable,
    ScorecardWeights,
    age_bucket,
    cell_text,
    interpolate,
    percentile,
    period_for,
    score_handler,
    trend_period,
    utc_offsets,
    workday_rows,
)

CN = region_calendar("CN", unknown_years="weekends", timezone="Asia/Shanghai")


@pytest.mark.parametrize(
    ("timezone", "start", "end", "first", "after"),
    [
        pytest.param("Asia/Shanghai", date(2026, 3, 2), date(2026, 3, 8),
                     datetime(2026, 3, 1, 16, tzinfo=UTC), datetime(2026, 3, 8, 16, tzinfo=UTC), id="shanghai-week"),
        pytest.param("Europe/London", date(2026, 3, 29), date(2026, 3, 29),
                     datetime(2026, 3, 29, 0, tzinfo=UTC), datetime(2026, 3, 29, 23, tzinfo=UTC), id="london-dst-day-23h"),
    ],
)  # fmt: skip
def test_a_period_is_whole_local_days(timezone: str, start: date, end: date, first: datetime, after: datetime) -> None:
    assert ReportPeriod(start, end, timezone).bounds() == (first, after)


@pytest.mark.parametrize(
    ("kind", "today", "expected"),
    [
        pytest.param("day", date(2026, 3, 9), (date(2026, 3, 8), date(2026, 3, 8)), id="day-is-yesterday"),
        pytest.param("week", date(2026, 3, 9), (date(2026, 3, 2), date(2026, 3, 8)), id="week-run-on-monday"),
        pytest.param("week", date(2026, 3, 12), (date(2026, 3, 2), date(2026, 3, 8)), id="week-run-on-thursday"),
    ],
)
def test_period_for(kind: str, today: date, expected: tuple[date, date]) -> None:
    period = period_for(kind, today, "Asia/Shanghai")  # type: ignore[arg-type]
    assert (period.start, period.end) == expected


def test_trend_covers_whole_weeks_up_to_the_period() -> None:
    trend = trend_period(ReportPeriod(date(2026, 3, 4), date(2026, 3, 4)), 8)
    assert (trend.start, trend.end) == (date(2026, 1, 12), date(2026, 3, 8))


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        pytest.param("2026-03-09", "2026-03-02", "ends (2026-03-02) before it starts (2026-03-09)", id="reversed"),
        pytest.param("2026-02-30", "2026-03-02", "--from: '2026-02-30' is not a date", id="no-such-day"),
    ],
)
def test_bad_periods_are_refused(start: str, end: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        ReportPeriod.parse(start, end, "Asia/Shanghai")


def test_workday_rows_agree_with_working_days_between() -> None:
    rows = {r.day: r for r in workday_rows(CN, date(2026, 1, 1), date(2026, 12, 31))}
    for a, b in [
        (date(2026, 2, 26), date(2026, 3, 7)),
        (date(2026, 9, 30), date(2026, 10, 9)),
        (date(2026, 1, 2), date(2026, 1, 2)),
    ]:
        assert rows[b].worked - rows[a].worked == working_days_between(a, b, calendar=CN)
    assert rows[date(2026, 3, 8)].week == date(2026, 3, 2)


def test_utc_offsets_find_the_dst_changes_to_the_second() -> None:
    offsets = utc_offsets("Europe/London", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))
    assert offsets == [
        (datetime(2026, 1, 1, tzinfo=UTC), 0),
        (datetime(2026, 3, 29, 1, tzinfo=UTC), 3600),
        (datetime(2026, 10, 25, 1, tzinfo=UTC), 0),
    ]
    assert utc_offsets("Asia/Shanghai", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)) == [
        (datetime(2026, 1, 1, tzinfo=UTC), 28800)
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([], None, id="nothing"),
        pytest.param([3], 3.0, id="one-value"),
        pytest.param([4, 7], 6.7, id="two-values-interpolated"),
        pytest.param(list(range(1, 11)), 9.1, id="one-to-ten"),
        pytest.param([5] * 7, 5.0, id="all-equal"),
    ],
)
def test_percentile_is_percentile_cont(values: list[float], expected: float | None) -> None:
    assert percentile(values) == pytest.approx(expected)


def test_interpolate_without_a_next_row_takes_the_last() -> None:
    assert interpolate(4, None, 500) == 4.0
    assert interpolate(None, None, 0) is None


@pytest.mark.parametrize(
    ("days", "bucket"),
    [(-1, "0-2"), (0, "0-2"), (2, "0-2"), (3, "3-5"), (10, "6-10"), (11, "11-20"), (21, "21+"), (400, "21+")],
)
def test_age_buckets(days: int, bucket: str) -> None:
    assert age_bucket(days) == bucket


@pytest.mark.parametrize(
    ("figures", "score"),
    [
        pytest.param(HandlerFigures("a", 10, 10, 5, 2, 10, 0, 0), 100.0, id="perfect"),
        pytest.param(HandlerFigures("a", 10, 5, 5, 2, 2, 5, 5), 20.0, id="half-late-worst-score-all-reopened"),
        pytest.param(HandlerFigures("a", 4, 3, 2), 85.7, id="no-survey-parts-rescaled"),
        pytest.param(HandlerFigures("a", reopened=1), 0.0, id="reopen-without-measured-steps"),
        pytest.param(HandlerFigures("a"), None, id="nothing-to-measure"),
    ],
)
def test_score_handler(figures: HandlerFigures, score: float | None) -> None:
    assert score_handler(figures).score == score


def test_weights_can_leave_a_part_out() -> None:
    figures = HandlerFigures("a", 10, 5, 5, 2, 10, 0, 0)
    assert score_handler(figures, ScorecardWeights(compliance=1, satisfaction=0, reopened=0, wording=0)).score == 50.0


def test_tables_format_for_people_and_export_raw_values() -> None:
    table = ReportTable("t", "T", ("who", "rate", "days"), (("li|wei", Percent(0.975), 2.25), ("x", None, None)))
    assert [cell_text(v) for v in table.rows[0]] == ["li|wei", "97.5%", "2.2"]
    assert table.records()[1] == {"who": "x", "rate": "-", "days": "-"}
    assert "| li\\|wei | 97.5% | 2.2 |" in table.markdown()
    assert table.csv().splitlines() == ["who,rate,days", "li|wei,0.975,2.25", "x,,"]

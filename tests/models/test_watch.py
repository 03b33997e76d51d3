"""The watcher's rule: what is due at `now` for one step's schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.watch import (
    Schedule,
    ScheduledEscalation,
    ScheduledReminder,
    progress_after_reschedule,
    what_is_due,
)

T = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
H = timedelta(hours=1)
SCHEDULE = Schedule(
    due=T + 10 * H,
    reminders=(ScheduledReminder(0.5, T + 5 * H), ScheduledReminder(0.75, T + 7.5 * H)),
    escalations=(
        ScheduledEscalation(1, "supervisor", T + 10 * H),
        ScheduledEscalation(2, "manager", T + 34 * H),
    ),
    rule="service-standard claim.review: 3 working days",
)


@pytest.mark.parametrize(
    ("now", "done", "level", "decided", "reminders", "escalations", "next_check"),
    [
        pytest.param(T, 0, 0, False, [], [], T + 5 * H, id="nothing-yet"),
        pytest.param(T + 5 * H, 0, 0, False, [0.5], [], T + 7.5 * H, id="half-way-reminder"),
        pytest.param(T + 8 * H, 1, 0, False, [0.75], [], T + 10 * H, id="three-quarter-reminder"),
        pytest.param(T + 8 * H, 0, 0, False, [0.5, 0.75], [], T + 10 * H, id="watcher-was-down-both-reminders"),
        pytest.param(T + 10 * H, 2, 0, False, [], [1], T + 34 * H, id="breach-goes-to-supervisor"),
        pytest.param(T + 34 * H, 2, 1, False, [], [2], None, id="undecided-goes-to-manager"),
        pytest.param(T + 34 * H, 2, 1, True, [], [], None, id="decided-stops-the-ladder"),
        pytest.param(T + 40 * H, 0, 0, False, [0.5, 0.75], [1, 2], None, id="everything-at-once-after-an-outage"),
    ],
)  # fmt: skip
def test_what_is_due(now, done, level, decided, reminders, escalations, next_check) -> None:
    outcome = what_is_due(SCHEDULE, reminders_done=done, escalation_level=level, now=now,
                          last_escalation_decided=decided)  # fmt: skip
    assert [r.fraction for r in outcome.reminders] == reminders
    assert [e.level for e in outcome.escalations] == escalations
    assert outcome.next_check_at == next_check
    assert outcome.reminders_done == done + len(reminders)
    assert outcome.escalation_level == max([level, *escalations])


def test_nothing_is_recorded_twice() -> None:
    first = what_is_due(SCHEDULE, reminders_done=0, escalation_level=0, now=T + 11 * H)
    again = what_is_due(SCHEDULE, reminders_done=first.reminders_done, escalation_level=first.escalation_level,
                        now=T + 11 * H)  # fmt: skip
    assert again.reminders == () and again.escalations == ()
    assert again.next_check_at == T + 34 * H


def test_the_schedule_survives_its_stored_form() -> None:
    assert Schedule.from_json(SCHEDULE.to_json()) == SCHEDULE


def test_a_reschedule_does_not_resend_past_reminders_and_restarts_the_ladder() -> None:
    extended = Schedule(
        due=T + 20 * H,
        reminders=(ScheduledReminder(0.5, T + 10 * H), ScheduledReminder(0.75, T + 15 * H)),
        escalations=(ScheduledEscalation(1, "supervisor", T + 20 * H),),
        rule="extended",
    )
    assert progress_after_reschedule(extended, now=T + 12 * H) == (1, T + 15 * H)
    assert progress_after_reschedule(extended, now=T + 16 * H) == (2, T + 20 * H)


def test_a_pass_logs_at_most_the_limit_and_says_how_many_more() -> None:
    from models.watch import at_most

    lines = [f"CLM-{n} review: reminder at 50% to li.wei" for n in range(250)]
    shown = at_most(lines, 100)
    assert shown[:100] == lines[:100] and len(shown) == 101
    assert shown[-1] == "... and 150 more (each case's events list them)"
    assert at_most(lines[:100], 100) == lines[:100]
    assert at_most([], 100) == []


def test_an_escalation_run_is_named_by_case_level_and_round_from_the_second_breach_on() -> None:
    from models.watch import escalation_run_name

    assert escalation_run_name("CLM-2026-000001", level=1, ladder_round=0) == "CLM-2026-000001-escalation-1"
    assert escalation_run_name("CLM-2026-000001", level=2, ladder_round=1) == "CLM-2026-000001-escalation-2-round-2"

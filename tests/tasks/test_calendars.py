"""The year's official CN calendar imported after the fact: validated, kept in the data directory, and every open
step whose due time was assumed counted again, its move on the case's log and its assignee told."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from claimflow.db import session_scope
from claimflow.settings import get_settings
from models.errors import InvalidInput
from models.tables import Outbox
from tasks.calendars import import_years, retime_assumed
from tasks.workflow import Desk

# a made-up notice for 2027 in the real one's form: New Year's Day's block runs to Monday 4 January
NOTICE_2027 = """
years:
  2027:
    notices:
      - {title: "国务院办公厅关于2027年部分节假日安排的通知 (a test's stand-in)", url: "https://www.gov.cn/"}
    rest_days:
      - {from: 2027-01-01, to: 2027-01-04, name: 元旦}
      - {from: 2027-02-05, to: 2027-02-11, name: 春节}
      - {from: 2027-04-03, to: 2027-04-05, name: 清明节}
      - {from: 2027-05-01, to: 2027-05-05, name: 劳动节}
      - {from: 2027-06-09, to: 2027-06-11, name: 端午节}
      - {from: 2027-09-15, to: 2027-09-17, name: 中秋节}
      - {from: 2027-10-01, to: 2027-10-07, name: 国庆节}
    working_days:
      - {date: 2027-01-09, name: 元旦调休上班 (Saturday)}
      - {date: 2027-02-20, name: 春节调休上班 (Saturday)}
"""


def test_an_imported_notice_retimes_the_steps_whose_due_time_was_assumed_and_tells_their_handlers(world) -> None:
    world.now = datetime(2026, 12, 30, 2, 0, tzinfo=UTC)  # Wednesday: the review's 3 working days reach into 2027
    claim = world.file(product_line="motor")
    before = world.step(claim, "review")
    assert "[assumed calendar, weekends and statutory holidays only" in before.policy_rule
    assert before.due_at == datetime(2027, 1, 5, 16, 0, tzinfo=UTC)  # 31 Dec, (1 January a holiday), 4 and 5 Jan
    advance_before = world.step(claim, "advance_payment")
    assert "[assumed calendar" in advance_before.policy_rule

    settings = get_settings()
    assert import_years(settings, NOTICE_2027) == [2027]
    with session_scope(world.engine) as session:
        moved = retime_assumed(session, Desk.of(settings), now=world.now)
    after = world.step(claim, "review")
    assert after.due_at == datetime(2027, 1, 6, 16, 0, tzinfo=UTC)  # 4 January is a rest day under the notice
    assert "assumed" not in after.policy_rule
    advance_after = world.step(claim, "advance_payment")  # 60 calendar days: the same day, no longer assumed
    assert advance_after.due_at == advance_before.due_at and "assumed" not in advance_after.policy_rule
    assert [(m.number, m.step, m.previous, m.due) for m in moved] == [
        (claim.number, "review", before.due_at, after.due_at)]  # fmt: skip
    assert world.events(claim).count("step_retimed") == 1
    with Session(world.engine) as session:
        told = session.exec(select(Outbox).where(Outbox.template == "staff_step_retimed")).one()
    assert told.recipient == f"staff:{_assignee(world, claim)}"
    with session_scope(world.engine) as session:  # counted again: nothing moves twice
        assert retime_assumed(session, Desk.of(settings), now=world.now) == []


def _assignee(world, case) -> str:
    from models.tables import Staff

    with Session(world.engine) as session:
        return session.get(Staff, world.step(case, "review").assignee_id).username


@pytest.mark.parametrize(
    ("notice", "says"),
    [
        (
            NOTICE_2027.replace("2027-01-09, name: 元旦调休上班 (Saturday)", "2027-01-08, name: x"),
            "2027-01-08 is a weekday: a make-up working day is a Saturday or Sunday",
        ),
        (
            NOTICE_2027.replace(
                "{from: 2027-06-09, to: 2027-06-11, name: 端午节}", "{from: 2027-06-10, to: 2027-06-11, name: x}"
            ),
            "statutory holidays outside every rest block: 2027-06-09",
        ),
        (NOTICE_2027.replace("{title:", "{titel:"), "cite the notice"),
        (
            NOTICE_2027.replace("{from: 2027-10-01, to: 2027-10-07", "{from: 2027-10-01, to: 2028-01-02"),
            "rest block 2027-10-01..2028-01-02 is not in 2027",
        ),
        (NOTICE_2027.replace("2027:", "2028:", 1), "2028: import 2027 first"),
        (NOTICE_2027.replace("  2027:", "  2026:", 1), "2026 is already official"),
        ("years: [2027]", "needs 'years:'"),
        ("years: {2027: {", "is not YAML"),
    ],
)
def test_a_notice_that_does_not_hold_is_refused_with_what_is_wrong_and_nothing_changes(notice: str, says: str) -> None:
    from tasks.deadlines import site_calendar_path

    with pytest.raises(InvalidInput, match=None) as refused:
        import_years(get_settings(), notice)
    assert says in str(refused.value)
    assert not site_calendar_path(get_settings()).exists()

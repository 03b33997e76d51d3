"""``claimflow feedback ...`` and ``claimflow survey ...`` against a real database on each backend."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from claimflow.cli import main
from claimflow.db import session_scope
from claimflow.settings import get_settings
from models.enums import CaseKind
from models.survey import SurveyAnswer
from models.tables import Case, Feedback, Staff
from tasks.feedback import answer_survey


@pytest.fixture
def cli(world, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*argv: str, code: int = 0) -> str:
        get_settings.cache_clear()
        result = main(list(argv))
        captured = capsys.readouterr()
        assert result == code, f"exit {result}: {captured.out}{captured.err}"
        return captured.out if code == 0 else captured.err

    return run


def settled(world) -> Case:
    case = world.file(product_line="motor", amount_claimed=Decimal("8000"))
    handler_id = world.case(case).handler_id
    with Session(world.engine) as session:
        who = session.get(Staff, handler_id).username
    assert world.decide(case, who, decision="approve", amount="7800").applied
    assert world.decide(case, who, amount="7800", reference="PAY-1", account_hint="6789").applied
    world.advance(case, "finish")
    return world.case(case)


def test_a_phone_note_is_recorded_classified_and_listed(world, cli) -> None:
    case = settled(world)
    said = cli("feedback", "note", case.number, "--text", "客服很耐心，谢谢", "--by", "li.wei", "--score", "5",
               "--solved", "yes")  # fmt: skip
    assert f"recorded feedback on {case.number}: praise" in said
    listed = cli("feedback", "list", "--case", case.number)
    assert "phone" in listed and "praise" in listed and "li.wei" in listed


def test_a_dissatisfied_call_opens_a_follow_up_that_a_supervisor_closes(world, cli) -> None:
    case = settled(world)
    said = cli("feedback", "note", case.number, "--text", "I want to complain, the amount is wrong", "--by",
               "li.wei", "--score", "1")  # fmt: skip
    assert "complaint" in said and "follow-up step 'follow_up' opened" in said and "complaint CMP-" in said
    assert case.number in cli("feedback", "follow-ups")
    step = world.step(case, "follow_up")
    with Session(world.engine) as session:
        supervisor = session.get(Staff, step.assignee_id).username
    assert f"follow_up closed by {supervisor}" in cli("feedback", "done", case.number, "--by", supervisor, "--note",
                                                       "explained the deduction")  # fmt: skip
    assert case.number not in cli("feedback", "follow-ups")


def test_a_call_about_the_desk_with_no_case_is_noted_and_a_supervisor_closes_it(world, cli) -> None:
    said = cli("feedback", "note", "--text", "我要投诉，电话总是占线", "--by", "li.wei", "--name", "赵六",
               "--phone", "13700002222")  # fmt: skip
    found = re.search(r"recorded general feedback #(\d+): complaint .*; complaint (CMP-\S+) filed", said)
    assert found, said
    number = found.group(2)
    listed = cli("feedback", "list")
    assert "(general)" in listed and number in listed
    assert f"#{found.group(1)}" in cli("feedback", "follow-ups")  # waits for a supervisor
    assert "supervisor or manager" in cli("feedback", "done", "--feedback", found.group(1), "--by", "li.wei",
                                          "--note", "read", code=2)  # fmt: skip
    assert f"general feedback #{found.group(1)} closed by zhao.min" in cli(
        "feedback", "done", "--feedback", found.group(1), "--by", "zhao.min", "--note", "Added a line; told the team"
    )
    assert f"#{found.group(1)}" not in cli("feedback", "follow-ups")
    with Session(world.engine) as session:
        complaint = session.exec(select(Case).where(Case.number == number)).one()
        assert complaint.kind == CaseKind.complaint
    refused = cli("feedback", "note", "CLM-2026-000001", "--text", "hi", "--by", "li.wei", "--phone", "1", code=2)
    assert "for feedback with no case" in refused
    assert "--name: who it was" in cli("feedback", "note", "--text", "投诉", "--by", "li.wei", "--phone", "13700002222",
                                       code=2)  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["feedback", "note", "CLM-2026-999999", "--text", "hi", "--by", "li.wei"], 3, "no case"),
        (["feedback", "note", "{case}", "--text", "hi", "--by", "nobody"], 3, "no active staff member"),
        (["feedback", "note", "{case}", "--text", "hi", "--by", "li.wei", "--solved", "maybe"], 2, "yes or no"),
        (["feedback", "note", "{case}", "--text", "hi", "--by", "li.wei", "--channel", "email"], 2, "phone, counter"),
        (["feedback", "done", "{case}", "--by", "zhao.min", "--note", "x"], 3, "no open follow-up"),
        (["survey", "sample", "--now", "yesterday"], 2, "not an ISO 8601"),
        (["survey", "sample", "--now", "2026-03-02T10:00:00"], 2, "no offset"),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(world, cli, argv: list[str], code: int, message: str) -> None:
    case = settled(world)
    assert message in cli(*[a.replace("{case}", case.number) for a in argv], code=code)
    with Session(world.engine) as session:
        assert session.exec(select(Feedback)).all() == []


def test_the_survey_link_and_its_state(world, cli) -> None:
    case = settled(world)  # the world's clock is in March 2026; the command runs now, after the link expired
    shown = cli("survey", "link", case.number)
    assert f"{case.number}: http://127.0.0.1:8000/survey/" in shown
    assert "(resolution)" in shown and shown.rstrip().endswith("expired")
    token = shown.split("/survey/")[1].split()[0]
    with session_scope(world.engine) as session:
        answer_survey(session, world.desk, token=token, answer=SurveyAnswer(4, True, None), now=world.now)
    assert cli("survey", "link", case.number).rstrip().endswith("used")  # used beats expired
    other = world.file(CaseKind.inquiry)
    assert "no survey invitation was sent" in cli("survey", "link", other.number, code=3)


def test_survey_sample_invites_recently_closed_cases(world, cli) -> None:
    inquiry = world.file(CaseKind.inquiry)
    with Session(world.engine) as session:
        stored = session.get(Case, inquiry.id)
        stored.status, stored.closed_at = "closed", world.now
        session.add(stored)
        session.commit()
    said = cli("survey", "sample", "--now", (world.now + timedelta(hours=2)).isoformat())
    assert "1 case(s) closed" in said and "invited 1" in said and inquiry.number in said
    assert "invited 0" in cli("survey", "sample", "--now", (world.now + timedelta(hours=3)).isoformat())

"""A customer answers the survey on a phone, in a real browser.

Everything is real: the web app of ``claimflow.web.intake`` served by uvicorn on a free port (its public address is
the desk's ``public_url``, so the link in the invitation message is the one opened), Debian's headless chromium
driven by Playwright with a phone's viewport, and the case database. For each language the customer opens the
link of a settled claim, switches to large text, answers with a low score or "not solved", is thanked and told
a supervisor will call; the answer and the follow-up step are in the database; the link then says it was used,
and a tampered link says it is not valid (403).

It runs on both backends like every database test (PostgreSQL adds about 4 s a language to the browser runs);
the pages and answers over HTTP in all their cases are in ``test_survey_page.py``.

Screenshots of the form and the thanks page, per language and backend, are kept in the test's ``tmp_path`` and
copied to ``CLAIMFLOW_SCREENSHOT_DIR`` when that is set (``survey-form-en-sqlite.png``, ...). Needs chromium and
Playwright (see ``tests/browser.py``).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from claimflow.web.app import create_app
from models.survey import PAGE_TEXT
from models.tables import Case, Feedback, Outbox, SurveyInvitation
from tasks.feedback import follow_up_step_name
from tasks.workflow import Desk
from tests.browser import PHONE, SCALE, chromium, screenshot, serious_violations, served
from tests.claimflow.test_survey_page import CUSTOMERS, survey_settings
from tests.tasks.test_feedback import settled_claim

pytestmark = pytest.mark.slow

UI_SECONDS = 15  # any one thing the page is expected to show
# What each customer answers: a low score, or "not solved"; either way a supervisor calls back.
ANSWERS = {
    "zh-CN": {"score": 4, "solved": False, "comment": "理赔员很耐心，不过车还没修好，希望有人跟进。"},
    "en": {"score": 2, "solved": True, "comment": "It was paid in the end, but it took three phone calls."},
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(expect_seconds=UI_SECONDS) as launched:
        yield launched


@pytest.fixture
def site(world: Any) -> Iterator[str]:
    """The web app on the test's database, served by uvicorn in a thread on a free port; its address is the
    desk's public address from now on (the links sent carry it). The app's clock is the world's."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    address = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings = survey_settings(world, public_url=address)
    world.desk = Desk(rules=world.desk.rules, settings=settings)
    app = create_app(settings, world.engine, clock=lambda: world.now, launch=False)
    with served(app, listener):
        yield address


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A fresh phone-sized browser profile."""
    # the pages' policy allows no script: the profile lets the test's own (axe-core) in
    context = browser.new_context(viewport=PHONE, device_scale_factor=SCALE, is_mobile=True, has_touch=True,
                                  bypass_csp=True)  # fmt: skip
    context.set_default_timeout(UI_SECONDS * 1000)
    page = context.new_page()
    yield page
    context.close()


def survey_link(world: Any, case: Case) -> str:
    """The link in the invitation message sent to the customer."""
    with Session(world.engine) as session:
        message = session.exec(
            select(Outbox).where(Outbox.case_id == case.id, Outbox.template == "survey_invitation")
        ).one()
    link: str = message.context["survey_url"]
    return link


def font_size(page: Any, selector: str) -> float:
    """The computed font size of the first element matching ``selector``, in CSS pixels."""
    size: float = page.locator(selector).first.evaluate("element => parseFloat(getComputedStyle(element).fontSize)")
    return size


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_a_customer_answers_the_survey_on_a_phone(
    world: Any, site: str, phone: Any, language: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    words, answer, desk_phone = PAGE_TEXT[language], ANSWERS[language], world.desk.settings.desk_phone
    named = f"{language}-{world.engine.dialect.name}.png"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    case = settled_claim(world, customer=CUSTOMERS[language])
    link = survey_link(world, case)
    assert link.startswith(f"{site}/survey/")
    heading = phone.get_by_role("heading", level=1)

    # the customer opens the link from the message: the form, in their language, about their case
    opened = phone.goto(link)
    assert opened is not None and opened.status == 200
    expect(phone.locator("html")).to_have_attribute("lang", language)
    expect(phone).to_have_title(words["title"])
    expect(heading).to_have_text(words["title"])
    expect(phone.get_by_text(words["intro"].format(case=case.number))).to_be_visible()
    normal = {part: font_size(phone, part) for part in ("body", "h1", "label.choice", "button")}

    # switches to large text: everything written grows
    phone.get_by_role("link", name=words["large_on"]).click()
    expect(phone.locator("body")).to_have_class("large")
    expect(phone).to_have_url(re.compile(r"[?&]large=1"))
    expect(phone.locator("html")).to_have_attribute("lang", language)
    large = {part: font_size(phone, part) for part in normal}
    assert all(large[part] >= normal[part] * 1.3 for part in normal), (normal, large)
    expect(phone.get_by_role("link", name=words["large_off"])).to_be_visible()

    # answers
    phone.get_by_label(words[f"score_{answer['score']}"], exact=True).check()
    phone.get_by_label(words["yes" if answer["solved"] else "no"], exact=True).check()
    phone.get_by_label(words["comment"]).fill(answer["comment"])
    expect(phone.get_by_label(words[f"score_{answer['score']}"], exact=True)).to_be_checked()
    screenshot(phone, shots, f"survey-form-{named}")
    assert serious_violations(phone) == []  # axe-core: nothing serious or critical
    phone.get_by_role("button", name=words["submit"]).click()

    # is thanked, told a supervisor will call, still in their language and in large text
    expect(heading).to_have_text(words["thanks_title"])
    expect(phone.locator("#done")).to_have_text(words["thanks"])
    expect(phone.locator("#call-back")).to_have_text(words["call_back"])
    expect(phone.locator("html")).to_have_attribute("lang", language)
    expect(phone.locator("body")).to_have_class("large")
    expect(phone.locator("nav a")).to_have_count(0)  # switching now would only say "used"
    screenshot(phone, shots, f"survey-thanks-{named}")
    assert serious_violations(phone) == []

    # the answer is stored and a supervisor's follow-up is open
    with Session(world.engine) as session:
        feedback = session.exec(select(Feedback).where(Feedback.case_id == case.id)).one()
        invitation = session.exec(select(SurveyInvitation).where(SurveyInvitation.case_id == case.id)).one()
    assert (feedback.score, feedback.solved, feedback.comment) == (answer["score"], answer["solved"], answer["comment"])
    assert (feedback.channel, feedback.invitation_id) == ("survey", invitation.id)
    assert invitation.answered_at == world.now
    step = world.step(case, follow_up_step_name(case))
    assert step is not None and step.status == "open" and step.assignee_id is not None

    # the same link again: answered already (in their language)
    again = phone.goto(link)
    assert again is not None and again.status == 410
    expect(phone.locator("html")).to_have_attribute("lang", language)
    expect(heading).to_have_text(words["error_title"])
    expect(phone.locator("#refused")).to_have_text(words["used"].format(phone=desk_phone))
    expect(phone.locator("form")).to_have_count(0)

    # a tampered link: not valid (the desk's language, then theirs by the language link)
    token = link.rsplit("/", 1)[1]
    tampered = link[: -len(token)] + token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
    forged = phone.goto(tampered)
    assert forged is not None and forged.status == 403
    shown = world.desk.settings.default_language
    expect(phone.locator("#refused")).to_have_text(PAGE_TEXT[shown]["forged"].format(phone=desk_phone))
    if shown != language:
        with phone.expect_response(re.compile(r"/survey/")) as switched:
            phone.locator("#toggle-language").click()
        assert switched.value.status == 403
        expect(phone.locator("html")).to_have_attribute("lang", language)
    expect(phone.locator("#refused")).to_have_text(words["forged"].format(phone=desk_phone))
    expect(phone.locator("#refused")).to_have_attribute("data-reason", "forged")
    with Session(world.engine) as session:
        assert len(session.exec(select(Feedback)).all()) == 1

    for name in (f"survey-form-{named}", f"survey-thanks-{named}"):
        assert (shots / name).stat().st_size > 0

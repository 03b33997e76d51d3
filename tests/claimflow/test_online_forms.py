"""The online claim and complaint forms (``/claim``, ``/complaint``): the same intake as the webhook, idempotent on
the form's token, the case number and status link at once; bad input answered next to its field with what was
typed kept (escaped); abuse limits with clear pages; a phone-sized browser without script, checked by axe-core."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from claimflow.web.app import create_app
from models.tables import Case, Event, Outbox
from models.webforms import TEXT
from tests.browser import checking, phone, screenshot, serious_violations, serving
from tests.claimflow.test_survey_page import survey_settings

MARKUP = '<script>alert(1)</script><img src=x onerror="y">'


def app_for(world: Any, **changes: Any) -> Any:
    return create_app(survey_settings(world, **changes), world.engine, clock=lambda: world.now, launch=False)


@pytest.fixture
def client(world: Any) -> Iterator[TestClient]:
    with TestClient(app_for(world)) as test_client:
        yield test_client


def token_of(html: str) -> str:
    return re.search(r'name="form_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def claim_fields(client: TestClient, language: str = "zh-CN", **changes: str) -> dict[str, str]:
    form = client.get("/claim", params={"lang": language})
    fields = {"form_token": token_of(form.text), "lang": language, "large": "0", "name": "张三丰",
              "phone": "13812345678", "email": "", "policy_number": "P-778899", "product_line": "motor",
              "incident_date": "2026-02-27", "amount": "12800.50", "description": "在路口被追尾，后保险杠损坏"}  # fmt: skip
    return {**fields, **changes}


def cases(world: Any) -> list[Case]:
    with Session(world.engine) as session:
        return list(session.exec(select(Case)).all())


@pytest.mark.parametrize("kind", ["claim", "complaint"])
@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_form_is_a_plain_page_in_the_language_asked_for(client: TestClient, kind: str, language: str) -> None:
    page = client.get(f"/{kind}", params={"lang": language})
    assert page.status_code == 200
    html, words = page.text, TEXT[language]
    assert f'<html lang="{language}">' in html and f"<title>{words['title_' + kind]}</title>" in html
    assert f'<form method="post" action="/{kind}" id="webform">' in html and "<script" not in html
    assert re.fullmatch(r"[\w-]{32}", token_of(html))
    assert token_of(html) != token_of(client.get(f"/{kind}").text)  # a token per form handed out
    for label in ("name", "phone", "email", f"description_{kind}"):
        assert words[label] in html, label


def test_a_claim_filed_online_goes_through_intake_and_answers_at_once(world: Any, client: TestClient) -> None:
    fields = claim_fields(client)
    done = client.post("/claim", data=fields)
    assert done.status_code == 201, done.text
    [case] = cases(world)
    assert case.number in done.text and TEXT["zh-CN"]["done"].format(number=case.number) in done.text
    assert (case.kind, case.channel, case.product_line, str(case.amount_claimed)) == ("claim", "webhook", "motor",
                                                                                       "12800.50")  # fmt: skip
    assert case.handler_id is not None  # routed to a motor handler, as any claim
    with Session(world.engine) as session:
        first = session.exec(select(Event).where(Event.case_id == case.id).order_by(Event.sequence)).first()  # type: ignore[arg-type]
        acknowledged = session.exec(select(Outbox).where(Outbox.case_id == case.id,
                                                         Outbox.template == "acknowledgement_claim")).all()  # fmt: skip
    assert first is not None and first.actor == "webhook:online-form" and len(acknowledged) == 1
    link = re.search(r'id="status-link" href="(/status/[^"]+)"', done.text).group(1)  # type: ignore[union-attr]
    status = client.get(link)
    assert status.status_code == 200 and case.number in status.text
    # a double tap, or the page sent again: the same case, said so, never a second one
    again = client.post("/claim", data=fields)
    assert again.status_code == 200 and case.number in again.text
    assert TEXT["zh-CN"]["again"].format(number=case.number) in again.text
    assert len(cases(world)) == 1
    changed = client.post("/claim", data={**fields, "description": "something else"})
    assert changed.status_code == 409 and 'data-reason="conflict"' in changed.text
    assert len(cases(world)) == 1


def test_a_complaint_names_the_case_it_is_about(world: Any, client: TestClient) -> None:
    client.post("/claim", data=claim_fields(client))
    [claim] = cases(world)
    form = client.get("/complaint", params={"lang": "en"})
    fields = {"form_token": token_of(form.text), "lang": "en", "name": "Jane Doe", "email": "jane@example.com",
              "related_case_number": claim.number.lower(), "description": "The assessor was late twice."}  # fmt: skip
    unknown = client.post("/complaint", data={**fields, "related_case_number": "CLM-2026-999999"})
    assert unknown.status_code == 422 and 'id="related_case_number-problem"' in unknown.text
    done = client.post("/complaint", data=fields)
    assert done.status_code == 201, done.text
    complaint = next(c for c in cases(world) if c.kind == "complaint")
    assert complaint.related_case_id == claim.id and complaint.number in done.text


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"name": ""}, "name", "missing"),
        ({"description": "  "}, "description", "missing"),
        ({"phone": "", "email": ""}, "phone", "contact_missing"),
        ({"phone": "call me"}, "phone", "bad_phone"),
        ({"email": "not-an-address"}, "email", "bad_email"),
        ({"incident_date": "2099-01-01"}, "incident_date", "bad_date"),
        ({"incident_date": "30/11/2026"}, "incident_date", "bad_date"),
        ({"amount": "lots"}, "amount", "bad_amount"),
        ({"amount": "-5"}, "amount", "bad_amount"),
        ({"amount": "1.234"}, "amount", "bad_amount"),
        ({"name": "x" * 201}, "name", "too_long"),
        ({"name": "张\x00三"}, None, None),  # a NUL is dropped, not stored and not a crash
    ],
)
def test_bad_input_is_answered_next_to_its_field_and_keeps_what_was_typed(
    world: Any, client: TestClient, changes: dict[str, str], field: str | None, problem: str | None
) -> None:
    answer = client.post("/claim", data=claim_fields(client, "en", **changes))
    if field is None:
        assert answer.status_code == 201 and cases(world)[0].number in answer.text
        return
    assert answer.status_code == 422, answer.text
    words = TEXT["en"]
    assert f'id="{field}-problem"' in answer.text and 'aria-invalid="true"' in answer.text
    assert words[problem].format(limit=200) in answer.text  # type: ignore[index]
    assert 'value="P-778899"' in answer.text  # the rest as typed
    assert cases(world) == []


def test_markup_in_every_field_is_shown_escaped_and_stored_as_typed(world: Any, client: TestClient) -> None:
    hostile = {name: MARKUP for name in ("name", "policy_number", "description")}
    shown = client.post("/claim", data=claim_fields(client, "en", **hostile, phone="call", amount=MARKUP,
                                                     incident_date=MARKUP, email=MARKUP))  # fmt: skip
    assert shown.status_code == 422
    assert "<script>alert" not in shown.text and "<img src=x" not in shown.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.text
    filed = client.post("/claim", data=claim_fields(client, "en", name=MARKUP, description=MARKUP))
    assert filed.status_code == 201 and "<script>alert" not in filed.text
    with Session(world.engine) as session:
        [case] = session.exec(select(Case)).all()
    assert case.description == MARKUP  # stored as typed: escaping is the page's job, not the database's


def test_abuse_limits_answer_with_a_page_that_says_which(world: Any) -> None:
    with TestClient(app_for(world, form_filings_per_hour=2, form_max_bytes=4096)) as limited:
        for _ in range(2):
            assert limited.post("/claim", data=claim_fields(limited)).status_code == 201
        third = limited.post("/claim", data=claim_fields(limited))
        assert third.status_code == 429 and 'data-reason="too_many"' in third.text
        assert "010-0000-0000" in third.text
        big = limited.post("/claim", data=claim_fields(limited, description="x" * 5000))
        assert big.status_code == 413 and 'data-reason="too_big"' in big.text
        # a form that is not ours (no token, or a made-up one) is shown again with a token of ours
        fields = claim_fields(limited)
        del fields["form_token"]
        again = limited.post("/claim", data=fields)
        assert again.status_code == 422 and re.fullmatch(r"[\w-]{32}", token_of(again.text))
    assert len(cases(world)) == 2


@pytest.mark.slow
@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_a_customer_files_a_claim_on_a_phone_without_script(
    world: Any, browser: Any, language: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with serving(app_for(world)) as address:
        checked = checking(browser)
        page = checked.new_page()
        for kind in ("claim", "complaint"):
            for large in ("0", "1"):
                page.goto(f"{address}/{kind}?lang={language}&large={large}")
                assert serious_violations(page) == [], (kind, large)
        checked.close()
        context = phone(browser, script=False)
        page = context.new_page()
        page.goto(f"{address}/claim?lang={language}&large=1")
        screenshot(page, tmp_path, f"claim-form-{language}-large.png")
        page.fill("#name", "刘洋" if language == "zh-CN" else "Liu Yang")
        page.fill("#phone", "13900001111")
        page.select_option("#product_line", "health")
        page.fill("#description", "住院治疗，需要理赔" if language == "zh-CN" else "A stay in hospital")
        page.click("button[type=submit]")
        expect(page.locator("#done")).to_be_visible()  # a click does not wait for the page it posts to
        number = re.search(r"CLM-\d{4}-\d{6}", page.locator("#done").inner_text()).group(0)  # type: ignore[union-attr]
        assert page.locator("body.large").count() == 1  # large text kept through the post
        screenshot(page, tmp_path, f"claim-done-{language}.png")
        page.click("#status-link")
        expect(page).to_have_url(re.compile(r"/status/"))
        expect(page.locator("body")).to_contain_text(number)
        context.close()
    [case] = cases(world)
    assert case.number == number and case.product_line == "health"

"""The customer's case status page (``/status/<token>``): every customer message about a case carries a fresh
signed link; it shows that case only, in the customer's words and language; a forged, unknown, expired or revoked
link gets a page that says which, with the desk's phone; nothing is rendered unescaped."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, select

from claimflow.db import session_scope
from claimflow.secrets import survey_key
from claimflow.web.app import create_app
from models.status import PAGE_TEXT, make_status_token
from models.tables import Attachment, DocumentRequirement, Outbox
from tasks.outbox import OutboxConfig, Outgoing, prepare
from tasks.status import revoke_links, status_url
from tests.browser import checking, phone, screenshot, serious_violations, serving
from tests.claimflow.test_survey_page import CUSTOMERS, survey_settings
from tests.tasks.test_feedback import handler_of

DESK_PHONE = "010-0000-0000"  # the test desk's (tests/conftest.py)


@pytest.fixture
def client(world: Any) -> Iterator[TestClient]:
    app = create_app(survey_settings(world), world.engine, clock=lambda: world.now, launch=False)
    with TestClient(app) as test_client:
        yield test_client


def waiting_for_documents(world: Any, language: str) -> Any:
    case = world.file(product_line="motor", customer=CUSTOMERS[language])
    assert world.decide(case, handler_of(world, case).username, decision="request_documents").applied
    return world.case(case)


def link_path(world: Any, case: Any) -> str:
    url = status_url(world.desk.settings, case_id=case.id, now=world.now)
    return url[url.index("/status/") :]


def refused(response: Any, status: int, reason: str, language: str) -> None:
    assert response.status_code == status, response.text
    html = response.text
    assert f'data-reason="{reason}"' in html and f'<html lang="{language}">' in html
    assert PAGE_TEXT[language][reason].format(phone=DESK_PHONE) in html
    assert 'id="history"' not in html


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_link_shows_the_customers_own_case_in_their_words(world: Any, client: TestClient, language: str) -> None:
    case = waiting_for_documents(world, language)
    page = client.get(link_path(world, case), params={"lang": language})
    assert page.status_code == 200, page.text
    html, words = page.text, PAGE_TEXT[language]
    assert case.number in html and f"<title>{words['title']}</title>" in html
    shown = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    expected = {
        "zh-CN": ["等待您补充材料", "驾驶证", "维修发票", "已收到您的案件", "已通知您补充材料", DESK_PHONE],
        "en": ["We are waiting for documents from you", "driving licence", "repair invoice", "We received your case",
               "We asked you for documents", DESK_PHONE],
    }[language]  # fmt: skip
    for phrase in expected:
        assert phrase in shown, phrase
    # nothing another person could use, nothing of the desk's inside
    handler = handler_of(world, case)
    for private in (handler.username, handler.name, CUSTOMERS[language].name, CUSTOMERS[language].email,
                    "step_opened", "assigned", "clock_paused"):  # fmt: skip
        assert private not in html, private
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in html


def test_promised_dates_are_the_open_steps_in_office_time(world: Any, client: TestClient) -> None:
    case = world.file(product_line="motor", customer=CUSTOMERS["en"])
    step = world.step(case, "review")
    html = client.get(link_path(world, case), params={"lang": "en"}).text
    from models.messages import format_deadline

    assert f"We decide on your claim: by {format_deadline(step.due_at, 'en', 'Asia/Shanghai')}" in html


def test_every_customer_message_carries_a_fresh_link_that_opens_the_case(world: Any, client: TestClient) -> None:
    case = world.file(product_line="motor", customer=CUSTOMERS["zh-CN"])
    mail = SecretStr("mailto://desk:secret@127.0.0.1:2525?from=desk@insurer.example")
    config = OutboxConfig.from_settings(survey_settings(world, customer_email_url=mail))
    with Session(world.engine) as session:
        row = session.exec(select(Outbox).where(Outbox.case_id == case.id, Outbox.template == "acknowledgement_claim")
                           ).one()  # fmt: skip
        first = prepare(session, row, config=config)
        time.sleep(0.002)  # a link is issued at the millisecond its message leaves: two in one millisecond are alike
        second = prepare(session, row, config=config)
        assert isinstance(first, Outgoing) and isinstance(second, Outgoing), first
    links = [re.search(r"https?://\S+/status/[\w.\-]+", m.text).group(0) for m in (first, second)]  # type: ignore[union-attr]
    assert links[0] != links[1]  # a fresh one each time a message leaves (CI once prepared both in one millisecond)
    assert "查看案件进度" in first.text and links[0] in (first.html or "")  # type: ignore[union-attr]
    for link in links:
        page = client.get(link[link.index("/status/") :])
        assert page.status_code == 200 and case.number in page.text


def test_a_forged_unknown_expired_or_revoked_link_says_which(world: Any, client: TestClient) -> None:
    case = waiting_for_documents(world, "zh-CN")
    path = link_path(world, case)
    refused(client.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")), 403, "forged", "zh-CN")
    refused(client.get("/status/not-a-token", params={"lang": "en"}), 403, "forged", "en")
    refused(client.get("/status/" + "x" * 600), 403, "forged", "zh-CN")
    key = survey_key(survey_settings(world))
    nobody = make_status_token(key, case_id=999_999, issued_at=world.now, expires_at=world.now + timedelta(days=1))
    refused(client.get(f"/status/{nobody}"), 404, "unknown", "zh-CN")
    world.now += timedelta(days=world.desk.settings.status_link_days, seconds=1)
    refused(client.get(path, params={"lang": "en"}), 410, "expired", "en")
    fresh = link_path(world, case)
    assert client.get(fresh).status_code == 200
    with session_scope(world.engine) as session:
        revoke_links(session, number=case.number, by="zhao.min", now=world.now)
    refused(client.get(fresh), 410, "revoked", "zh-CN")
    world.now += timedelta(seconds=1)
    assert client.get(link_path(world, case)).status_code == 200  # the next message's link opens
    assert "status_links_revoked" in world.events(case)


def test_nothing_on_the_page_is_rendered_unescaped(world: Any, client: TestClient) -> None:
    case = waiting_for_documents(world, "en")
    with session_scope(world.engine) as session:
        session.add(DocumentRequirement(case_id=case.id, document_type='<script>alert(1)</script><b onclick="x">'))
    html = client.get(link_path(world, case), params={"lang": "en", "large": "1"}).text
    assert "<script>alert" not in html and "<b onclick" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<body class="large">' in html


def test_the_page_speaks_the_customers_language_unless_the_link_asks_for_the_other(
    world: Any, client: TestClient
) -> None:
    case = waiting_for_documents(world, "en")  # the desk's language is zh-CN
    assert '<html lang="en">' in client.get(link_path(world, case)).text
    assert '<html lang="zh-CN">' in client.get(link_path(world, case), params={"lang": "zh-CN"}).text


def test_both_languages_have_the_same_words() -> None:
    assert PAGE_TEXT["zh-CN"].keys() == PAGE_TEXT["en"].keys()


@pytest.mark.slow
@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_status_page_on_a_phone_works_without_script_and_passes_axe(
    world: Any, browser: Any, language: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    case = waiting_for_documents(world, language)
    app = create_app(survey_settings(world), world.engine, clock=lambda: world.now, launch=False)
    with serving(app) as address:
        context = phone(browser, script=False)
        page = context.new_page()
        page.goto(address + link_path(world, case))
        assert page.title() == PAGE_TEXT[language]["title"]
        assert page.locator("#needed-list li").count() >= 3
        screenshot(page, tmp_path, f"status-{language}.png")
        # a missing document sent from the phone, without script
        page.select_option("#document", "repair invoice")
        page.set_input_files("#file", files=[{"name": "invoice.pdf", "mimeType": "application/pdf", "buffer": PDF}])
        page.click("#upload button[type=submit]")  # a click does not wait for the page it posts to: expect does
        expect(page).to_have_url(re.compile(r"[?&]sent=1"))
        expect(page.locator("#sent")).to_have_count(1)
        assert page.locator("#needed-list li").count() >= 2
        screenshot(page, tmp_path, f"status-{language}-sent.png")
        page.locator("#toggle-size").click()
        expect(page.locator("body.large")).to_have_count(1)
        screenshot(page, tmp_path, f"status-{language}-large.png")
        page.locator("a[href^='/standards']").click()  # the service standards, in the same language and size
        expect(page).to_have_url(re.compile(r"/standards"))
        expect(page.locator("body.large")).to_have_count(1)
        context.close()
        checked = checking(browser)
        page = checked.new_page()
        for large in ("0", "1"):
            page.goto(f"{address}{link_path(world, case)}?large={large}")
            assert serious_violations(page) == [], (language, large)
        page.goto(f"{address}/status/forged-link")
        assert page.locator("#refused").count() == 1 and serious_violations(page) == []
        checked.close()


PDF = b"%PDF-1.7\n" + b"0" * 2000 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 500


def upload(client: TestClient, path: str, document: str, content: bytes, name: str = "scan.pdf", **params: str) -> Any:
    return client.post(f"{path}/documents", params=params, data={"document": document},
                       files={"file": (name, content, "application/octet-stream")}, follow_redirects=False)  # fmt: skip


def test_a_missing_document_sent_from_the_page_ticks_it_and_tells_the_handler(world: Any, client: TestClient) -> None:
    case = waiting_for_documents(world, "en")
    path = link_path(world, case)
    page = client.get(path).text
    assert 'enctype="multipart/form-data"' in page and '<option value="repair invoice">repair invoice</option>' in page
    sent = upload(client, path, "repair invoice", PDF, name="invoice.pdf", lang="en")
    assert (
        sent.status_code == 303
        and sent.headers["location"].startswith(f"{path}?")
        and "sent=1" in sent.headers["location"]
    )
    after = client.get(sent.headers["location"]).text
    assert PAGE_TEXT["en"]["sent"] in after
    assert '<option value="repair invoice">' not in after  # ticked off the list
    with Session(world.engine) as session:
        ticked = session.exec(select(DocumentRequirement).where(DocumentRequirement.case_id == case.id,
                                                                DocumentRequirement.document_type == "repair invoice")
                              ).one()  # fmt: skip
        stored = session.exec(select(Attachment).where(Attachment.case_id == case.id)).all()
        told = session.exec(select(Outbox).where(Outbox.template == "staff_documents_arrived")).all()
    assert ticked.received_at is not None
    assert [(a.source, a.document_type, a.content_type, a.size) for a in stored] == [
        ("status-page", "repair invoice", "application/pdf", len(PDF))
    ]
    assert (tmp := world.desk.settings.data_dir / stored[0].storage_path).read_bytes() == PDF, tmp
    [message] = told
    assert message.recipient == f"staff:{handler_of(world, case).username}"
    assert "repair invoice" in message.context["documents"] and message.context["still_missing"]
    assert world.events(case)[-1] == "documents_arrived"
    # an image of another document is taken too; the same document twice is not needed any more
    assert upload(client, path, "photos of the damage", PNG, name="photo.png").status_code == 303
    again = upload(client, path, "repair invoice", PDF)
    assert again.status_code == 422 and 'data-reason="not_needed"' in again.text


@pytest.mark.parametrize(
    ("content", "status", "reason"),
    [
        (b"MZ\x90\x00 an executable", 415, "wrong_type"),
        (b"<html><script>alert(1)</script></html>", 415, "wrong_type"),
        (b"", 422, "empty"),
    ],
)
def test_an_upload_of_the_wrong_kind_is_refused_and_nothing_stored(
    world: Any, client: TestClient, content: bytes, status: int, reason: str
) -> None:
    case = waiting_for_documents(world, "zh-CN")
    refused_upload = upload(client, link_path(world, case), "repair invoice", content)
    assert refused_upload.status_code == status and f'data-reason="{reason}"' in refused_upload.text
    with Session(world.engine) as session:
        assert session.exec(select(Attachment).where(Attachment.case_id == case.id)).all() == []
    assert "documents_arrived" not in world.events(case)


def test_a_file_over_the_limit_is_refused_with_the_limit_named(world: Any) -> None:
    case = waiting_for_documents(world, "en")
    settings = survey_settings(world, api_attachment_max_bytes=100_000)
    app = create_app(settings, world.engine, clock=lambda: world.now, launch=False)
    with TestClient(app) as small:
        path = link_path(world, case)
        just_over = upload(small, path, "repair invoice", PDF + b"0" * 100_000)
        assert just_over.status_code == 413 and "at most 97.65625 KB" not in just_over.text
        assert 'data-reason="too_big"' in just_over.text and "97 KB" in just_over.text
        huge = upload(small, path, "repair invoice", PDF + b"0" * 400_000)  # refused on its declared length
        assert huge.status_code == 413
        forged = upload(small, "/status/forged", "repair invoice", PDF)
        assert 'data-reason="forged"' in forged.text
    with Session(world.engine) as session:
        assert session.exec(select(Attachment).where(Attachment.case_id == case.id)).all() == []


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_last_missing_document_puts_the_case_back_under_review_and_restarts_its_clock(
    world: Any, client: TestClient, language: str
) -> None:
    """As the handler's documents form does: the case under review again, the step's clock running, its deadline
    moved by the time it stood still, and the handler told the new due time in their message."""
    from models.enums import StepStatus
    from models.tables import Step
    from tasks.outbox import default_config

    case = waiting_for_documents(world, language)
    path = link_path(world, case)
    with Session(world.engine) as session:
        wanted = [r.document_type for r in session.exec(select(DocumentRequirement)
                                                         .where(DocumentRequirement.case_id == case.id))]  # fmt: skip
        [paused] = session.exec(select(Step).where(Step.case_id == case.id, Step.status == StepStatus.paused)).all()
    assert len(wanted) >= 2 and world.case(case).status == "awaiting_documents"
    for document in wanted[:-1]:
        assert upload(client, path, document, PDF).status_code == 303
        assert world.case(case).status == "awaiting_documents"  # not yet: something is still missing
    world.now += timedelta(days=3)  # the clock stood still for three days
    assert upload(client, path, wanted[-1], PNG, name="last.png").status_code == 303
    assert world.case(case).status == "under_review"
    with Session(world.engine) as session:
        step = session.get(Step, paused.id)
        told = session.exec(select(Outbox).where(Outbox.template == "staff_documents_arrived")
                            .order_by(Outbox.id.desc())).first()  # fmt: skip
    assert step.status == StepStatus.open and step.paused_since is None and step.due_at > paused.due_at
    assert step.waiting_key and step.waiting_key.startswith("claim-review-")  # the run asks for the review again
    assert world.events(case)[-3:] == ["documents_arrived", "documents_received", "clock_resumed"]
    assert told.context["still_missing"] == []
    assert datetime.fromisoformat(told.context["due_at"]).astimezone(UTC) == step.due_at.replace(tzinfo=UTC)
    for words, said in (("en", "its clock runs again; it is now due"), ("zh-CN", "时限已恢复计算，现应于")):
        text = default_config().render("staff_documents_arrived", language=words, context=told.context).text
        assert said in text and "Still missing" not in text and "仍缺少" not in text
    after = client.get(f"{path}?lang={language}&sent=1").text  # where the last upload leads
    assert "<select" not in after  # nothing left to send
    assert PAGE_TEXT[language]["sent_all"] in after  # and the customer is told what happens now

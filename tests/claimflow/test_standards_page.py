"""The published service standards at ``/standards``: no login, zh-CN and en, built from the packs, document lists
and settings in force (change one and the page changes), everything escaped, in a real browser too (axe-core, a
phone's screen, large text, screenshots)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from claimflow.settings import Settings
from claimflow.web.app import create_app
from models.sla import load_pack, parse_pack
from models.standards import TEXT
from tasks.workflow import Desk
from tests.browser import checking, phone, screenshot, serious_violations, serving

MARKUP = '<script>alert(1)</script><b onmouseover="x">'


def settings(**values: Any) -> Settings:
    return Settings(desk_phone="400-800-1234", desk_email="care@insurer.example", **values)


@pytest.fixture(autouse=True)
def migrated() -> None:
    """The desk's own database (the settings' default), migrated as 'claimflow up' does: the web app refuses to
    start on a database that is not at its schema (``claimflow.migrate.require_current_schema``)."""
    from claimflow.db import get_engine
    from claimflow.migrate import upgrade

    upgrade(get_engine(settings().resolved_database_url))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(settings(), launch=False)) as test_client:
        yield test_client


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_standards_are_public_and_in_the_language_asked_for(client: TestClient, language: str) -> None:
    page = client.get("/standards", params={"lang": language})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html, words = page.text, TEXT[language]
    assert f'<html lang="{language}">' in html and f"<title>{words['title']}</title>" in html
    shown = text_of(html)
    # the house standard's promises, each in words with the rule it comes from
    expected = {
        "zh-CN": ["电话 24小时", "电子邮件 48小时", "对您的理赔作出核定", "3个工作日", "10个工作日", "由主管立即决定",
                  "如主管在1个工作日内未作决定，由经理决定", "驾驶证", "医院费用明细发票", "50,000.00"],
        "en": ["Phone 24 hours", "E-mail 48 hours", "We decide on your claim", "3 working days", "10 working days",
               "a supervisor decides at once", "If a supervisor has not decided within 1 working day, a manager decides",
               "driving licence", "itemised hospital invoice", "50,000.00"],
    }[language]  # fmt: skip
    for phrase in expected:
        assert phrase in shown, phrase
    assert "Service code: claims reviewed within 3 working days" in shown
    # each jurisdiction: the law's limits and where to go next
    assert "保险法 art. 25" in shown and "DISP 1.6.2R" in shown
    assert {"zh-CN": "国家金融监督管理总局", "en": "the National Financial Regulatory Administration"}[
        language
    ] in shown
    assert {"zh-CN": "英国金融申诉专员服务机构", "en": "the Financial Ombudsman Service"}[language] in shown
    assert {"zh-CN": "澳大利亚金融投诉管理局（AFCA）", "en": "the Australian Financial Complaints Authority (AFCA)"}[
        language
    ] in shown
    assert 'href="tel:400-800-1234"' in html and "care@insurer.example" in html
    assert f'href="/claim?lang={language}&amp;large=0" id="online-claim"' in html  # the online forms, linked
    assert words["free_text"] in shown and words["privacy_text"] in shown
    assert "<script" not in html and "style=" not in html  # no script; styles from the stylesheet only
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_the_desks_language_is_the_default_and_an_unknown_one_falls_back_to_it(client: TestClient) -> None:
    assert '<html lang="zh-CN">' in client.get("/standards").text  # CLAIMFLOW_DEFAULT_LANGUAGE's default
    assert '<html lang="zh-CN">' in client.get("/standards", params={"lang": "fr"}).text
    assert client.get("/standards", params={"lang": "x" * 50}).status_code == 422  # bounded, not echoed


def test_large_text_and_the_other_language_are_links(client: TestClient) -> None:
    html = client.get("/standards", params={"lang": "en", "large": "1"}).text
    assert '<body class="large">' in html
    assert 'href="?lang=zh-CN&amp;large=1" id="toggle-language"' in html
    assert 'href="?lang=en&amp;large=0" id="toggle-size"' in html


def test_a_changed_pack_changes_the_page(client: TestClient) -> None:
    """Nothing is written twice: the page reads the rules the desk runs on."""
    app = client.app
    intake = app.state.intake  # type: ignore[attr-defined]
    before = text_of(client.get("/standards", params={"lang": "en"}).text)
    assert "3 working days" in before and "Service code: claims reviewed within 3 working days" in before
    house = load_pack("service-standard")
    text = (Path(__file__).resolve().parents[2] / "policies" / "service-standard.yaml").read_text(encoding="utf-8")
    changed = parse_pack(text.replace(
        '{value: 3, unit: working_days, source: "Service code: claims reviewed within 3 working days"}',
        '{value: 2, unit: working_days, source: "Service code 2027: claims reviewed within 2 working days"}',
    ))  # fmt: skip
    assert changed != house
    rules = replace(intake.desk.rules, house=changed, regulators={"GB": intake.desk.rules.regulators["GB"]})
    intake.desk = Desk(rules=rules, settings=intake.settings)
    after = text_of(client.get("/standards", params={"lang": "en"}).text)
    assert "Service code 2027: claims reviewed within 2 working days" in after
    assert "Service code: claims reviewed within 3 working days" not in after
    assert "the Financial Ombudsman Service" in after
    assert "保险法" not in after  # the CN pack is no longer in force on this desk


def test_nothing_from_the_settings_is_rendered_unescaped() -> None:
    hostile = settings(outside_bodies={"CN": MARKUP, "XX": MARKUP})
    hostile = hostile.model_copy(update={"desk_phone": MARKUP, "desk_email": MARKUP})
    with TestClient(create_app(hostile, launch=False)) as test_client:
        for language in ("zh-CN", "en"):
            html = test_client.get("/standards", params={"lang": language}).text
            assert "<script>" not in html and "<b onmouseover" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.slow
@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_standards_page_on_a_phone_passes_axe_in_both_sizes(browser: Any, language: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with serving(create_app(settings(), launch=False)) as address:
        context = phone(browser, script=False)
        page = context.new_page()
        page.goto(f"{address}/standards?lang={language}")
        words = TEXT[language]
        assert page.title() == words["title"]
        assert page.locator("h2").count() >= 7
        normal = page.locator("p").first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        screenshot(page, tmp_path, f"standards-{language}.png")
        page.locator("#toggle-size").click()  # a plain link: works without JavaScript
        expect(page).to_have_url(re.compile(r"large=1"))
        large = page.locator("p").first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        assert large >= normal * 1.3, (normal, large)
        screenshot(page, tmp_path, f"standards-{language}-large.png")
        context.close()
        # axe-core needs scripts: a second profile with them on, both sizes
        checked = checking(browser)
        page = checked.new_page()
        for large_text in ("0", "1"):
            page.goto(f"{address}/standards?lang={language}&large={large_text}")
            assert serious_violations(page) == [], (language, large_text)
        checked.close()


@pytest.mark.slow
def test_the_accessibility_check_finds_what_it_should(browser: Any) -> None:
    """The axe-core check can fail: a page with an unlabelled image and an unlabelled field is caught."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.set_content('<html lang="en"><title>x</title><main><img src="a.png"><input type="text"></main></html>')
    found = " ".join(serious_violations(page))
    assert "image-alt" in found and "label" in found, found
    context.close()


def test_the_outside_bodies_are_written_once_and_named_in_each_language_where_customers_read_them() -> None:
    """``CLAIMFLOW_OUTSIDE_BODIES`` names each body per language (or once for all): the service standards and the
    complaint letters both take it from there, so a change shows in both and an English letter names no body in
    Chinese."""
    from models.messages import CATALOGUE, make_environment, render_message
    from tasks.outbox import OutboxConfig

    changed = settings(outside_bodies={"GB": {"en": "the Test Ombudsman", "zh-CN": "测试申诉机构"}, "AU": "AFCA-X"})
    config = OutboxConfig.from_settings(changed)
    with TestClient(create_app(changed, launch=False)) as test_client:
        for language, gb in (("en", "the Test Ombudsman"), ("zh-CN", "测试申诉机构")):
            shown = text_of(test_client.get("/standards", params={"lang": language}).text)
            assert gb in shown and "AFCA-X" in shown and "Financial Ombudsman Service" not in shown
            for jurisdiction, named in (("GB", gb), ("AU", "AFCA-X")):
                for template in ("complaint_outcome", "progress_notice"):
                    context = {**CATALOGUE[template].sample, "jurisdiction": jurisdiction, "kind": "complaint"}
                    text = config.render(template, language=language, context=context, html=False).text
                    assert named in text, (template, language, text)
    # the default: a CN customer who reads English is told the regulator's name in English
    letter = render_message(make_environment(), "complaint_outcome", language="en",
                            context={**CATALOGUE["complaint_outcome"].sample, "jurisdiction": "CN"},
                            desk={"phone": "1", "email": "e"}).text  # fmt: skip
    assert "the National Financial Regulatory Administration" in letter and "国家金融" not in letter

"""Every message in every language renders from its declared context; the environment is strict and safe."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from models.errors import InvalidInput, NotFound
from models.messages import (
    CATALOGUE,
    DIGEST_SHARED,
    LANGUAGES,
    SAMPLE_DESK,
    TEMPLATES_DIR,
    choose_language,
    digest_of,
    format_date,
    format_datetime,
    format_deadline,
    format_money,
    html_to_text,
    make_environment,
    text_blocks,
)
from models.messages import render_message as _render_message


def render_message(*args: Any, **kwargs: Any) -> Any:
    """The messages as a configured desk renders them (its phone and address set)."""
    return _render_message(*args, **{"desk": SAMPLE_DESK, **kwargs})


ENV = make_environment()
EVERY_MESSAGE = [pytest.param(name, language, id=f"{name}-{language}") for name in CATALOGUE for language in LANGUAGES]


@pytest.mark.parametrize(("name", "language"), EVERY_MESSAGE)
def test_every_message_renders_in_every_language_from_its_declared_context(name: str, language: str) -> None:
    spec = CATALOGUE[name]
    message = render_message(ENV, name, language=language, context=spec.sample)
    assert message.subject and "\n" not in message.subject
    assert message.text.strip() and message.html.startswith("<!DOCTYPE html>")
    assert "{{" not in message.text and "{%" not in message.text
    assert spec.sample["case_number"] in message.text if spec.sample.get("case_number") else True
    # the HTML part says what the text part says
    assert " ".join(html_to_text(message.html).split()).endswith(" ".join(message.text.split()[-3:]))
    # the check at queue time renders the same subject and text without the HTML layout
    checked = render_message(ENV, name, language=language, context=spec.sample, html=False)
    assert (checked.subject, checked.text, checked.html) == (message.subject, message.text, "")


@pytest.mark.parametrize(("name", "language"), EVERY_MESSAGE)
def test_every_declared_key_is_really_needed_and_strict_undefined_catches_the_gap(name: str, language: str) -> None:
    """Dropping a required key is refused by name; a template using an undeclared key fails the render."""
    spec = CATALOGUE[name]
    for key in spec.required:
        context = {k: v for k, v in spec.sample.items() if k != key}
        with pytest.raises(InvalidInput, match=key):
            render_message(ENV, name, language=language, context=context)


def test_a_template_that_uses_an_undeclared_variable_fails_at_render_time(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "_layout.html.j2").write_text((TEMPLATES_DIR / "_layout.html.j2").read_text())
    (tmp_path / "en" / "payment_made.txt.j2").write_text(
        "{% block subject %}Paid {{ case_number }}{% endblock %}{% block body %}{{ iban }}{% endblock %}"
    )
    env = make_environment(tmp_path)
    with pytest.raises(UndefinedError, match="iban"):
        render_message(env, "payment_made", language="en", context=CATALOGUE["payment_made"].sample)


def test_every_template_file_is_in_the_catalogue_and_every_message_exists_in_both_languages() -> None:
    for language in LANGUAGES:
        files = {p.name.removesuffix(".txt.j2") for p in (TEMPLATES_DIR / language).glob("*.txt.j2")}
        assert {f for f in files if not f.startswith("_")} == set(CATALOGUE), language


def test_the_acknowledgement_names_the_case_the_channel_and_the_promised_deadline() -> None:
    context = {**CATALOGUE["acknowledgement_claim"].sample, "channel": "phone"}
    zh = render_message(ENV, "acknowledgement_claim", language="zh-CN", context=context)
    en = render_message(ENV, "acknowledgement_claim", language="en", context=context)
    # due 2026-03-06T16:00Z is 00:00 on 7 March in Shanghai: the limit ends with 6 March
    assert "您通过电话" in zh.text and "2026年3月6日" in zh.text and "CLM-2026-000123" in zh.subject
    assert "by phone" in en.text and "by 6 March 2026" in en.text


def test_the_decision_states_reasons_clause_and_how_to_complain_only_when_money_is_withheld() -> None:
    sample = CATALOGUE["decision"].sample
    rejected = render_message(ENV, "decision", language="zh-CN", context={**sample, "outcome": "rejected"})
    approved = render_message(
        ENV, "decision", language="en", context={**sample, "outcome": "approved", "reasons": "", "clause": ""}
    )
    assert "拒赔理由：自费药品费用不在保险责任范围内" in rejected.text
    assert "依据条款：《医疗保险条款》第五条第(三)项" in rejected.text
    assert "投诉" in rejected.text and "不予赔付" in rejected.subject
    assert "we will pay CNY 8,600.00" in approved.text and "clause" not in approved.text.lower()
    assert "complain or appeal" in approved.text


def test_the_missing_documents_list_is_one_complete_list() -> None:
    message = render_message(ENV, "missing_documents", language="en", context=CATALOGUE["missing_documents"].sample)
    assert "complete list" in message.text
    assert message.text.count("\n- ") == 3
    assert message.html.count("<li>") == 3


def test_values_from_people_are_escaped_in_html_and_left_alone_in_text() -> None:
    context = {
        **CATALOGUE["extension_notice"].sample,
        "customer_name": "<script>alert('x')</script>",
        "reason": "A & B <b>bold</b>",
    }
    message = render_message(ENV, "extension_notice", language="en", context=context)
    assert "<script>" not in message.html and "&lt;script&gt;" in message.html
    assert "A &amp; B &lt;b&gt;bold&lt;/b&gt;" in message.html
    assert "<script>alert('x')</script>" in message.text and "A & B <b>bold</b>" in message.text


def test_links_in_the_text_become_links_in_the_html() -> None:
    message = render_message(ENV, "survey_invitation", language="zh-CN", context=CATALOGUE["survey_invitation"].sample)
    assert '<a href="https://desk.insurer.example/survey/abc123">' in message.html


def test_text_blocks_splits_paragraphs_and_lists() -> None:
    blocks = text_blocks("Dear A,\n\n- one\n- two\n\nline 1\nline 2\n")
    assert [b["kind"] for b in blocks] == ["paragraph", "list", "paragraph"]
    assert [str(i) for i in blocks[1]["items"]] == ["one", "two"]


@pytest.mark.parametrize(
    ("wanted", "default", "chosen"),
    [
        pytest.param("en", "zh-CN", "en", id="exact"),
        pytest.param("en-GB", "zh-CN", "en", id="same-primary-language"),
        pytest.param("zh-TW", "en", "zh-CN", id="chinese-variant-gets-simplified"),
        pytest.param("fr", "en", "en", id="unwritten-language-falls-back-to-office-default"),
        pytest.param(None, "en", "en", id="no-language-gets-office-default"),
        pytest.param("fr", "de", "zh-CN", id="office-default-unwritten-too"),
    ],
)
def test_choose_language(wanted: str | None, default: str, chosen: str) -> None:
    assert choose_language(wanted, default=default) == chosen


@pytest.mark.parametrize(
    ("value", "language", "tz", "shown"),
    [
        pytest.param(date(2026, 3, 5), "zh-CN", "UTC", "2026年3月5日", id="zh-date"),
        pytest.param(date(2026, 3, 5), "en", "UTC", "5 March 2026", id="en-date"),
        pytest.param("2026-03-05", "en", "UTC", "5 March 2026", id="iso-text-from-json"),
        pytest.param(
            datetime(2026, 3, 4, 17, 0, tzinfo=UTC),
            "zh-CN",
            "Asia/Shanghai",
            "2026年3月5日",
            id="office-zone-date",
        ),
    ],
)
def test_format_date(value: object, language: str, tz: str, shown: str) -> None:
    assert format_date(value, language, tz) == shown  # type: ignore[arg-type]


def test_format_datetime_and_deadline_in_the_office_zone() -> None:
    at = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    assert format_datetime(at, "zh-CN", "Asia/Shanghai") == "2026年3月5日 17:00"
    assert format_datetime(at.isoformat(), "en", "Asia/Shanghai") == "5 March 2026, 17:00"
    midnight = datetime(2026, 3, 5, 16, 0, tzinfo=UTC)  # 00:00 on 6 March in Shanghai: the end of 5 March
    assert format_deadline(midnight, "zh-CN", "Asia/Shanghai") == "2026年3月5日"
    assert format_deadline(midnight, "en", "Asia/Shanghai") == "5 March 2026"
    assert format_deadline(at, "en", "Asia/Shanghai") == "5 March 2026, 17:00"


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_datetime(datetime(2026, 3, 5, 9, 0), "en")


@pytest.mark.parametrize(
    ("amount", "currency", "language", "shown"),
    [
        pytest.param(Decimal("12800.5"), "CNY", "zh-CN", "¥12,800.50", id="zh-yuan-symbol"),
        pytest.param("12800.5", "CNY", "en", "CNY 12,800.50", id="en-code-first"),
        pytest.param(1234567, "HKD", "zh-CN", "HK$1,234,567.00", id="zh-hkd"),
        pytest.param("99.995", "JPY", "zh-CN", "100.00 JPY", id="zh-unknown-currency-code-after"),
        pytest.param("1,000", "USD", "en", "USD 1,000.00", id="grouped-text-input"),
    ],
)
def test_format_money(amount: object, currency: str, language: str, shown: str) -> None:
    assert format_money(amount, currency, language) == shown  # type: ignore[arg-type]


def test_a_value_that_is_not_money_is_a_clear_error() -> None:
    context = {**CATALOGUE["payment_made"].sample, "amount": "lots"}
    with pytest.raises(InvalidInput, match="'lots' is not an amount of money"):
        render_message(ENV, "payment_made", language="en", context=context)


def test_unknown_message_or_language_is_not_found() -> None:
    with pytest.raises(NotFound, match="no message template named 'nope'"):
        render_message(ENV, "nope", language="en", context={})
    with pytest.raises(NotFound, match="fr"):
        render_message(ENV, "decision", language="fr", context=CATALOGUE["decision"].sample)


@pytest.mark.parametrize(
    ("jurisdiction", "language", "said"),
    [
        ("GB", "en", ["the Financial Ombudsman Service", "free for you to use", "within six months", "0800 023 4567"]),
        ("GB", "zh-CN", ["英国金融申诉专员服务机构", "不收取任何费用", "六个月内", "0800 023 4567"]),
        ("AU", "en", ["Australian Financial Complaints Authority (AFCA)", "free for you to use", "within two years",
                      "1800 931 678"]),
        ("AU", "zh-CN", ["澳大利亚金融投诉管理局（AFCA）", "不收取任何费用", "两年内", "1800 931 678"]),
        ("CN", "zh-CN", ["国家金融监督管理总局", "12378"]),
        ("US-CA", "en", ["California Department of Insurance", "1-800-927-4357"]),
    ],
)  # fmt: skip
def test_letters_name_the_jurisdictions_outside_body_that_it_is_free_and_the_time_limit(
    jurisdiction: str, language: str, said: list[str]
) -> None:
    """DISP 1 Annex 3R / 1.6.2R (GB) and RG 271 (AU): a final response and a delay notice name the ombudsman, say it
    is free and give the time limit; the decision letter names the jurisdiction's body, not "the financial
    regulator"."""
    for name in ("decision", "complaint_outcome"):  # the body named from the desk's CLAIMFLOW_OUTSIDE_BODIES
        context = {**CATALOGUE[name].sample, "jurisdiction": jurisdiction}
        text = render_message(ENV, name, language=language, context=context).text
        assert all(part in text for part in said), (name, text)
        assert "financial regulator" not in text and "金融监管部门" not in text
    delay = render_message(ENV, "extension_notice", language=language,
                           context={**CATALOGUE["extension_notice"].sample, "jurisdiction": jurisdiction}).text  # fmt: skip
    assert all(part in delay for part in said) == (jurisdiction in ("GB", "AU")), delay


def test_a_message_quoting_a_desk_detail_that_is_not_set_is_refused_with_the_setting_named() -> None:
    """No default number: a desk that has not set its phone does not send customers to another company's line."""
    from models.messages import DeskNotConfigured

    with pytest.raises(DeskNotConfigured, match="CLAIMFLOW_DESK_PHONE is not set"):
        _render_message(ENV, "acknowledgement_claim", language="zh-CN", context=CATALOGUE["acknowledgement_claim"].sample,
                        desk={"phone": "", "email": "service@insurer.example"})  # fmt: skip
    with pytest.raises(DeskNotConfigured, match="CLAIMFLOW_DESK_PHONE"):
        _render_message(ENV, "acknowledgement_claim", language="en", context=CATALOGUE["acknowledgement_claim"].sample)
    staff = _render_message(
        ENV, "staff_new_assignment", language="en", context=CATALOGUE["staff_new_assignment"].sample
    )
    assert "CLM-2026-000123" in staff.text  # staff messages quote no desk detail: unaffected


def test_documents_are_named_in_the_readers_language_and_a_typed_one_as_given() -> None:
    """The desk stores a document by its English name (``repair invoice``); a zh-CN letter or staff message names
    it in Chinese, as the status page does. A document a handler typed has no other words: it stays as typed."""
    documents = ["repair invoice", "driving licence", "一份修理厂的证明"]
    for name, said in (("missing_documents", ("维修发票", "驾驶证", "一份修理厂的证明")),
                       ("progress_notice", ("维修发票", "驾驶证"))):  # fmt: skip
        text = render_message(
            ENV, name, language="zh-CN", context={**CATALOGUE[name].sample, "documents": documents}
        ).text
        assert all(part in text for part in said) and "repair invoice" not in text, text
        english = render_message(
            ENV, name, language="en", context={**CATALOGUE[name].sample, "documents": documents}
        ).text
        assert "repair invoice" in english and "driving licence" in english
    staff = render_message(ENV, "staff_documents_arrived", language="zh-CN",
                           context={**CATALOGUE["staff_documents_arrived"].sample,
                                    "documents": ["repair invoice"], "still_missing": ["driving licence"]}).text  # fmt: skip
    assert "提交：维修发票。" in staff and "仍缺少：驾驶证。" in staff


def test_a_digest_lists_each_notice_with_its_own_values_and_the_readers_once() -> None:
    """``digest_of``: the reader's values (name, worklist) from the first notice that has them, every notice's own
    values as an item, in the order given; a digest of nothing is refused."""
    first = {"case_number": "CLM-1", "kind": "claim", "handler_name": "李伟", "due_at": "2026-03-06T16:00:00+00:00"}
    second = {"case_number": "CMP-2", "kind": "complaint", "handler_name": "李伟", "worklist_url": "https://w"}
    assert digest_of([first, second]) == {
        "handler_name": "李伟",
        "worklist_url": "https://w",
        "items": [{"case_number": "CLM-1", "kind": "claim", "due_at": "2026-03-06T16:00:00+00:00"},
                  {"case_number": "CMP-2", "kind": "complaint"}],
    }  # fmt: skip
    assert digest_of([second])["items"] == [{"case_number": "CMP-2", "kind": "complaint"}]
    with pytest.raises(InvalidInput, match="at least one"):
        digest_of([])


def test_every_message_with_a_digest_leaves_after_the_others_and_its_digest_lists_what_it_says() -> None:
    """A digest carries notices whose worklist already shows them (``later``); its items are that notice's values,
    so the notice's own keys (but the reader's) are what the digest's sample lists."""
    with_digest = [spec for spec in CATALOGUE.values() if spec.digest is not None]
    assert with_digest
    for spec in with_digest:
        assert spec.digest is not None
        digest = CATALOGUE[spec.digest]
        assert spec.later and digest.later and digest.audience == spec.audience
        own = set(spec.required) - set(DIGEST_SHARED)
        assert all(own <= set(item) for item in digest.sample["items"]), spec.name


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_supervisors_read_why_a_case_is_unassigned_in_their_language(language: str) -> None:
    """The reason came as the routing's English words inside the Chinese text ("...接手：no active handler with free
    capacity for this claim。"); each reason routing gives now reads in the message's language, and a reason
    without a known code still shows its words rather than nothing."""
    import re

    from models.routing import UNASSIGNED_REASONS

    said = set()
    for code in UNASSIGNED_REASONS:
        context = {**CATALOGUE["staff_unassigned"].sample, "reason": "routing's own words", "reason_code": code}
        text = render_message(ENV, "staff_unassigned", language=language, context=context, html=False).text
        assert "routing's own words" not in text
        if language == "zh-CN":  # no English word but the case number's letters
            assert not re.findall(r"[A-Za-z]{2,}", text.replace(context["case_number"], "")), text
        said.add(text)
    assert len(said) == len(UNASSIGNED_REASONS)  # each reason in words of its own
    unknown = {**CATALOGUE["staff_unassigned"].sample, "reason": "a reason of a later version", "reason_code": "new"}
    assert "a reason of a later version" in render_message(ENV, "staff_unassigned", language=language,
                                                           context=unknown, html=False).text  # fmt: skip


@pytest.mark.parametrize("name", ["staff_new_assignment", "staff_new_assignments", "staff_unassigned"])
def test_a_chinese_staff_message_names_the_case_kind_and_priority_in_words_not_codes(name: str) -> None:
    """``待分配claim案件`` and ``优先级 normal`` were what a zh-CN handler read; every kind and priority now reads
    as a word (the desk's own codes stay in English messages)."""
    import re

    from models.enums import CaseKind, Priority

    words = {"claim": "理赔", "complaint": "投诉", "inquiry": "咨询", "low": "低", "normal": "普通", "high": "高",
             "urgent": "紧急"}  # fmt: skip
    for kind in CaseKind:
        for priority in Priority:
            values = {"kind": kind.value, "priority": priority.value}
            context = {**CATALOGUE[name].sample, "reason": "经办人均已满额"}
            if name == "staff_new_assignments":
                context["items"] = [{**item, **values} for item in context["items"]]
            else:
                context.update(values)
            message = render_message(ENV, name, language="zh-CN", context=context, html=False)
            text = f"{message.subject}\n{message.text}"
            assert not re.search(rf"\b({kind.value}|{priority.value})\b", text), text
            assert words[kind.value] in text and f"优先级{words[priority.value]}" in text

"""Survey links (signed, expiring; single use is checked against the invitation), the form's fields, the page's
words, and who calls back a dissatisfied customer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.enums import StaffRole
from models.errors import InvalidInput
from models.mail import reply_text
from models.routing import Candidate, NoEligibleHandler, choose_follow_up
from models.survey import (
    MAX_COMMENT_CHARS,
    PAGE_TEXT,
    LinkClaim,
    Refusal,
    SurveyLinkRefused,
    check_link,
    make_token,
    page_language,
    parse_answer,
    read_token,
)

KEY = "a-survey-key-of-enough-length"
EXPIRES = datetime(2026, 3, 16, 1, 30, tzinfo=UTC)


def test_a_token_says_which_invitation_and_until_when() -> None:
    token = make_token(KEY, invitation_id=42, expires_at=EXPIRES)
    assert read_token(KEY, token) == LinkClaim(42, EXPIRES)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), id="signature-changed"),
        pytest.param(lambda t: t[:-5], id="truncated"),
        pytest.param(
            lambda t: make_token("another-desk-key-xxxxxxxx", invitation_id=42, expires_at=EXPIRES), id="other-key"
        ),
        pytest.param(lambda t: "garbage", id="garbage"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: t + "x" * 600, id="too-long"),
    ],
)
def test_a_forged_token_is_refused_as_forged(tamper) -> None:
    token = make_token(KEY, invitation_id=42, expires_at=EXPIRES)
    with pytest.raises(SurveyLinkRefused) as refused:
        read_token(KEY, tamper(token))
    assert refused.value.reason == Refusal.forged


def test_a_later_expiry_cannot_be_written_into_a_token() -> None:
    token = make_token(KEY, invitation_id=42, expires_at=EXPIRES)
    payload, _, signature = token.rpartition(".")
    longer = make_token(KEY + "x", invitation_id=42, expires_at=EXPIRES + timedelta(days=365))
    with pytest.raises(SurveyLinkRefused):
        read_token(KEY, longer.rpartition(".")[0] + "." + signature)
    assert payload  # the original still reads
    assert read_token(KEY, token).expires_at == EXPIRES


def test_a_naive_expiry_or_an_empty_key_is_a_programming_error() -> None:
    with pytest.raises(InvalidInput, match="timezone-aware"):
        make_token(KEY, invitation_id=1, expires_at=datetime(2026, 3, 16))
    with pytest.raises(InvalidInput, match="empty"):
        make_token("", invitation_id=1, expires_at=EXPIRES)


@given(st.text(max_size=300))
def test_any_text_as_a_token_is_read_or_refused_never_crashes(text: str) -> None:
    try:
        read_token(KEY, text)
    except SurveyLinkRefused as refused:
        assert refused.reason == Refusal.forged


@pytest.mark.parametrize(
    ("now", "answered", "exists", "reason"),
    [
        (EXPIRES - timedelta(seconds=1), None, True, None),
        (EXPIRES, None, True, Refusal.expired),  # expiry is exclusive: at the instant, it has expired
        (EXPIRES + timedelta(days=3), None, True, Refusal.expired),
        (EXPIRES - timedelta(days=1), EXPIRES - timedelta(days=2), True, Refusal.used),
        (EXPIRES + timedelta(days=1), EXPIRES - timedelta(days=2), True, Refusal.used),  # used beats expired
        (EXPIRES - timedelta(days=1), None, False, Refusal.unknown),
    ],
)
def test_check_link(now: datetime, answered: datetime | None, exists: bool, reason: Refusal | None) -> None:
    claim = LinkClaim(42, EXPIRES)
    if reason is None:
        check_link(claim, answered_at=answered, exists=exists, now=now)
        return
    with pytest.raises(SurveyLinkRefused) as refused:
        check_link(claim, answered_at=answered, exists=exists, now=now)
    assert refused.value.reason == reason


def test_a_complete_answer_is_parsed() -> None:
    answer = parse_answer(" 4 ", "YES", "  quick and kind  ")
    assert (answer.score, answer.solved, answer.comment) == (4, True, "quick and kind")
    assert parse_answer("1", "no", "   ").comment is None


@pytest.mark.parametrize(
    ("score", "solved", "comment", "problems"),
    [
        (None, "yes", None, ["score: choose 1 to 5"]),
        ("0", "yes", None, ["score"]),
        ("6", "yes", None, ["score"]),
        ("3.5", "yes", None, ["score"]),
        ("five", "yes", None, ["score"]),
        ("3", None, None, ["solved: choose yes or no"]),
        ("3", "maybe", None, ["solved"]),
        ("3", "yes", "x" * (MAX_COMMENT_CHARS + 1), [f"at most {MAX_COMMENT_CHARS}"]),
        ("3", "yes", "a\x00b", ["NUL"]),
        (None, None, None, ["score", "solved"]),
    ],
)
def test_a_wrong_answer_names_every_field_at_fault(score, solved, comment, problems: list[str]) -> None:
    with pytest.raises(InvalidInput) as wrong:
        parse_answer(score, solved, comment)
    for problem in problems:
        assert problem in str(wrong.value)


@pytest.mark.parametrize(
    ("asked", "default", "expected"),
    [
        ("en", "zh-CN", "en"),
        ("EN-gb", "zh-CN", "en"),
        ("zh", "en", "zh-CN"),
        (None, "en", "en"),
        ("fr", "en", "en"),  # not offered: the invitation's language
        ("fr", "de", "zh-CN"),  # neither offered: the first
        ("", "", "zh-CN"),
    ],
)
def test_page_language(asked: str | None, default: str, expected: str) -> None:
    assert page_language(asked, default) == expected


def test_both_languages_have_every_word_of_the_page() -> None:
    assert PAGE_TEXT["zh-CN"].keys() == PAGE_TEXT["en"].keys()
    for words in PAGE_TEXT.values():
        assert all(text.strip() for text in words.values())
        for reason in ("forged", "expired", "used", "unknown", "unavailable"):
            assert "{phone}" in words[reason]  # every refusal says how to reach us instead


# --- who calls back -------------------------------------------------------------------------------------


def member(staff_id: int, role: StaffRole, department: str, *, load: int = 0, skills=(), active=True) -> Candidate:
    return Candidate(staff_id, f"user{staff_id}", role, department, frozenset(skills), active=active, capacity=10,
                     open_load=load)  # fmt: skip


DESK = [
    member(1, StaffRole.handler, "claims"),
    member(2, StaffRole.supervisor, "claims", load=3),
    member(3, StaffRole.supervisor, "claims", load=1),
    member(4, StaffRole.supervisor, "complaints", load=5, skills=("complaints",)),
    member(5, StaffRole.manager, "claims"),
    member(6, StaffRole.supervisor, "claims", active=False),
]


def test_the_least_loaded_supervisor_calls_back() -> None:
    chosen = choose_follow_up(DESK, handler_id=1, handler_department="claims", complaint=False)
    assert chosen.staff_id == 3


def test_a_supervisor_who_handled_the_case_never_calls_back_on_it() -> None:
    chosen = choose_follow_up(DESK, handler_id=3, handler_department="claims", complaint=False)
    assert chosen.staff_id == 2


def test_a_complaint_review_goes_outside_the_handlers_department() -> None:
    chosen = choose_follow_up(DESK, handler_id=1, handler_department="claims", complaint=True)
    assert chosen.staff_id == 4 and "complaints skill" in chosen.reason


def test_a_manager_only_when_no_supervisor_may() -> None:
    only = [m for m in DESK if m.role != StaffRole.supervisor or m.staff_id == 6]
    assert choose_follow_up(only, handler_id=1, handler_department="claims", complaint=False).staff_id == 5


def test_nobody_eligible_is_said_plainly() -> None:
    with pytest.raises(NoEligibleHandler, match="outside the handler's department"):
        choose_follow_up(DESK[:4][:3], handler_id=1, handler_department="claims", complaint=True)


# --- e-mail replies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "new"),
    [
        (
            "Thanks, all good.\n\nOn Mon, 2 Mar 2026 at 09:00, Desk <service@insurer.example> wrote:\n> 投诉",
            "Thanks, all good.",
        ),
        ("谢谢！\n\n在 2026年3月2日 09:00，客服 写道：\n> 原文", "谢谢！"),
        ("ok\n-----Original Message-----\nFrom: desk\ncomplaint", "ok"),
        ("first line\n> quoted\nsecond line", "first line\nsecond line"),
        ("no quote at all", "no quote at all"),
        ("> only quoted", ""),
    ],
)
def test_reply_text_keeps_what_the_customer_wrote_this_time(text: str, new: str) -> None:
    assert reply_text(text) == new

"""Feedback rules: praise, suggestion or complaint; who gets a call back; who is asked in the periodic survey."""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import InvalidInput
from models.feedback import (
    LOW_SCORE,
    SEARCH_CHARS,
    ClosedCase,
    FeedbackClass,
    FeedbackKind,
    classify_feedback,
    needs_follow_up,
    sample_for_survey,
)

complaint, suggestion, praise = FeedbackKind.complaint, FeedbackKind.suggestion, FeedbackKind.praise


def test_kinds_are_stored_as_plain_words() -> None:
    assert [str(kind) for kind in FeedbackKind] == ["praise", "suggestion", "complaint"]


# --- classification: the words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "rule"),
    [
        # complaint words, zh-CN
        pytest.param("我要投诉你们的理赔员", complaint, "keyword '投诉'", id="zh-complaint-word"),
        pytest.param("对处理结果很不满", complaint, "keyword '不满'", id="zh-bu-man"),
        pytest.param("非常不满意", complaint, "keyword '不满意'", id="zh-dissatisfied-holds-satisfied-but-is-complaint"),
        pytest.param("理赔太慢了", complaint, "keyword '太慢'", id="zh-too-slow"),
        pytest.param("客服态度差", complaint, "keyword '态度差'", id="zh-bad-attitude"),
        pytest.param("一直在敷衍我", complaint, "keyword '敷衍'", id="zh-perfunctory"),
        pytest.param("故意拖延赔付", complaint, "keyword '拖延'", id="zh-stalling"),
        pytest.param("销售欺骗消费者", complaint, "keyword '欺骗'", id="zh-deceit"),
        pytest.param("定损金额不合理", complaint, "keyword '不合理'", id="zh-unreasonable"),
        pytest.param("给你们差评", complaint, "keyword '差评'", id="zh-bad-review"),
        pytest.param("太让人失望了", complaint, "keyword '失望'", id="zh-disappointed"),
        pytest.param("服务很不好", complaint, "keyword '很不好'", id="zh-very-not-good"),
        # a praise word turned around, zh-CN
        pytest.param("问题没有解决", complaint, "keyword '没有解决'", id="zh-not-solved"),
        pytest.param("至今未解决", complaint, "keyword '未解决'", id="zh-not-yet-solved"),
        pytest.param("问题没有得到解决", complaint, "keyword '没有得到解决'", id="zh-did-not-get-solved"),
        pytest.param("对结果不太满意", complaint, "keyword '不太满意'", id="zh-not-very-satisfied"),
        pytest.param("不是很满意", complaint, "keyword '不是很满意'", id="zh-not-quite-satisfied"),
        pytest.param("没有及时回复我", complaint, "keyword '没有及时回复'", id="zh-not-replied-in-time"),
        pytest.param("理赔员不专业", complaint, "keyword '不专业'", id="zh-unprofessional"),
        pytest.param("还是不及时", complaint, "keyword '不及时'", id="zh-still-not-in-time-is-no-question-form"),
        # complaint words, en
        pytest.param("I want to file a complaint", complaint, "keyword 'complaint'", id="en-complaint"),
        pytest.param("I will complain to the regulator", complaint, "keyword 'complain'", id="en-complain-verb"),
        pytest.param("Totally DISSATISFIED", complaint, "keyword 'DISSATISFIED'", id="en-case-is-ignored"),
        pytest.param("This is unacceptable", complaint, "keyword 'unacceptable'", id="en-unacceptable"),
        pytest.param("Very disappointed with the outcome", complaint, "keyword 'disappointed'", id="en-disappointed"),
        pytest.param("terrible service", complaint, "keyword 'terrible'", id="en-terrible"),
        pytest.param("the adjuster was rude", complaint, "keyword 'rude'", id="en-rude"),
        pytest.param("worst insurer ever", complaint, "keyword 'worst'", id="en-worst"),
        pytest.param("It is far too\nslow", complaint, "keyword 'too slow'", id="en-phrase-across-a-line-break"),
        pytest.param("Nobody called me back", complaint, "keyword 'Nobody called'", id="en-nobody-called"),
        # a praise word turned around, en
        pytest.param("not happy", complaint, "keyword 'not happy'", id="en-not-happy"),
        pytest.param("I am not satisfied", complaint, "keyword 'not satisfied'", id="en-not-satisfied"),
        pytest.param("Not helpful at all", complaint, "keyword 'Not helpful'", id="en-not-helpful"),
        pytest.param("not at all happy", complaint, "keyword 'not at all happy'", id="en-not-at-all-happy"),
        pytest.param("She wasn't very helpful", complaint, "keyword \"wasn't very helpful\"", id="en-wasnt-very-helpful"),
        pytest.param("they didnt get back to me", complaint, "keyword 'didnt get back'", id="en-no-apostrophe"),
        pytest.param("It still isn’t resolved", complaint, "keyword \"isn't resolved\"", id="en-curly-apostrophe"),
        pytest.param("my complaint was not resolved", complaint, "keyword 'complaint'", id="en-complaint-not-resolved"),
        # a complaint word turned around is not a complaint
        pytest.param("No complaints, great job", praise, "keyword 'No complaints'", id="en-no-complaints-is-praise"),
        pytest.param("Can't complain", praise, "keyword \"Can't complain\"", id="en-cant-complain-is-praise"),
        pytest.param("nothing to complain about", praise, "keyword 'nothing to complain about'", id="en-nothing-to-complain"),
        pytest.param("not disappointed", praise, "keyword 'not disappointed'", id="en-not-disappointed"),
        pytest.param("not too slow, thanks", praise, "keyword 'thanks'", id="en-not-too-slow"),
        pytest.param("the staff weren't rude, just busy", suggestion, "no score with no keyword", id="en-not-rude-says-nothing"),
        pytest.param("没有不满", praise, "keyword '没有不满'", id="zh-no-dissatisfaction-is-praise"),
        pytest.param("没有不满意的地方", praise, "keyword '没有不满意'", id="zh-nothing-unsatisfying-is-praise"),
        pytest.param("这次没让我失望", praise, "keyword '没让我失望'", id="zh-did-not-disappoint"),
        pytest.param("速度不太慢", suggestion, "no score with no keyword", id="zh-not-too-slow-says-nothing"),
        pytest.param("我不是投诉，只是建议增加进度查询", suggestion, "keyword '建议'", id="zh-not-a-complaint-but-a-suggestion"),
        pytest.param("not a complaint, just a suggestion", suggestion, "keyword 'suggestion'", id="en-not-a-complaint-but-a-suggestion"),
        pytest.param("我的投诉已经解决了，谢谢", praise, "keyword '谢谢'", id="zh-feedback-on-a-resolved-complaint"),
        pytest.param("My complaint was resolved, thank you", praise, "keyword 'thank you'", id="en-feedback-on-a-resolved-complaint"),
        # look-alikes that are not complaints
        pytest.param("不好意思，再问一下", suggestion, "no score with no keyword", id="zh-excuse-me-is-not-not-good"),
        pytest.param("很不好意思打扰您", suggestion, "no score with no keyword", id="zh-sorry-to-bother-is-not-very-bad"),
        pytest.param("能不能及时回复", suggestion, "keyword '能不能'", id="zh-question-form-is-not-a-negation"),
        pytest.param("保单不满一年能理赔吗", suggestion, "no score with no keyword", id="zh-less-than-a-year-is-not-dissatisfied"),
        pytest.param("不满足条件", suggestion, "no score with no keyword", id="zh-does-not-meet-is-not-dissatisfied"),
        pytest.param("a prudent approach", suggestion, "no score with no keyword", id="en-rude-inside-a-word"),
        pytest.param("not only quick but also professional", praise, "keyword 'quick'", id="en-not-only"),
        pytest.param("不仅专业而且及时", praise, "keyword '专业'", id="zh-not-only"),
        pytest.param("couldn't have been more helpful", praise, "keyword 'helpful'", id="en-could-not-be-more"),
        pytest.param("I have never been so happy with an insurer", praise, "keyword 'happy'", id="en-never-been-so-happy"),
        pytest.param("not bad at all, very helpful", praise, "keyword 'helpful'", id="en-not-bad"),
        # suggestion words
        pytest.param("建议增加短信提醒", suggestion, "keyword '建议'", id="zh-suggest"),
        pytest.param("希望流程简化", suggestion, "keyword '希望'", id="zh-hope"),
        pytest.param("能否线上提交材料", suggestion, "keyword '能否'", id="zh-could-you"),
        pytest.param("页面可以改进", suggestion, "keyword '可以改进'", id="zh-could-improve"),
        pytest.param("如果能上门就好了", suggestion, "keyword '如果能'", id="zh-if-only"),
        pytest.param("最好能提前通知", suggestion, "keyword '最好'", id="zh-better-to"),
        pytest.param("I suggest an app", suggestion, "keyword 'suggest'", id="en-suggest"),
        pytest.param("It would be nice to track the claim online", suggestion, "keyword 'would be nice'", id="en-would-be-nice"),
        pytest.param("Could you send updates by SMS", suggestion, "keyword 'Could you'", id="en-could-you"),
        pytest.param("please add a chat", suggestion, "keyword 'please add'", id="en-please-add"),
        pytest.param("it would help to know the adjuster's name", suggestion, "keyword 'it would help'", id="en-it-would-help"),
        pytest.param("the form should be shorter", suggestion, "keyword 'should'", id="en-should"),
        pytest.param("the portal could improve", suggestion, "keyword 'improve'", id="en-improve"),
        # praise words
        pytest.param("感谢理赔员", praise, "keyword '感谢'", id="zh-thanks"),
        pytest.param("非常满意", praise, "keyword '满意'", id="zh-satisfied"),
        pytest.param("处理得很好", praise, "keyword '很好'", id="zh-very-good"),
        pytest.param("理赔员很专业", praise, "keyword '专业'", id="zh-professional"),
        pytest.param("回复及时", praise, "keyword '及时'", id="zh-in-time"),
        pytest.param("客服很耐心", praise, "keyword '耐心'", id="zh-patient"),
        pytest.param("给你们点赞", praise, "keyword '点赞'", id="zh-thumbs-up"),
        pytest.param("Thank you so much", praise, "keyword 'Thank you'", id="en-thank-you"),
        pytest.param("excellent", praise, "keyword 'excellent'", id="en-excellent"),
        pytest.param("quick and professional", praise, "keyword 'quick'", id="en-quick"),
        pytest.param("very satisfied", praise, "keyword 'satisfied'", id="en-satisfied"),
        pytest.param("ＴＨＡＮＫＳ", praise, "keyword 'THANKS'", id="en-full-width-letters"),
        pytest.param("最好的服务", suggestion, "no score with no keyword", id="zh-the-best-is-not-better-to"),
        pytest.param("希望你们越来越好，非常满意", praise, "keyword '满意'", id="zh-good-wishes-are-not-a-suggestion"),
        # precedence and mixed text
        pytest.param("谢谢，但是理赔太慢了", complaint, "keyword '太慢'", id="complaint-beats-earlier-praise"),
        pytest.param("感谢，建议增加上门服务", suggestion, "keyword '建议'", id="suggestion-beats-earlier-praise"),
        pytest.param("建议你们别再拖延", complaint, "keyword '拖延'", id="complaint-beats-earlier-suggestion"),
        pytest.param("no complaints about the staff, but the process was too slow", complaint, "keyword 'too slow'",
                     id="negated-complaint-then-a-real-one"),
        pytest.param("服务great，就是太慢", complaint, "keyword '太慢'", id="mixed-language-complaint"),
        pytest.param("客服很nice", praise, "keyword 'nice'", id="english-word-beside-chinese"),
        pytest.param("Thanks. 理赔员态度差", complaint, "keyword '态度差'", id="mixed-language-zh-complaint-en-praise"),
        pytest.param("我的车在车库", suggestion, "no score with no keyword", id="no-keyword-is-a-general-remark"),
    ],
)  # fmt: skip
def test_classify_by_words(text: str, kind: FeedbackKind, rule: str) -> None:
    assert classify_feedback(text) == FeedbackClass(kind, rule)


@pytest.mark.parametrize(
    ("text", "score", "solved", "kind"),
    [
        pytest.param("谢谢", 1, False, praise, id="praise-word-beats-score-1-and-unsolved"),
        pytest.param("thanks", 2, None, praise, id="praise-word-beats-low-score"),
        pytest.param("建议加快", 1, False, suggestion, id="suggestion-word-beats-low-score"),
        pytest.param("太慢", 5, True, complaint, id="complaint-word-beats-score-5"),
        pytest.param("terrible", 5, None, complaint, id="en-complaint-word-beats-score-5"),
    ],
)  # fmt: skip
def test_words_decide_before_the_score(text: str, score: int, solved: bool | None, kind: FeedbackKind) -> None:
    assert classify_feedback(text, score=score, solved=solved).kind == kind


# --- classification: no words, the score and the solved answer decide ---------------------------------------

# (score, solved) -> kind, when the text holds no keyword: score <= 2 or not solved is a complaint, score >= 4 is
# praise, anything else a general remark (filed as a suggestion).
NO_KEYWORD = [
    (None, None, suggestion), (None, True, suggestion), (None, False, complaint),
    (1, None, complaint), (1, True, complaint), (1, False, complaint),
    (2, None, complaint), (2, True, complaint), (2, False, complaint),
    (3, None, suggestion), (3, True, suggestion), (3, False, complaint),
    (4, None, praise), (4, True, praise), (4, False, complaint),
    (5, None, praise), (5, True, praise), (5, False, complaint),
]  # fmt: skip


@pytest.mark.parametrize(
    "text", [None, "", "   ", "\n\t ", "　"], ids=["none", "empty", "spaces", "whitespace", "ideographic-space"]
)
@pytest.mark.parametrize(("score", "solved", "kind"), NO_KEYWORD)
def test_no_comment(text: str | None, score: int | None, solved: bool | None, kind: FeedbackKind) -> None:
    result = classify_feedback(text, score=score, solved=solved)
    assert result.kind == kind
    assert result.rule.endswith("with no comment")


@pytest.mark.parametrize(("score", "solved", "kind"), NO_KEYWORD)
def test_comment_without_keyword(score: int | None, solved: bool | None, kind: FeedbackKind) -> None:
    result = classify_feedback("理赔员周二来过电话 / the adjuster called on Tuesday", score=score, solved=solved)
    assert result.kind == kind
    assert result.rule.endswith("with no keyword")


@pytest.mark.parametrize(
    ("text", "score", "solved", "rule"),
    [
        pytest.param(None, 1, None, "score 1 with no comment", id="score-only"),
        pytest.param("", 5, True, "score 5, solved with no comment", id="score-and-solved"),
        pytest.param("  ", None, False, "no score, not solved with no comment", id="unsolved-only"),
        pytest.param("ok", 3, None, "score 3 with no keyword", id="text-without-keyword"),
        pytest.param(None, None, None, "no score with no comment", id="nothing-at-all"),
    ],
)  # fmt: skip
def test_rule_names_what_decided(text: str | None, score: int | None, solved: bool | None, rule: str) -> None:
    assert classify_feedback(text, score=score, solved=solved).rule == rule


@pytest.mark.parametrize(
    "score", [0, 6, -1, 10, True, 3.5], ids=["zero", "six", "negative", "nps-ten", "bool", "float"]
)
def test_a_score_outside_1_to_5_is_refused(score: int) -> None:
    with pytest.raises(InvalidInput, match="score must be a whole number from 1 to 5"):
        classify_feedback("谢谢", score=score)
    with pytest.raises(InvalidInput, match="score must be a whole number from 1 to 5"):
        needs_follow_up(score, None)


# --- classification: robustness ------------------------------------------------------------------------------


def test_only_the_start_of_a_long_text_is_searched() -> None:
    padding = "理赔员周二来过电话。" * (SEARCH_CHARS // 10 + 1)
    assert classify_feedback(padding + "太慢了").rule == "no score with no keyword"
    assert classify_feedback("太慢了" + padding).kind == complaint


def test_a_huge_text_is_cheap() -> None:
    huge = "not " * 2_000_000 + "rude"
    started = time.perf_counter()
    assert classify_feedback(huge, score=4).kind == praise
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "text",
    ["\ud800", "\x00\x01\x02", "🙂" * 50, "ﷺ" * SEARCH_CHARS, "\u200b谢谢", "((((([[[[", "n't " * 100, "不" * 1000],
    ids=["lone-surrogate", "control-characters", "emoji", "expanding-ligature", "zero-width-space", "regex-syntax",
         "bare-negations", "many-negations"],
)  # fmt: skip
def test_odd_text_does_not_raise(text: str) -> None:
    assert isinstance(classify_feedback(text, score=3).kind, FeedbackKind)


@settings(max_examples=500, deadline=None)
@given(
    text=st.one_of(st.none(), st.text(alphabet=st.characters(exclude_categories=()), max_size=300)),
    score=st.one_of(st.none(), st.integers(min_value=1, max_value=5)),
    solved=st.one_of(st.none(), st.booleans()),
)
def test_any_text_is_classified(text: str | None, score: int | None, solved: bool | None) -> None:
    result = classify_feedback(text, score=score, solved=solved)
    assert result.kind in set(FeedbackKind)
    assert result.rule


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=" \t\n0123456789.,!?-()/:%#", max_size=50),
    score=st.one_of(st.none(), st.integers(min_value=1, max_value=5)),
    solved=st.one_of(st.none(), st.booleans()),
)
def test_text_without_words_leaves_it_to_score_and_solved(text: str, score: int | None, solved: bool | None) -> None:
    assert (
        classify_feedback(text, score=score, solved=solved).kind
        == classify_feedback(None, score=score, solved=solved).kind
    )


@settings(max_examples=100, deadline=None)
@given(head=st.text(max_size=SEARCH_CHARS).map(lambda s: s.ljust(SEARCH_CHARS, ".")), tail=st.text(max_size=200))
def test_nothing_after_the_searched_part_matters(head: str, tail: str) -> None:
    assert classify_feedback(head + tail) == classify_feedback(head)


COMPLAINT_WORDS = [
    "投诉", "不满", "不满意", "太慢", "态度差", "敷衍", "拖延", "欺骗", "不合理", "差评", "失望", "没有解决", "未解决",
    "complain", "complaint", "dissatisfied", "unacceptable", "disappointed", "terrible", "awful", "rude", "worst",
    "too slow", "not happy", "not satisfied", "not helpful",
]  # fmt: skip
SUGGESTION_WORDS = [
    "建议", "希望", "能否", "可以改进", "如果能", "最好能", "suggest", "suggestion", "would be nice", "could you",
    "please add", "it would help", "improve", "should",
]  # fmt: skip
PRAISE_WORDS = [
    "感谢", "谢谢", "满意", "很好", "专业", "及时", "耐心", "点赞", "thank", "thanks", "great", "excellent", "helpful",
    "quick", "professional", "satisfied", "happy",
]  # fmt: skip
NEUTRAL_WORDS = ["理赔员", "我的车", "电话", "the adjuster", "called", "on Tuesday", "claim", "保单", "昨天"]
SEPARATORS = st.sampled_from([" ", "，", "。", ". ", "\n", "! "])


@settings(max_examples=300, deadline=None)
@given(
    first=st.sampled_from(COMPLAINT_WORDS),
    others=st.lists(st.sampled_from(COMPLAINT_WORDS + SUGGESTION_WORDS + PRAISE_WORDS + NEUTRAL_WORDS), max_size=6),
    seed=st.randoms(use_true_random=False),
    separator=SEPARATORS,
    score=st.one_of(st.none(), st.integers(min_value=1, max_value=5)),
)
def test_a_complaint_word_anywhere_makes_a_complaint(
    first: str, others: list[str], seed: random.Random, separator: str, score: int | None
) -> None:
    pieces = [first, *others]
    seed.shuffle(pieces)
    assert classify_feedback(separator.join(pieces), score=score).kind == complaint


@settings(max_examples=300, deadline=None)
@given(
    first=st.sampled_from(SUGGESTION_WORDS),
    others=st.lists(st.sampled_from(SUGGESTION_WORDS + PRAISE_WORDS + NEUTRAL_WORDS), max_size=6),
    seed=st.randoms(use_true_random=False),
    separator=SEPARATORS,
    score=st.one_of(st.none(), st.integers(min_value=1, max_value=5)),
)
def test_a_suggestion_word_without_complaint_words_makes_a_suggestion(
    first: str, others: list[str], seed: random.Random, separator: str, score: int | None
) -> None:
    pieces = [first, *others]
    seed.shuffle(pieces)
    assert classify_feedback(separator.join(pieces), score=score).kind == suggestion


@settings(max_examples=200, deadline=None)
@given(
    first=st.sampled_from(PRAISE_WORDS),
    others=st.lists(st.sampled_from(PRAISE_WORDS + NEUTRAL_WORDS), max_size=6),
    seed=st.randoms(use_true_random=False),
    separator=SEPARATORS,
    case=st.sampled_from([str.lower, str.upper, str.title]),
    solved=st.one_of(st.none(), st.booleans()),
)
def test_praise_words_alone_make_praise_in_any_case(
    first: str, others: list[str], seed: random.Random, separator: str, case: object, solved: bool | None
) -> None:
    pieces = [first, *others]
    seed.shuffle(pieces)
    text = separator.join(pieces)
    assert callable(case)
    assert classify_feedback(case(text), score=1, solved=solved).kind == praise


# --- follow-up ------------------------------------------------------------------------------------------------


def test_low_score_is_two() -> None:
    assert LOW_SCORE == 2


@pytest.mark.parametrize(
    ("score", "solved", "call_back"),
    [
        (None, None, False), (None, True, False), (None, False, True),
        (1, None, True), (1, True, True), (1, False, True),
        (2, None, True), (2, True, True), (2, False, True),
        (3, None, False), (3, True, False), (3, False, True),
        (4, None, False), (4, True, False), (4, False, True),
        (5, None, False), (5, True, False), (5, False, True),
    ],
)  # fmt: skip
def test_needs_follow_up(score: int | None, solved: bool | None, call_back: bool) -> None:
    """A call back when the score is 2 or less or the problem was not solved; an unanswered question asks nothing."""
    assert needs_follow_up(score, solved) is call_back


# --- the periodic survey --------------------------------------------------------------------------------------

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
QUIET = timedelta(days=90)
SALT = "survey-2026-03"


def _case(
    case_id: int, customer_id: int | None = None, *, handler: str | None = "ann", line: str | None = "motor",
    closed: datetime | None = None,
) -> ClosedCase:  # fmt: skip
    return ClosedCase(
        case_id=case_id,
        customer_id=case_id if customer_id is None else customer_id,
        handler=handler,
        product_line=line,
        closed_at=closed or NOW - timedelta(days=1, minutes=case_id),
    )


def _sample(
    cases: list[ClosedCase], *, share: float = 1.0, last_invited: dict[int, datetime] | None = None,
    quiet: timedelta = QUIET, now: datetime = NOW, salt: str = SALT,
) -> list[ClosedCase]:  # fmt: skip
    return sample_for_survey(
        cases, share=share, last_invited=last_invited or {}, quiet_period=quiet, now=now, salt=salt
    )


def _ids(cases: list[ClosedCase]) -> list[int]:
    return [c.case_id for c in cases]


def _rank(salt: str, case_id: int) -> bytes:
    return hmac.new(salt.encode(), str(case_id).encode(), hashlib.sha256).digest()


def test_share_1_picks_every_eligible_case_in_case_id_order() -> None:
    cases = [_case(3), _case(1, handler="bob"), _case(2, line="health"), _case(4, handler=None, line=None)]
    assert _ids(_sample(cases)) == [1, 2, 3, 4]


def test_no_cases_no_sample() -> None:
    assert _sample([]) == []


@pytest.mark.parametrize(
    ("invited_ago", "eligible"),
    [
        pytest.param(None, True, id="never-invited"),
        pytest.param(QUIET + timedelta(days=1), True, id="invited-before-the-quiet-period"),
        pytest.param(QUIET, True, id="invited-exactly-the-quiet-period-ago-is-eligible-again"),
        pytest.param(QUIET - timedelta(microseconds=1), False, id="one-microsecond-short"),
        pytest.param(timedelta(days=1), False, id="invited-yesterday"),
        pytest.param(timedelta(0), False, id="invited-now"),
        pytest.param(-timedelta(hours=1), False, id="invited-after-now-counts-as-quiet"),
    ],
)  # fmt: skip
def test_quiet_period(invited_ago: timedelta | None, eligible: bool) -> None:
    invited = {} if invited_ago is None else {7: NOW - invited_ago}
    assert _ids(_sample([_case(1, 7)], last_invited=invited)) == ([1] if eligible else [])


def test_a_zero_quiet_period_lets_anyone_invited_until_now_be_asked() -> None:
    cases = [_case(1, 7), _case(2, 8)]
    invited = {7: NOW, 8: NOW + timedelta(seconds=1)}
    assert _ids(_sample(cases, last_invited=invited, quiet=timedelta(0))) == [1]


def test_the_quiet_period_compares_instants_not_wall_clocks() -> None:
    beijing = timezone(timedelta(hours=8))
    invited_exactly_then = (NOW - QUIET).astimezone(beijing)
    assert _ids(_sample([_case(1, 7)], last_invited={7: invited_exactly_then})) == [1]


def test_other_customers_invitations_do_not_matter() -> None:
    assert _ids(_sample([_case(1, 7)], last_invited={8: NOW})) == [1]


def test_one_case_per_customer_the_most_recently_closed() -> None:
    cases = [
        _case(1, 7, closed=NOW - timedelta(days=5)),
        _case(2, 7, closed=NOW - timedelta(days=1)),
        _case(3, 7, closed=NOW - timedelta(days=3)),
        _case(4, 8),
    ]
    assert _ids(_sample(cases)) == [2, 4]


def test_two_cases_of_a_customer_closed_at_once_the_higher_case_id_counts() -> None:
    at = NOW - timedelta(days=2)
    assert _ids(_sample([_case(9, 7, closed=at), _case(5, 7, closed=at)])) == [9]


def test_a_customers_older_case_does_not_stand_in_for_their_latest() -> None:
    """The latest case of customer 7 is bob's; ann's group is left with customer 8 only."""
    cases = [
        _case(1, 7, handler="ann", closed=NOW - timedelta(days=9)),
        _case(2, 7, handler="bob", closed=NOW - timedelta(days=1)),
        _case(3, 8, handler="ann"),
    ]
    assert _ids(_sample(cases)) == [2, 3]


def test_a_customer_in_the_quiet_period_is_skipped_with_all_their_cases() -> None:
    cases = [_case(1, 7, closed=NOW - timedelta(days=9)), _case(2, 7, closed=NOW - timedelta(days=1)), _case(3, 8)]
    assert _ids(_sample(cases, last_invited={7: NOW - timedelta(days=10)})) == [3]


def test_inside_a_group_the_first_by_salted_hash_are_picked() -> None:
    cases = [_case(i) for i in range(1, 21)]
    expected = sorted(sorted(range(1, 21), key=lambda i: _rank(SALT, i))[:5])
    assert _ids(_sample(cases, share=0.25)) == expected


@pytest.mark.parametrize(
    ("share", "n", "k"),
    [
        pytest.param(0.1, 10, 1, id="a-tenth-of-ten-is-one-not-two"),
        pytest.param(0.3, 10, 3, id="three-tenths-of-ten"),
        pytest.param(0.7, 10, 7, id="seven-tenths-of-ten-is-seven-not-eight"),
        pytest.param(0.5, 3, 2, id="half-of-three-rounds-up"),
        pytest.param(0.01, 1, 1, id="a-group-of-one-always-gets-one"),
        pytest.param(1e-9, 50, 1, id="a-tiny-share-still-gets-one"),
        pytest.param(1 / 3, 9, 3, id="a-third-of-nine"),
        pytest.param(1.0, 7, 7, id="all"),
    ],
)  # fmt: skip
def test_a_group_gets_share_times_n_rounded_up(share: float, n: int, k: int) -> None:
    assert len(_sample([_case(i) for i in range(1, n + 1)], share=share)) == k


def test_every_group_gets_at_least_one() -> None:
    cases = [
        _case(100 * h + 10 * p + i, handler=handler, line=line)
        for h, handler in enumerate(["ann", "bob", "cui", None])
        for p, line in enumerate(["motor", "health", None])
        for i in range(1 + h + p)
    ]
    picked = _sample(cases, share=0.05)
    groups = Counter((c.handler, c.product_line) for c in picked)
    assert len(groups) == 12
    assert set(groups.values()) == {1}


def test_the_same_input_gives_the_same_sample_whatever_its_order() -> None:
    cases = [_case(i, i % 37, handler=["ann", "bob"][i % 2], line=["motor", "health", None][i % 3]) for i in range(200)]
    first = _sample(cases, share=0.2)
    shuffled = cases[:]
    random.Random(4).shuffle(shuffled)
    assert _sample(shuffled, share=0.2) == first
    assert _sample(list(reversed(cases)), share=0.2) == first


def test_a_larger_share_picks_a_superset() -> None:
    cases = [_case(i) for i in range(1, 101)]
    smaller, larger = set(_ids(_sample(cases, share=0.1))), set(_ids(_sample(cases, share=0.3)))
    assert smaller < larger


def test_different_salts_give_different_samples() -> None:
    cases = [_case(i) for i in range(1, 101)]
    samples = {tuple(_ids(_sample(cases, share=0.1, salt=f"round-{n}"))) for n in range(20)}
    assert len(samples) == 20


def test_every_case_has_the_same_chance() -> None:
    """Over 3000 salts, each of 10 cases in a group of which 3 are picked is picked close to 900 times."""
    cases = [_case(i) for i in range(1, 11)]
    counts = Counter(i for n in range(3000) for i in _ids(_sample(cases, share=0.3, salt=f"salt-{n}")))
    assert set(counts) == set(range(1, 11))
    assert all(780 <= count <= 1020 for count in counts.values()), counts


def test_identical_duplicates_are_read_once() -> None:
    assert _ids(_sample([_case(1), _case(1), _case(2)])) == [1, 2]


def test_one_case_id_with_different_data_is_refused() -> None:
    with pytest.raises(InvalidInput, match="case 1 is listed twice with different data"):
        _sample([_case(1, handler="ann"), _case(1, handler="bob")])


@pytest.mark.parametrize(
    "share",
    [0, 0.0, -0.1, 1.0000001, 2, float("nan"), float("inf"), True, "0.5", None],
    ids=["zero", "zero-float", "negative", "just-over-one", "two", "nan", "infinity", "bool", "text", "none"],
)
def test_a_share_out_of_range_is_refused(share: object) -> None:
    with pytest.raises(InvalidInput, match=r"share must be .*greater than 0 and at most 1"):
        _sample([_case(1)], share=share)  # type: ignore[arg-type]


def test_a_decimal_share_is_accepted() -> None:
    assert len(_sample([_case(i) for i in range(1, 11)], share=Decimal("0.2"))) == 2  # type: ignore[arg-type]


def test_a_negative_quiet_period_is_refused() -> None:
    with pytest.raises(InvalidInput, match="quiet_period must not be negative"):
        _sample([_case(1)], quiet=-timedelta(seconds=1))


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 3, 2, 9, 0)
    with pytest.raises(InvalidInput, match=r"now .* has no time zone offset"):
        _sample([_case(1)], now=naive)
    with pytest.raises(InvalidInput, match=r"closed_at of case 1 .* has no time zone offset"):
        _sample([_case(1, closed=naive)])
    with pytest.raises(InvalidInput, match=r"last invitation of customer 1 .* has no time zone offset"):
        _sample([_case(1)], last_invited={1: naive})


def test_an_empty_salt_is_refused() -> None:
    with pytest.raises(InvalidInput, match="salt must not be empty"):
        _sample([_case(1)], salt="")


# --- the periodic survey: properties ---------------------------------------------------------------------------

closed_cases = st.lists(
    st.builds(
        ClosedCase,
        case_id=st.integers(min_value=1, max_value=10_000),
        customer_id=st.integers(min_value=1, max_value=25),
        handler=st.sampled_from(["ann", "bob", "cui", None]),
        product_line=st.sampled_from(["motor", "health", None]),
        closed_at=st.integers(min_value=0, max_value=60 * 24 * 14).map(lambda m: NOW - timedelta(minutes=m)),
    ),
    max_size=60,
    unique_by=lambda c: c.case_id,
)
invitations = st.dictionaries(
    st.integers(min_value=1, max_value=25),
    st.integers(min_value=-48, max_value=24 * 120).map(lambda h: NOW - timedelta(hours=h)),
)
shares = st.one_of(st.sampled_from([0.1, 0.25, 1 / 3, 0.5, 1.0]), st.floats(min_value=0, max_value=1, exclude_min=True))
quiet_periods = st.integers(min_value=0, max_value=100).map(lambda d: timedelta(days=d))


def _eligible_latest(
    cases: list[ClosedCase], last_invited: dict[int, datetime], quiet: timedelta
) -> dict[int, ClosedCase]:
    """Each customer's latest case, for the customers outside the quiet period (the specification, restated)."""
    latest: dict[int, ClosedCase] = {}
    for case in sorted(cases, key=lambda c: (c.closed_at, c.case_id)):
        latest[case.customer_id] = case
    return {
        customer: case
        for customer, case in latest.items()
        if customer not in last_invited or NOW - last_invited[customer] >= quiet
    }


@settings(max_examples=300, deadline=None)
@given(cases=closed_cases, last_invited=invitations, share=shares, quiet=quiet_periods, salt=st.text(min_size=1))
def test_sample_properties(
    cases: list[ClosedCase], last_invited: dict[int, datetime], share: float, quiet: timedelta, salt: str
) -> None:
    picked = _sample(cases, share=share, last_invited=last_invited, quiet=quiet, salt=salt)
    eligible = _eligible_latest(cases, last_invited, quiet)

    # a subset of the input, in case id order, no customer twice
    assert all(case in cases for case in picked)
    assert _ids(picked) == sorted(set(_ids(picked)))
    customers = [c.customer_id for c in picked]
    assert len(customers) == len(set(customers))
    # nobody invited within the quiet period; everyone picked is represented by their latest case
    assert all(c.customer_id not in last_invited or NOW - last_invited[c.customer_id] >= quiet for c in picked)
    assert all(eligible.get(c.customer_id) == c for c in picked)
    # each group: ceil(share * eligible), the share read as the decimal it prints as; at least one, at most all
    per_group = Counter((c.handler, c.product_line) for c in eligible.values())
    picked_per_group = Counter((c.handler, c.product_line) for c in picked)
    assert set(picked_per_group) == set(per_group)
    for group, n in per_group.items():
        assert picked_per_group[group] == math.ceil(Fraction(repr(share)) * n)
    assert len(per_group) <= len(picked) <= len(eligible)
    assert len(picked) >= share * len(eligible) - 1e-9
    if share == 1.0:
        assert picked == sorted(eligible.values(), key=lambda c: c.case_id)


@settings(max_examples=200, deadline=None)
@given(
    cases=closed_cases,
    last_invited=invitations,
    shares=st.lists(shares, min_size=2, max_size=2).map(sorted),
    quiet=quiet_periods,
    seed=st.randoms(use_true_random=False),
)
def test_sample_is_order_free_repeatable_and_grows_with_the_share(
    cases: list[ClosedCase], last_invited: dict[int, datetime], shares: list[float], quiet: timedelta,
    seed: random.Random,
) -> None:  # fmt: skip
    smaller, larger = shares
    picked = _sample(cases, share=smaller, last_invited=last_invited, quiet=quiet)
    shuffled = cases[:]
    seed.shuffle(shuffled)
    assert _sample(shuffled, share=smaller, last_invited=last_invited, quiet=quiet) == picked
    assert _sample(cases, share=smaller, last_invited=last_invited, quiet=quiet) == picked
    assert set(picked) <= set(_sample(cases, share=larger, last_invited=last_invited, quiet=quiet))

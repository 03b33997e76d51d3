"""What a customer's feedback says, who needs a call back, and who is asked in the periodic survey: pure rules.

Feedback arrives in Chinese (zh-CN) or English as a survey comment, an e-mail reply, a staff phone note or a
webhook, often with a score (1 to 5) and an answer to "was your problem solved?".

- ``classify_feedback`` sorts it into praise, suggestion or complaint by keywords, complaint words first, with the
  score and the solved answer deciding when the words say nothing;
- ``needs_follow_up`` says when the desk calls the customer back (a low score or an unsolved problem), whatever
  the words;
- ``sample_for_survey`` picks the recently closed cases whose customers get the periodic satisfaction survey:
  a share of every handler's cases in every product line, never a customer twice in one round, nobody invited
  within the quiet period, chosen by a salted hash so that a re-run picks the same cases.

No clock, no database, no Prefect: ``now`` and the invitation history are arguments.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import numbers
import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from models.clock import exact
from models.errors import InvalidInput

# --- classification ---------------------------------------------------------------------------------------

LOW_SCORE = 2
"""A score at or below this is a low score: a complaint when the words say nothing, and always a call back."""
HIGH_SCORE = 4
"""A score at or above this is praise when the words say nothing."""
MIN_SCORE, MAX_SCORE = 1, 5
# Only the start of a text is searched: a mail reply quotes our own earlier mail further down, and the rules must
# cost the same for a pasted novel as for a sentence.
SEARCH_CHARS = 4000


class FeedbackKind(StrEnum):
    """What a piece of feedback is, as stored in ``Feedback.classification``."""

    praise = "praise"
    suggestion = "suggestion"
    complaint = "complaint"


@dataclass(frozen=True)
class FeedbackClass:
    """The kind of a piece of feedback and the rule that decided it (shown to staff beside the feedback)."""

    kind: FeedbackKind
    rule: str
    """``keyword '投诉'``, ``keyword 'not happy'``, ``score 1 with no comment``, ``score 3, solved with no keyword``."""


# English words match whole words only ("rude" is not in "prudent"); the edges are ASCII letters and digits so that
# an English word right beside a Chinese one ("服务great") still counts.
_START = r"(?<![a-z0-9_])"
_END = r"(?![a-z0-9_])"


def _english(*phrases: str) -> str:
    """Whole-word alternatives; a space inside a phrase stands for any run of white space."""
    return _START + "(?:" + "|".join(phrase.replace(" ", r"\s+") for phrase in phrases) + ")" + _END


def _words(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


# "not", "can't", "didnt": what turns the English word after it around. "never" and "hardly" are left out on
# purpose: "I have never been so happy" is praise.
_NOT_EN = _START + r"(?:not|cannot|[a-z]+n't|(?:do|does|did|is|was|are|were|could|would|has|have|had|ca|wo|ai)nt)"
# Words that may stand between the negation and the word it turns around ("not very helpful", "wasn't of much
# help", "not at all happy"); at most two of them. "more" is not one: "couldn't be more helpful" is praise.
_FILLER_EN = _words(
    "very", "really", "so", "too", "that", "quite", r"at\s+all", "particularly", "even", "entirely", "fully",
    "completely", "exactly", "remotely", "overly", "yet", "been", "be", "being", "feel", "felt", "get", "got",
    "getting", "find", "found", "a", "an", "the", "any", "much", "of", "always", "properly",
)  # fmt: skip
_GAP_EN = r"(?:\s+" + _FILLER_EN + r"){0,2}\s+"

# Praise words that, turned around, are complaints: "not happy", "wasn't helpful", "didn't get back to me".
_PRAISE_ROOTS_EN = _words(
    "happy", "satisfied", "pleased", "helpful", "help", "helped", "useful", "professional", "quick", "fast",
    "prompt", "good", "great", "nice", "friendly", "polite", "courteous", "responsive", "timely", "satisfactory",
    "impressed", "resolved", "solved", "fixed", "handled", "answered", "responded", "replied", "respond", "reply",
    "resolve", "solve", "fix", "acceptable", "fair", "ok", "okay", "best", "excellent", r"call(?:ed)?\s+back",
    r"get\s+back", r"got\s+back", r"hear\s+back", r"heard\s+back", "like", "liked",
)  # fmt: skip
# Complaint words that, turned around, are not complaints: "no complaints", "not disappointed", "not too slow".
_COMPLAINT_ROOTS_EN = _words(
    r"complain(?:t|ts|ed|ing|s)?", r"disappoint(?:ed|ing|ment)?", "dissatisfied", "unhappy", "rude", "slow",
    "bad", "terrible", "awful", "unacceptable", "unreasonable", "unfair", "unhelpful", r"frustrat(?:ed|ing)",
    "problems?", "issues?", "worst", r"delay(?:s|ed)?",
)  # fmt: skip
_NO_EN = r"(?:" + _NOT_EN + "|" + _START + r"(?:no|never|without(?:\s+any)?|nothing\s+to|none\s+of))"

# Chinese negations; a negation directly before a praise word is a complaint ("不太满意", "没有及时回复",
# "问题没有得到解决"), before a complaint word it is not one ("没有不满", "不会让您失望").
_NOT_ZH = r"(?:并没有|从来没有|没有|并不|从不|从未|毫不|一点也不|一点都不|无法|没能|未能|不能|尚未|不|没|未)"
_GAP_ZH = r"(?:太|是很|是太|是非常|怎么|够|很|大|算|那么|什么|得到了?|被|及时|能)?"
_PRAISE_ROOTS_ZH = _words(
    "满意", "专业", "及时", "耐心", "热情", "周到", "解决", "处理", "帮助", "帮忙", "帮上忙", "回复", "回应", "联系",
    "理睬", "理会", "到位", "认真", "友好", "礼貌",
)  # fmt: skip
_NO_ZH = r"(?:毫无|并无|无|不是|不会|" + _NOT_ZH.removeprefix("(?:")
_COMPLAINT_ROOTS_ZH = _words("不满意?", "投诉", "失望", "抱怨", "差评", "太慢", "敷衍", "过分")

# Spans that look like complaints and are not; they are blanked out before the complaint words are searched.
_NOT_A_COMPLAINT = re.compile(
    "|".join(
        (
            _NO_EN + _GAP_EN + _COMPLAINT_ROOTS_EN + _END,
            # "my complaint was resolved quickly": feedback on a complaint case names the complaint
            _START
            + r"complaints?\s+(?:was|were|is|has\s+been|have\s+been|got|been)\s+"
            + r"(?:(?:quickly|promptly|finally|fully|properly|already|well|swiftly)\s+)?"
            + r"(?:resolved|solved|handled|settled|addressed|fixed|sorted|dealt\s+with)"
            + _END,
            _NO_ZH + r"(?:什么|任何|让我|让人|让您|让你|令人|令我)?" + _COMPLAINT_ROOTS_ZH,
            r"投诉(?:的问题)?(?:已经|已|得到了?|被|都)(?:及时|很快|妥善|圆满|顺利)?(?:解决|处理)",
            # the question form "能不能", "是不是", "有没有", "满不满意": not a negation
            r"([\u3400-\u9fff])[不没]\1",
        )
    ),
    re.IGNORECASE,
)

_COMPLAINT = re.compile(
    "|".join(
        (
            _NOT_EN + _GAP_EN + _PRAISE_ROOTS_EN + _END,
            _english(
                r"complain(?:t|ts|ed|ing|s)?", "dissatisfied", "unsatisfied", "unsatisfactory", "unacceptable",
                r"disappoint(?:ed|ing|ment)?", "terrible", "awful", "horrible", "appalling", "dreadful", "rude",
                "worst", "useless", "unhelpful", "unprofessional", "incompetent", "ridiculous", "unhappy",
                r"frustrat(?:ed|ing|ion)", "angry", "furious", "unfair", "unreasonable", r"mislead(?:ing)?", "misled",
                "lied", "cheated", "scam", "badly", "poorly", "unresolved", "ignored", r"waste of (?:my )?time",
                r"(?:too|so|very|really|extremely|painfully|incredibly) slow",
                r"slow (?:response|service|reply|process|processing|handling)",
                r"(?:bad|poor|awful) (?:service|experience|attitude|communication|support|handling|customer service)",
                r"(?:very|so|really) bad", r"(?:still|kept) waiting",
                r"no (?:response|reply|answer|one called|one answered|one replied|one helped|one got back)",
                r"nobody (?:called|answered|replied|responded|helped|got back)",
                r"never (?:called|got|heard|came) back", r"never (?:responded|replied|answered|helped)",
            ),
            "投诉", "举报", "申诉", r"不满(?:意|(?![一二三四五六七八九十两百千0-9足]))",
            "太慢", "很慢", "好慢", "真慢", "慢死", "慢吞吞", "效率低", "效率太低", "态度差", "态度不好", "态度恶劣",
            "恶劣", "服务差", "服务不好", "很差", "太差", "真差", "差劲", "质量差", "体验差", "敷衍", "拖延", "拖拉",
            "拖了很久", "拖了好久", "拖了这么久", "一拖再拖", "推诿", "推脱", "踢皮球", "欺骗", "骗人", "骗子", "忽悠",
            "坑人", "不合理", "不公平", "不公正", "差评", "失望", "生气", "气愤", "愤怒", "恼火", "无语", "离谱",
            "太过分", "很过分", "垃圾", "恶心", "不负责任", "不作为", "没人管", "没人理", "不理人", "没人回复",
            "无人回复", "无人处理", "解决不了", "没用", "没有用", "毫无用处", "不耐烦", "不够好", "体验不好", "不好用",
            r"(?:不太|很不|非常不|太不|真不)好(?!意思)",
            _NOT_ZH + _GAP_ZH + _PRAISE_ROOTS_ZH,
        )
    ),
    re.IGNORECASE,
)  # fmt: skip

_SUGGESTION = re.compile(
    "|".join(
        (
            _english(
                r"suggest(?:s|ed|ion|ions)?", r"would be (?:nice|great|good|better|helpful|useful|easier)",
                r"would (?:love|appreciate|prefer)", "it would help", "it'd help", "could you", "can you please",
                r"please (?:add|consider|make|provide|allow|let|offer|improve)", r"improve(?:ment|ments)?",
                "room for improvement", r"could be (?:better|improved|faster|clearer|easier)", "should",
                r"wish (?:you|there|it) (?:had|would|could|were|was|did)", "how about", "why not", "next time",
                "consider",
            ),
            # "希望你们越来越好" is a good wish, not a suggestion; "最好的" is "the best", not "better to"
            "建议", r"希望(?!(?:你们|贵公司|公司|您)?越来越好)", "能否", "可否", "是否可以", "是不是可以", "能不能",
            "可不可以", "可以改进", "改进", "改善", "优化", "如果能", "如果可以", r"最好(?!的)", "请尽快", "请及时",
            "尽快",
        )
    ),
    re.IGNORECASE,
)  # fmt: skip

_PRAISE = re.compile(
    "|".join(
        (
            _english(
                "thank you", r"thank(?:s|ful)?", "thx", "great", "excellent", "helpful", r"quick(?:ly)?", "fast",
                r"prompt(?:ly)?", "professional", "satisfied", "happy", "pleased", r"appreciated?", "grateful",
                "wonderful", "amazing", "awesome", "fantastic", "brilliant", "perfect", "friendly", "polite",
                "efficient", "smooth", "outstanding", "superb", "nice", "lovely", "impressed", "patience",
                r"(?:very|so) (?:kind|patient)", "good job", "well done", r"(?:very|really|so) good",
                r"good (?:service|experience|job|work)", r"no complaints?", "nothing to complain about",
                r"(?:can't|cannot|cant) complain", r"(?:not|never) disappointed",
            ),
            "感谢", "谢谢", "多谢", "致谢", "满意", "很好", "非常好", "挺好", "真好", "不错", "专业", "及时", "耐心",
            "细心", "贴心", "热情", "周到", "认真", "高效", "效率高", "快速", "迅速", "很快", "给力", "靠谱", "点赞",
            "好评", "称赞", "表扬", "赞一个", "很赞", "太赞", "很棒", "太棒", "真棒", "非常棒", "五星", "辛苦了",
            r"(?:没有|没什么|毫无|并无|无)不满意?", r"(?:没有?|不会)(?:让我|让人|让您|令人)?失望", "不失望",
        )
    ),
    re.IGNORECASE,
)  # fmt: skip

# Typographic apostrophes, as phones and word processors type them: "can’t" is "can't".
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'"})


def classify_feedback(text: str | None, *, score: int | None = None, solved: bool | None = None) -> FeedbackClass:
    """Sort a piece of feedback into praise, suggestion or complaint.

    The first rule that applies decides:

    1. a complaint word: ``投诉``, ``不满意``, ``太慢``, ``态度差``, ``敷衍``, ``没有解决``, ``complaint``,
       ``disappointed``, ``rude``, ``too slow``; a praise word turned around is one too (``不太满意``,
       ``没有及时回复``, ``not happy``, ``wasn't helpful``, ``didn't get back to me``), while a complaint word
       turned around is not (``没有不满``, ``no complaints``, ``not disappointed``, ``my complaint was resolved``);
    2. a suggestion word: ``建议``, ``希望``, ``能否``, ``最好能``, ``suggest``, ``could you``, ``please add``,
       ``should``;
    3. a praise word: ``感谢``, ``满意``, ``专业``, ``及时``, ``thanks``, ``great``, ``helpful``, ``no complaints``;
    4. no such word: a score of ``LOW_SCORE`` or less, or "not solved", is a complaint; a score of ``HIGH_SCORE``
       or more is praise; anything else (a score of 3, no score, a remark) is a general remark, filed as a
       suggestion.

    The words decide before the score: "谢谢" with a score of 1 is praise, and the low score is what
    ``needs_follow_up`` acts on. Case is ignored; English words match whole words only; full-width letters and
    typographic apostrophes are read as their plain forms. Only the first ``SEARCH_CHARS`` characters are
    searched. Any string is accepted, however long or odd.

    Args:
        text: the comment, the mail's reply text or the staff member's note; None or blank when there was none.
        score: the customer's score, 1 (worst) to 5 (best), or None when not given.
        solved: the customer's answer to "was your problem solved?", or None when not answered.

    Returns:
        The kind and a short description of the rule that decided it.

    Raises:
        InvalidInput: the score is not a whole number from 1 to 5.
    """
    _check_score(score)
    searched = _searchable(text)
    if searched.strip():
        masked = _NOT_A_COMPLAINT.sub(lambda m: "|" * len(m.group(0)), searched)
        for kind, pattern, where in (
            (FeedbackKind.complaint, _COMPLAINT, masked),
            (FeedbackKind.suggestion, _SUGGESTION, searched),
            (FeedbackKind.praise, _PRAISE, searched),
        ):
            found = pattern.search(where)
            if found:
                return FeedbackClass(kind, f"keyword {' '.join(found.group(0).split())!r}")
    said = [f"score {score}" if score is not None else "no score"]
    if solved is not None:
        said.append("solved" if solved else "not solved")
    rule = f"{', '.join(said)} with {'no keyword' if searched.strip() else 'no comment'}"
    if (score is not None and score <= LOW_SCORE) or solved is False:
        return FeedbackClass(FeedbackKind.complaint, rule)
    if score is not None and score >= HIGH_SCORE:
        return FeedbackClass(FeedbackKind.praise, rule)
    return FeedbackClass(FeedbackKind.suggestion, rule)


def needs_follow_up(score: int | None, solved: bool | None) -> bool:
    """Whether the desk calls the customer back: a score of ``LOW_SCORE`` or less, or a problem not solved.

    An unanswered question (None) asks for nothing: only what the customer said counts.

    Args:
        score: the customer's score, 1 to 5, or None when not given.
        solved: the answer to "was your problem solved?", or None when not answered.

    Returns:
        True when the score is low or the problem was not solved.

    Raises:
        InvalidInput: the score is not a whole number from 1 to 5.
    """
    _check_score(score)
    return (score is not None and score <= LOW_SCORE) or solved is False


def _check_score(score: int | None) -> None:
    # A score on another scale (an NPS 0-10, a percentage) would be misread silently, so it is refused.
    if score is None:
        return
    if isinstance(score, bool) or not isinstance(score, int) or not MIN_SCORE <= score <= MAX_SCORE:
        raise InvalidInput(f"score must be a whole number from {MIN_SCORE} to {MAX_SCORE} (got {score!r})")


def _searchable(text: str | None) -> str:
    if not text:
        return ""
    # NFKC reads full-width letters and punctuation as plain ones ("ＴＨＡＮＫＳ" is "THANKS"); it may lengthen
    # a few odd characters, hence the second cut.
    normalised = unicodedata.normalize("NFKC", text[:SEARCH_CHARS])[:SEARCH_CHARS]
    return normalised.translate(_APOSTROPHES)


# --- the periodic satisfaction survey -----------------------------------------------------------------------


@dataclass(frozen=True)
class ClosedCase:
    """A recently closed case as the survey sees it."""

    case_id: int
    customer_id: int
    handler: str | None
    """The handler's staff username, or None when nobody was assigned."""
    product_line: str | None
    closed_at: datetime


def sample_for_survey(
    cases: Sequence[ClosedCase],
    *,
    share: float,
    last_invited: Mapping[int, datetime],
    quiet_period: timedelta,
    now: datetime,
    salt: str,
) -> list[ClosedCase]:
    """The closed cases whose customers are invited to the periodic satisfaction survey.

    1. One case per customer: a customer's most recently closed case stands for them (the higher case id when
       two closed at the same instant); their other cases are not asked about in this round.
    2. A customer is eligible when they were never invited, or their last invitation was ``quiet_period`` or
       longer before ``now``: invited exactly ``quiet_period`` ago is eligible again. An invitation after
       ``now`` (a re-run for an earlier moment) counts as within the quiet period.
    3. The eligible cases are grouped by (handler, product line), None being a group like any other; from a
       group of n cases, ``ceil(share * n)`` are picked, so every handler is assessed in every product line
       they closed a case in.
    4. Inside a group the cases are ordered by HMAC-SHA256(salt, case id) and the first ones are taken: each
       case has the same chance, the order the cases come in does not matter, and the same input gives the
       same sample. A larger share picks a superset of a smaller one.

    Keep the salt secret (a handler who knew it could tell which of their cases will be surveyed). A re-run is
    the same input only when ``last_invited`` is read as it was before the round's invitations were recorded.

    Args:
        cases: the recently closed cases (their order does not matter).
        share: the part of each group to invite, more than 0 and at most 1; a float is read as the decimal it
            prints as (0.1 is one tenth).
        last_invited: each customer's last survey invitation (aware datetimes), by customer id.
        quiet_period: how long after an invitation a customer is not asked again; zero or more.
        now: the moment of the round (aware datetime).
        salt: the survey's secret salt; not empty.

    Returns:
        The cases to invite, by case id.

    Raises:
        InvalidInput: the share is out of range, the quiet period negative, a datetime has no time zone, the salt
            is empty, or one case id comes twice with different data.
    """
    fraction = _check_share(share)
    if quiet_period < timedelta(0):
        raise InvalidInput(f"quiet_period must not be negative (got {quiet_period})")
    _require_aware(now, "now")
    if not salt:
        raise InvalidInput("salt must not be empty: it keeps the sample unpredictable")

    by_id: dict[int, ClosedCase] = {}
    latest: dict[int, ClosedCase] = {}
    for case in cases:
        seen = by_id.setdefault(case.case_id, case)
        if seen != case:
            raise InvalidInput(f"case {case.case_id} is listed twice with different data")
        _require_aware(case.closed_at, f"closed_at of case {case.case_id}")
        current = latest.get(case.customer_id)
        if current is None or (case.closed_at, case.case_id) > (current.closed_at, current.case_id):
            latest[case.customer_id] = case

    groups: defaultdict[tuple[str | None, str | None], list[ClosedCase]] = defaultdict(list)
    for customer_id, case in latest.items():
        invited = last_invited.get(customer_id)
        if invited is not None:
            _require_aware(invited, f"last invitation of customer {customer_id}")
            if now - invited < quiet_period:
                continue
        groups[(case.handler, case.product_line)].append(case)

    key = salt.encode("utf-8", "surrogatepass")
    picked: list[ClosedCase] = []
    for members in groups.values():
        members.sort(key=lambda c: (hmac.new(key, str(c.case_id).encode(), hashlib.sha256).digest(), c.case_id))
        picked.extend(members[: _ceil(fraction * len(members))])
    return sorted(picked, key=lambda c: c.case_id)


def _check_share(share: float) -> Fraction:
    # Decimal is not a numbers.Real but is a fine way to write a share; bool is an int but not a share.
    if isinstance(share, bool) or not isinstance(share, numbers.Real | Decimal) or not math.isfinite(share):
        raise InvalidInput(f"share must be a number greater than 0 and at most 1 (got {share!r})")
    if not 0 < share <= 1:
        raise InvalidInput(f"share must be greater than 0 and at most 1 (got {share!r})")
    if isinstance(share, numbers.Rational | Decimal):
        return Fraction(share)
    return exact(float(share))


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


def _require_aware(instant: datetime, what: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidInput(f"{what} ({instant.isoformat()}) has no time zone offset")

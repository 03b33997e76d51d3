"""Survey links and the survey page's words: pure rules, no clock, no database.

A survey link carries a token that names one invitation and the time it expires, signed with the desk's
survey key (itsdangerous, HMAC-SHA1 over a URL-safe payload, salted for this one purpose). The signature
makes a link unforgeable; the expiry is in the signed payload, so a link cannot be stretched; single use is
the database's part (the invitation row records its answer).

A link is refused, with a message the customer can understand, when it is:

- ``forged``: the signature does not match (a typo, a truncated link, another desk's key);
- ``expired``: ``now`` is at or after the expiry in the token;
- ``used``: the invitation has been answered already;
- ``unknown``: the signature is good but no such invitation exists (it was deleted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from models.errors import ClaimflowError, InvalidInput

SALT = "claimflow.survey-link.v1"
LANGUAGES = ("zh-CN", "en")
MAX_COMMENT_CHARS = 2000


class Refusal(StrEnum):
    """Why a link sent to a customer (a survey's, a case status page's) does not open."""

    forged = "forged"
    expired = "expired"
    used = "used"
    unknown = "unknown"
    revoked = "revoked"


class LinkRefused(ClaimflowError):
    """A customer's link that does not open; ``reason`` says why (the page words it for the customer)."""

    exit_code = 2

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


SurveyLinkRefused = LinkRefused


@dataclass(frozen=True)
class LinkClaim:
    """What a well-signed token says: which invitation, and until when."""

    invitation_id: int
    expires_at: datetime


def _serializer(key: str, salt: str = SALT) -> URLSafeSerializer:
    if not key:
        raise InvalidInput("the link key is empty")
    return URLSafeSerializer(key, salt=salt)


def read_signed(key: str, token: str, *, salt: str, fields: tuple[str, ...], what: str) -> dict[str, int]:
    """A signed link's payload: a dict of the integer ``fields``.

    Raises:
        LinkRefused: ``forged`` when the token is malformed, not signed by ``key`` for ``salt``, or not of this shape.
    """
    if not token or len(token) > 500:
        raise LinkRefused(Refusal.forged, f"the {what} link is malformed")
    try:
        payload: Any = _serializer(key, salt).loads(token)
    except BadSignature:
        raise LinkRefused(Refusal.forged, f"the {what} link's signature does not match") from None
    if not isinstance(payload, dict) or not all(
        isinstance(payload.get(k), int) and not isinstance(payload.get(k), bool) for k in fields
    ):
        raise LinkRefused(Refusal.forged, f"the {what} link's content is not ours")
    return {k: payload[k] for k in fields}


def make_token(key: str, *, invitation_id: int, expires_at: datetime) -> str:
    """The token of one invitation's link.

    Args:
        key: the desk's survey link key.
        invitation_id: the invitation row's id.
        expires_at: when the link stops working (aware).

    Returns:
        A URL-safe string (letters, digits, ``-``, ``_`` and ``.``).
    """
    if expires_at.tzinfo is None:
        raise InvalidInput("a survey link's expiry must be timezone-aware")
    return _serializer(key).dumps({"i": invitation_id, "e": int(expires_at.timestamp())})


def read_token(key: str, token: str) -> LinkClaim:
    """Check a token's signature and read what it says (expiry is checked by ``check_link``).

    Raises:
        SurveyLinkRefused: ``forged`` when the signature or the payload is not ours.
    """
    payload = read_signed(key, token, salt=SALT, fields=("i", "e"), what="survey")
    return LinkClaim(invitation_id=payload["i"], expires_at=datetime.fromtimestamp(payload["e"], UTC))


def check_link(claim: LinkClaim, *, answered_at: datetime | None, exists: bool, now: datetime) -> None:
    """Refuse a link that may not be answered now; used beats expired (the customer did answer).

    Args:
        claim: what the token says.
        answered_at: when the invitation was answered, or None.
        exists: whether the invitation row exists.
        now: the time of the request (aware).

    Raises:
        SurveyLinkRefused: ``unknown``, ``used`` or ``expired``.
    """
    if not exists:
        raise SurveyLinkRefused(Refusal.unknown, "this survey invitation no longer exists")
    if answered_at is not None:
        raise SurveyLinkRefused(Refusal.used, "this survey has been answered already")
    if now >= claim.expires_at:
        raise SurveyLinkRefused(Refusal.expired, "this survey link has expired")


@dataclass(frozen=True)
class SurveyAnswer:
    """A customer's answer, checked."""

    score: int
    solved: bool
    comment: str | None


def parse_answer(score: str | None, solved: str | None, comment: str | None) -> SurveyAnswer:
    """Check the survey form's fields as posted (strings, possibly missing).

    Args:
        score: "1" to "5".
        solved: "yes" or "no".
        comment: free text, optional; at most ``MAX_COMMENT_CHARS`` characters after trimming.

    Returns:
        The answer.

    Raises:
        InvalidInput: naming each field that is wrong (the page shows the message next to the form).
    """
    problems = []
    value = (score or "").strip()
    if value not in {"1", "2", "3", "4", "5"}:
        problems.append("score: choose 1 to 5")
    answer = (solved or "").strip().lower()
    if answer not in {"yes", "no"}:
        problems.append("solved: choose yes or no")
    text = (comment or "").strip()
    if len(text) > MAX_COMMENT_CHARS:
        problems.append(f"comment: at most {MAX_COMMENT_CHARS} characters ({len(text)} given)")
    if "\x00" in text:
        problems.append("comment: contains a NUL character")
    if problems:
        raise InvalidInput("; ".join(problems))
    return SurveyAnswer(score=int(value), solved=answer == "yes", comment=text or None)


def page_language(asked: str | None, default: str) -> str:
    """The page's language: the one asked for (``?lang=en``) if we have it, else the invitation's."""
    for candidate in (asked, default):
        if candidate:
            for language in LANGUAGES:
                if candidate.lower() == language.lower() or candidate.split("-")[0].lower() == language.split("-")[0]:
                    return language
    return LANGUAGES[0]


# The page's words. Both languages have the same keys (a test checks it).
PAGE_TEXT: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "服务满意度评价",
        "intro": "感谢您花一分钟告诉我们，我们对案件 {case} 的处理是否让您满意。",
        "score": "您对我们的服务满意吗？（1 = 非常不满意，5 = 非常满意）",
        "score_1": "1 非常不满意",
        "score_2": "2 不满意",
        "score_3": "3 一般",
        "score_4": "4 满意",
        "score_5": "5 非常满意",
        "solved": "您的问题解决了吗？",
        "yes": "已解决",
        "no": "未解决",
        "comment": "您还想告诉我们什么？（选填）",
        "submit": "提交评价",
        "large_on": "大字模式",
        "large_off": "标准字号",
        "other_language": "English",
        "expires": "本链接有效期至 {expires}。",
        "thanks_title": "感谢您的评价",
        "thanks": "我们已收到您的评价。",
        "call_back": "很抱歉没能让您满意。主管将在两个工作日内致电您，了解情况并跟进处理。",
        "error_title": "无法打开评价",
        "forged": "这个评价链接无效。请检查链接是否完整，或拨打 {phone} 告诉我们您的意见。",
        "expired": "这个评价链接已过期。如您仍想评价，请拨打 {phone}。",
        "used": "这个评价已经提交过了，感谢您的反馈。如需补充，请拨打 {phone}。",
        "unknown": "找不到这份评价邀请。请拨打 {phone} 告诉我们您的意见。",
        "invalid": "请检查以下内容：{problems}",
        "unavailable": "系统暂时无法处理，请稍后再试，或拨打 {phone}。",
    },
    "en": {
        "title": "How did we do?",
        "intro": "Thank you for taking a minute to tell us how we handled case {case}.",
        "score": "How satisfied are you with our service? (1 = very dissatisfied, 5 = very satisfied)",
        "score_1": "1 Very dissatisfied",
        "score_2": "2 Dissatisfied",
        "score_3": "3 Neutral",
        "score_4": "4 Satisfied",
        "score_5": "5 Very satisfied",
        "solved": "Was your problem solved?",
        "yes": "Yes",
        "no": "No",
        "comment": "Anything else you would like to tell us? (optional)",
        "submit": "Send my answer",
        "large_on": "Large text",
        "large_off": "Normal text",
        "other_language": "中文",
        "expires": "This link works until {expires}.",
        "thanks_title": "Thank you",
        "thanks": "We have received your answer.",
        "call_back": "We are sorry we did not get it right. A supervisor will call you within two working days "
        "to follow it up.",
        "error_title": "This survey cannot be opened",
        "forged": "This survey link is not valid. Please check that the whole link was copied, or call {phone} "
        "to tell us what you think.",
        "expired": "This survey link has expired. If you would still like to tell us, please call {phone}.",
        "used": "This survey has already been answered. Thank you. To add something, please call {phone}.",
        "unknown": "We cannot find this survey invitation. Please call {phone} to tell us what you think.",
        "invalid": "Please check: {problems}",
        "unavailable": "We cannot take your answer just now. Please try again later or call {phone}.",
    },
}

"""The customer's case status page, pure: the signed link, and the case told in a customer's words.

Every message to a customer about a case carries a fresh link to ``/status/<token>`` (the survey link's approach):
the token is signed with the desk's link key (its own salt), names the case, when it was issued and when it
expires (``CLAIMFLOW_STATUS_LINK_DAYS``). It is revoked by the case's ``links_revoked_at``: every link issued before
that time is refused (``claimflow case link CLM-… --revoke``: a link forwarded to the wrong person), the next message
carries a fresh one.

The page shows only this case and nothing another person could use: the state in plain words, the promised dates,
what happened so far (a whitelist of event types, in words; no staff names, no amounts beyond what the customer was
told, no personal data), the documents the desk still needs, how to reach the desk and how to complain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import URLSafeSerializer

from models.errors import InvalidInput
from models.survey import LinkRefused, Refusal, read_signed

SALT = "claimflow.status-link.v1"


@dataclass(frozen=True)
class StatusClaim:
    case_id: int
    issued_at: datetime
    expires_at: datetime


def make_status_token(key: str, *, case_id: int, issued_at: datetime, expires_at: datetime) -> str:
    if issued_at.tzinfo is None or expires_at.tzinfo is None:
        raise InvalidInput("a status link's times must be timezone-aware")
    payload = {"c": case_id, "t": int(issued_at.timestamp() * 1000), "e": int(expires_at.timestamp())}
    return URLSafeSerializer(key, salt=SALT).dumps(payload)


def read_status_token(key: str, token: str) -> StatusClaim:
    """Check the signature and read the token (``check_status_link`` checks the times).

    Raises:
        LinkRefused: ``forged``.
    """
    payload = read_signed(key, token, salt=SALT, fields=("c", "t", "e"), what="status")
    try:
        issued = datetime.fromtimestamp(payload["t"] / 1000, UTC)  # milliseconds: a revocation is exact
        expires = datetime.fromtimestamp(payload["e"], UTC)
    except (OverflowError, OSError, ValueError):
        raise LinkRefused(Refusal.forged, "the status link's times are out of range") from None
    return StatusClaim(payload["c"], issued, expires)


def check_status_link(claim: StatusClaim, *, exists: bool, revoked_at: datetime | None, now: datetime) -> None:
    """Refuse a link whose case is gone, that was revoked (issued at or before ``revoked_at``), or that has expired.

    Raises:
        LinkRefused: ``unknown``, ``revoked`` or ``expired``.
    """
    if not exists:
        raise LinkRefused(Refusal.unknown, "no such case")
    if revoked_at is not None and claim.issued_at <= revoked_at:
        raise LinkRefused(Refusal.revoked, "this status link was withdrawn")
    if now >= claim.expires_at:
        raise LinkRefused(Refusal.expired, "this status link has expired")


# --- the case in a customer's words -----------------------------------------------------------------------

STATE_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "received": "We have received it",
        "acknowledged": "We have received it and are looking into it",
        "under_review": "We are reviewing your claim",
        "awaiting_documents": "We are waiting for documents from you",
        "investigating": "We are looking into it",
        "mediation": "In mediation",
        "approved": "Approved",
        "partly_approved": "Approved in part",
        "rejected": "Not approved",
        "paid": "Paid",
        "resolved": "We have sent you our answer",
        "referred": "Referred to an outside body",
        "answered": "We have answered",
        "feedback": "Decided; we would like your feedback",
        "closed": "Closed",
        "withdrawn": "Withdrawn",
        "reopened": "Reopened: we are looking at it again",
    },
    "zh-CN": {
        "received": "已受理",
        "acknowledged": "已受理，正在处理",
        "under_review": "正在审核您的理赔",
        "awaiting_documents": "等待您补充材料",
        "investigating": "正在调查处理",
        "mediation": "调解中",
        "approved": "已核定赔付",
        "partly_approved": "已核定部分赔付",
        "rejected": "不予赔付",
        "paid": "已支付",
        "resolved": "已书面答复",
        "referred": "已转外部机构",
        "answered": "已答复",
        "feedback": "已办结，欢迎您评价",
        "closed": "已结案",
        "withdrawn": "已撤回",
        "reopened": "已重新处理",
    },
}

EVENT_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "filed": "We received your case",
        "start_review": "We started reviewing it",
        "acknowledge": "We confirmed receipt",
        "request_documents": "We asked you for documents",
        "documents_received": "We received your documents",
        "start_investigation": "We started looking into it",
        "step_extended": "We needed more time and told you the new date",
        "advance_paid": "We paid an amount in advance",
        "approve": "We approved your claim",
        "approve_partly": "We approved part of your claim",
        "reject": "We decided not to pay, and wrote to you with the reasons",
        "record_payment": "We paid",
        "start_mediation": "Mediation started",
        "end_mediation": "Mediation ended",
        "uphold": "We upheld your complaint",
        "partly_uphold": "We upheld part of your complaint",
        "not_uphold": "We did not uphold your complaint and wrote to you why",
        "answer": "We answered you",
        "refer_outside": "We referred it to an outside body",
        "close": "Your case was closed",
        "reopen": "We reopened it",
        "withdraw": "The case was withdrawn",
        "mail_received": "We received your message",
        "documents_arrived": "We received documents from you",
    },
    "zh-CN": {
        "filed": "已收到您的案件",
        "start_review": "开始审核",
        "acknowledge": "已确认受理",
        "request_documents": "已通知您补充材料",
        "documents_received": "已收到您的材料",
        "start_investigation": "开始调查",
        "step_extended": "需要更多时间，已告知您新的日期",
        "advance_paid": "已先行支付部分赔款",
        "approve": "已核定赔付",
        "approve_partly": "已核定部分赔付",
        "reject": "不予赔付，已书面说明理由",
        "record_payment": "已支付赔款",
        "start_mediation": "开始调解",
        "end_mediation": "调解结束",
        "uphold": "投诉成立",
        "partly_uphold": "投诉部分成立",
        "not_uphold": "投诉不成立，已书面说明理由",
        "answer": "已答复您",
        "refer_outside": "已转外部机构",
        "close": "已结案",
        "reopen": "已重新处理",
        "withdraw": "已撤回",
        "mail_received": "已收到您的来信",
        "documents_arrived": "已收到您发来的材料",
    },
}


@dataclass(frozen=True)
class Happened:
    at: datetime
    what: str


def history(events: Sequence[tuple[datetime, str]], language: str) -> tuple[Happened, ...]:
    """The events a customer understands, in their words; everything else (staff, routing, messages, clocks) left
    out. The same kind of event twice in a row is told once."""
    words = EVENT_WORDS[language if language in EVENT_WORDS else "en"]
    told: list[Happened] = []
    for at, kind in events:
        what = words.get(kind)
        if what is not None and (not told or told[-1].what != what):
            told.append(Happened(at, what))
    return tuple(told)


def state_words(status: str, language: str) -> str:
    return STATE_WORDS[language if language in STATE_WORDS else "en"].get(status, status)


# The page's words. Both languages have the same keys (a test checks it).
PAGE_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your case", "case": "Case {number}", "state": "Where it stands",
        "promised": "What we promised, and by when", "by": "by {date}", "nothing_promised": "Nothing is pending.",
        "needed": "What we still need from you",
        "needed_help": "Send these by replying to our e-mail, or ask us at {phone} how else to send them.",
        "happened": "What has happened so far", "contact": "Questions",
        "upload": "Send a document from here", "upload_which": "Which document",
        "upload_file": "The file (PDF, JPEG or PNG, at most {limit})", "upload_submit": "Send the document",
        "sent": "Thank you: we have received it. Your handler has been told.",
        "sent_all": "Thank you: we now have every document we asked for. Your case is back with your handler, and "
        "the time we promised runs again from today.",
        "too_big": "This file is too large: at most {limit}. Please send a smaller scan or photo.",
        "wrong_type": "We take PDF, JPEG and PNG files only. Please send the document in one of these.",
        "empty": "The file was empty. Please choose the file again.",
        "not_needed": "We are not waiting for this document (any more). Please choose one from the list.",
        "contact_text": "Call {phone} or write to {email}, quoting your case number {number}.",
        "complain": "Not happy with how we handle it?",
        "complain_text": "Tell us at {phone}: someone independent of the team handling your case will look into it. "
                         "Our service standards say how, and where you can go next.",
        "standards": "Our service standards",
        "private": "This page is for you only: do not forward its link. If someone else has it, call us and we will "
                   "withdraw it; our next message will carry a new one.",
        "large_on": "Larger text", "large_off": "Normal text", "other_language": "中文",
        "error_title": "This link does not open your case",
        "forged": "This link is not one of ours, or it is incomplete. Please use the link in our latest message, or "
                  "call us at {phone}.",
        "unknown": "We cannot find this case. Please call us at {phone}.",
        "expired": "This link has expired. Our latest message carries a newer one, or call us at {phone}.",
        "revoked": "This link was withdrawn. Please use the link in our latest message, or call us at {phone}.",
        "used": "This link cannot be used again. Please call us at {phone}.",
    },
    "zh-CN": {
        "title": "您的案件", "case": "案件号 {number}", "state": "当前进度",
        "promised": "我们承诺的办理时限", "by": "{date}前", "nothing_promised": "目前没有待办事项。",
        "needed": "还需要您提供的材料",
        "needed_help": "请回复我们的邮件发送，或致电 {phone} 咨询其他提交方式。",
        "happened": "办理经过", "contact": "咨询",
        "upload": "在此提交材料", "upload_which": "提交哪一项材料",
        "upload_file": "文件（PDF、JPEG 或 PNG，最大 {limit}）", "upload_submit": "提交材料",
        "sent": "谢谢，我们已收到，并已通知您的经办人。",
        "sent_all": "谢谢，我们要求的材料已全部收到。您的案件已回到经办人处理，承诺的办理时限自今天起继续计算。",
        "too_big": "文件过大，最大 {limit}。请提交较小的扫描件或照片。",
        "wrong_type": "仅接受 PDF、JPEG 和 PNG 文件，请转换后再提交。",
        "empty": "文件为空，请重新选择文件。",
        "not_needed": "我们（已）不需要这项材料，请从列表中选择。",
        "contact_text": "请致电 {phone} 或发送邮件至 {email}，并提供案件号 {number}。",
        "complain": "对处理不满意？",
        "complain_text": "请致电 {phone} 告诉我们：将由独立于原处理部门的人员核查。"
                         "我们的服务标准说明了投诉流程以及您还可以向哪些机构反映。",
        "standards": "服务标准",
        "private": "本页面仅供您本人查看，请勿转发链接。"
                   "如链接被他人获得，请致电我们作废，我们的下一条消息会附上新链接。",
        "large_on": "大字模式", "large_off": "标准字号", "other_language": "English",
        "error_title": "此链接无法打开您的案件",
        "forged": "此链接不是我们发出的，或不完整。请使用我们最新消息中的链接，或致电 {phone}。",
        "unknown": "找不到该案件，请致电 {phone}。",
        "expired": "此链接已过期。我们最新的消息附有新链接，或请致电 {phone}。",
        "revoked": "此链接已作废。请使用我们最新消息中的链接，或致电 {phone}。",
        "used": "此链接不能再次使用，请致电 {phone}。",
    },
}  # fmt: skip

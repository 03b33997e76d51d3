"""E-mail intake rules: what a mail is, which case it belongs to, and what it carries.

Pure functions over bytes and strings: no IMAP, no database, no clock. Parsing uses the standard library's
modern e-mail API (``email.policy.default``), which decodes RFC 2047 encoded words (``=?GB2312?B?...?=``),
RFC 2231 file names and transfer encodings.

What the intake does with a mail:

- an automatic mail (auto-reply, out-of-office, bounce) is logged and skipped (``automatic_reason``);
- a mail that names a case number in its subject, or answers an earlier mail of a case, is added to that case
  (``find_case_number``; the In-Reply-To/References match needs the database and lives in ``tasks.mail``);
- anything else is filed as a new case of the kind ``classify`` gives.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import hashlib
import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesHeaderParser
from html.parser import HTMLParser

from models.enums import CaseKind

# --- classification ---------------------------------------------------------------------------------------

# Tag words, as written inside [..] or 【..】 in a subject: "[投诉] 理赔太慢", "[Claim] car accident".
# (Simplified and Traditional Chinese: mail from Hong Kong, Macao and Taiwan, or from Big5 mailers, says 投訴, 理賠.)
TAGS: dict[str, CaseKind] = {
    "投诉": CaseKind.complaint,
    "投訴": CaseKind.complaint,
    "申诉": CaseKind.complaint,
    "申訴": CaseKind.complaint,
    "complaint": CaseKind.complaint,
    "理赔": CaseKind.claim,
    "理賠": CaseKind.claim,
    "索赔": CaseKind.claim,
    "索償": CaseKind.claim,
    "索賠": CaseKind.claim,
    "报案": CaseKind.claim,
    "報案": CaseKind.claim,
    "claim": CaseKind.claim,
    "咨询": CaseKind.inquiry,
    "諮詢": CaseKind.inquiry,
    "咨詢": CaseKind.inquiry,
    "查询": CaseKind.inquiry,
    "查詢": CaseKind.inquiry,
    "inquiry": CaseKind.inquiry,
    "enquiry": CaseKind.inquiry,
    "question": CaseKind.inquiry,
}
# Keywords, complaint first: "投诉理赔太慢" (a complaint about a claim) is a complaint.
KEYWORDS: tuple[tuple[CaseKind, re.Pattern[str]], ...] = (
    (CaseKind.complaint,
     re.compile(r"投[诉訴]|申[诉訴]|不[满滿]|\bcomplain(?:t|ts|ed|ing)?\b|\bdissatisfied\b", re.IGNORECASE)),
    (CaseKind.claim, re.compile(r"理[赔賠]|索[赔賠償偿]|[报報]案|出[险險]|\bclaims?\b", re.IGNORECASE)),
)  # fmt: skip
# A keyword right after a negation is not meant: "not to complain", "no complaint", "不是投诉", "并非投诉".
_NEGATION = re.compile(
    r"(?:\b(?:not|no|never|without|don't|do not|won't|will not|didn't|did not|isn't|is not)\b(?:\s+\w+){0,3}\s*|"
    r"(?:不是|并非|並非|并不是|並不是|没有|沒有|无意|無意|不想|不打算|不要)\s*)$",
    re.IGNORECASE,
)
# Brackets around a tag: ASCII, full-width and CJK ones ([投诉], ［咨询］, 【理赔】, 〔投訴〕).
_TAG = re.compile(r"[\[【［〔〖]\s*([^\]】］〕〗]{1,30}?)\s*[\]】］〕〗]")
# Only the start of a body is searched: quoted earlier mails further down can say anything.
BODY_SEARCH_CHARS = 2000


@dataclass(frozen=True)
class Classification:
    """The kind of case a mail opens, and the rule that decided it (recorded on the case's first event)."""

    kind: CaseKind
    rule: str


def classify(subject: str, body: str = "") -> Classification:
    """Sort a mail into claim, complaint or inquiry.

    The first rule that applies decides:

    1. a tag in the subject, ``[投诉]``, ``【理赔】``, ``[Complaint]``, ``[Claim]``, ``[咨询]`` (the first known tag);
    2. a keyword in the subject; complaint words before claim words, so a complaint about a claim is a complaint;
    3. a keyword in the first ``BODY_SEARCH_CHARS`` characters of the body, in the same order;
    4. otherwise an inquiry.

    Args:
        subject: the decoded subject.
        body: the mail's text (already converted from HTML where the mail had no plain text).

    Returns:
        The kind and a short description of the rule that decided it.
    """
    for match in _TAG.finditer(subject):
        kind = TAGS.get(match.group(1).strip().lower())
        if kind is not None:
            return Classification(kind, f"subject tag [{match.group(1).strip()}]")
    for where, text in (("subject", subject), ("body", body[:BODY_SEARCH_CHARS])):
        for kind, pattern in KEYWORDS:
            found = next((m for m in pattern.finditer(text) if not _negated(text, m.start())), None)
            if found:
                return Classification(kind, f"{where} keyword {found.group(0)!r}")
    return Classification(CaseKind.inquiry, "no claim or complaint keyword")


def _negated(text: str, at: int) -> bool:
    """A keyword at ``at`` follows a negation in its sentence ("I do not want to complain", "不是投诉")."""
    start = max(text.rfind(stop, 0, at) for stop in (".", "!", "?", "\n", "。", "！", "？", "；", ";", ",", "，"))
    return _NEGATION.search(text[start + 1 : at]) is not None


# Product lines a mail's words point to, in both languages (simplified and traditional), the likeliest first.
PRODUCT_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("motor", re.compile(r"车险|車險|[汽轿轎]?车[辆輛]?(?:被|事故|损|損|撞|刮)|車(?:輛|禍|被|損|撞)|追尾|交通事故|"
                         r"\b(?:car|vehicle|motor|rear-ended|collision|windscreen|windshield)\b", re.IGNORECASE)),
    ("health", re.compile(r"医院|醫院|住院|门诊|門診|医疗|醫療|手术|手術|病历|病歷|"
                          r"\b(?:hospital|medical|surgery|doctor|physiotherapy|clinic)\b", re.IGNORECASE)),
    ("property", re.compile(r"房屋|住宅|家财|家財|火灾|火災|水浸|漏水|失窃|失竊|盗窃|盜竊|"
                            r"\b(?:house|home|flat|apartment|fire|flood(?:ed|ing)?|burglary|stolen from my home)\b",
                            re.IGNORECASE)),
    ("travel", re.compile(r"旅行|旅游|旅遊|航班|行李|签证|簽證|\b(?:travel|trip|flight|luggage|baggage)\b",
                          re.IGNORECASE)),
    ("life", re.compile(r"寿险|壽險|身故|去世|\b(?:life insurance|death|passed away)\b", re.IGNORECASE)),
)  # fmt: skip


def infer_product_line(subject: str, body: str = "") -> str | None:
    """The product line a mail is about, from its words (the subject first, then the start of the body), where
    no policy says it: a motor claim then goes to a handler with the motor skill, not to anyone.

    Args:
        subject: the decoded subject.
        body: the mail's text (only its first ``BODY_SEARCH_CHARS`` characters are read).

    Returns:
        ``motor``, ``health``, ``property``, ``travel`` or ``life``, or None when nothing points to one.
    """
    for text in (subject, body[:BODY_SEARCH_CHARS]):
        for line, pattern in PRODUCT_WORDS:
            if pattern.search(text):
                return line
    return None


_CASE_NUMBER = re.compile(r"(?<![A-Za-z0-9])(CLM|CMP|INQ)-(\d{4})-(\d{6,})(?![0-9])", re.IGNORECASE)


def find_case_number(subject: str) -> str | None:
    """The first case number in a subject (``Re: Your claim CLM-2026-000123 ...``), upper-cased.

    Args:
        subject: the decoded subject.

    Returns:
        ``CLM-2026-000123``, or None when the subject names no case.
    """
    match = _CASE_NUMBER.search(subject)
    if match is None:
        return None
    return f"{match.group(1).upper()}-{match.group(2)}-{match.group(3)}"


# Where the quoted earlier mail starts in a reply: "On Mon, ... wrote:", Outlook's separator, "在 ... 写道："
_QUOTE_START = re.compile(
    r"^\s*(?:On .{0,200}wrote:|-{2,}\s*Original Message\s*-{2,}|-{2,}\s*原始邮件\s*-{2,}|在.{0,200}写道[:：]|"
    r"From:\s.*|发件人[:：].*)\s*$",
    re.IGNORECASE,
)


def reply_text(text: str) -> str:
    """The new part of a reply: the lines before the quoted earlier mail, without ``>`` quoted lines.

    Args:
        text: the mail's text.

    Returns:
        What the sender wrote this time, stripped; the whole text when no quote marker is found.
    """
    kept = []
    for line in text.splitlines():
        if _QUOTE_START.match(line):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return "\n".join(kept).strip()


_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


def guess_language(text: str) -> str:
    """``zh-CN`` when the text holds any CJK character, else ``en``.

    Args:
        text: subject and body.

    Returns:
        A language tag the message templates know.
    """
    return "zh-CN" if _CJK.search(text) else "en"


# --- automatic mail ------------------------------------------------------------------------------------------

_AUTO_FROM = re.compile(r"^(mailer-daemon|postmaster)@", re.IGNORECASE)


def automatic_reason(message: Message) -> str | None:
    """Why a mail was sent by a machine rather than a person, or None for a person's mail.

    Recognised (RFC 3834, RFC 3464 and the common non-standard headers):

    - ``Auto-Submitted`` with any value but ``no`` (auto-replied, auto-generated, auto-notified);
    - a delivery status report: ``multipart/report; report-type=delivery-status`` or a bare
      ``message/delivery-status``;
    - ``X-Autoreply``, ``X-Autorespond``, ``X-Auto-Response-Suppress: All/OOF`` (Exchange's out-of-office);
    - ``Precedence: bulk``, ``junk``, ``list`` or ``auto_reply``;
    - a sender ``MAILER-DAEMON@`` or ``postmaster@``.

    Args:
        message: the parsed message (headers are enough).

    Returns:
        A one-line reason, or None.
    """
    auto = str(message.get("auto-submitted", "") or "").strip().lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto.split(';')[0]}"
    content_type = message.get_content_type()
    report_type = str(message.get_param("report-type") or "").lower()
    if content_type == "multipart/report" and report_type == "delivery-status":
        return "delivery status report (bounce)"
    if content_type == "message/delivery-status":
        return "delivery status report (bounce)"
    for header in ("x-autoreply", "x-autorespond"):
        if message.get(header) is not None:
            return f"{header} header"
    suppress = str(message.get("x-auto-response-suppress", "") or "").lower()
    if "oof" in suppress or "all" in suppress:
        return "X-Auto-Response-Suppress header"
    precedence = str(message.get("precedence", "") or "").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    if message.get("list-id") is not None and message.get("list-unsubscribe") is not None:
        return "mailing list (List-Id)"
    address = _first_address(message)
    if address and _AUTO_FROM.match(address[0]):
        return "sent by a mailer daemon"
    return None


LIST_REASONS = ("Precedence: bulk", "Precedence: list", "mailing list")
"""The automatic reasons that say only that a mail came through a list: a person may still have written it."""


# --- text the database takes ----------------------------------------------------------------------------------

# A charset label and the superset mailers mean by it: a GBK character under a GB2312 label, HKSCS under Big5,
# Windows-1252 under Latin-1 (what browsers and mail readers do, WHATWG Encoding Standard).
CHARSET_SUPERSETS: dict[str, str] = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030", "euc-cn": "gb18030",
    "hz-gb-2312": "gb18030", "big5": "big5hkscs", "x-big5": "big5hkscs", "cn-big5": "big5hkscs",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "shift_jis": "cp932", "x-sjis": "cp932",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "us-ascii": "utf-8", "ascii": "utf-8",
}  # fmt: skip
# What an undeclared 8-bit text is tried as when it is not UTF-8: the detector chooses among these.
DETECTED_CHARSETS = ("gb18030", "big5hkscs", "cp932", "cp949", "cp1252")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ESCAPED_BYTES = re.compile(r"[\udc80-\udcff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _charset(label: str | None) -> str | None:
    if not label:
        return None
    name = label.strip().strip('"').lower()
    return CHARSET_SUPERSETS.get(name, name)


def decode_bytes(data: bytes, declared: str | None = None, *, hints: Sequence[str] = ()) -> str:
    """Text from bytes whose charset may be missing, wrong or a subset of the one used.

    Tried in order, each strictly: the declared charset read as its superset (GB2312 as GB18030, Big5 as
    Big5-HKSCS, Latin-1 as Windows-1252, US-ASCII as UTF-8), UTF-8, the ``hints`` (another part of the same
    mail's charset), then a detector among ``DETECTED_CHARSETS``; last, the first candidate with replacement
    characters. The result is ``clean_text``'d.

    Args:
        data: the bytes.
        declared: the charset the mail declares for them, if any.
        hints: charsets to try before the detector.

    Returns:
        The text, without NUL or lone surrogates.
    """
    candidates = [c for c in (_charset(declared), "utf-8", *(_charset(h) for h in hints)) if c]
    for charset in dict.fromkeys(candidates):
        try:
            return clean_text(data.decode(charset))
        except (LookupError, UnicodeDecodeError):
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(data, cp_isolation=list(DETECTED_CHARSETS)).best()
    if best is not None:
        return clean_text(str(best))
    try:
        return clean_text(data.decode(candidates[0], errors="replace"))
    except LookupError:  # an unknown label
        return clean_text(data.decode("utf-8", errors="replace"))


def clean_text(text: str, *, hints: Sequence[str] = ()) -> str:
    """Text every database takes: no NUL (PostgreSQL refuses it in text and JSON) and no lone surrogates.

    Python's mail parser keeps bytes it could not decode (raw 8-bit headers, a wrong charset) as surrogate
    escapes: those runs are decoded again (``decode_bytes``: UTF-8, the ``hints``, a detector); any other
    surrogate becomes U+FFFD.

    Args:
        text: the text as parsed.
        hints: charsets the rest of the mail uses.

    Returns:
        The text, cleaned.
    """
    text = text.replace("\x00", "")
    if _SURROGATE.search(text) is None:
        return text
    if _ESCAPED_BYTES.search(text) and not _SURROGATE.search(_ESCAPED_BYTES.sub("", text)):
        return decode_bytes(text.encode("utf-8", errors="surrogateescape"), hints=hints)
    return _SURROGATE.sub("\ufffd", text)


def one_line(text: str) -> str:
    """A header's text on one line: control characters dropped, runs of white space as one space."""
    return " ".join(_CONTROL.sub("", text).split())


# Out-of-office and other automatic replies sent without the headers that say so: their usual subjects (which a
# person's subject seldom starts with) and the opening of their bodies, in English and Chinese. Only phrases a
# customer does not write: "on holiday" or "外出" start real claims (a phone stolen while travelling).
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto(?:matic)?[- ]?reply|autoreply|auto[- ]?response|out of (?:the )?office|"
    r"away from (?:the )?office|自动回复|自動回覆|自动答复|自動答覆|不在办公室|不在辦公室)",
    re.IGNORECASE,
)
_AUTO_BODY = re.compile(
    r"(?:\bI(?:'m| am| will be) (?:currently )?out of (?:the )?office\b|"
    r"this is an automatic(?:ally generated)? (?:reply|response|message)|"
    r"我(?:目前|现在|現在)?(?:不在办公室|不在辦公室)|(?:此|本)(?:邮件|郵件)为自动回复|(?:此|本)(?:郵件|邮件)為自動回覆)",
    re.IGNORECASE,
)
AUTO_TEXT_CHARS = 500


def automatic_by_text(subject: str, body: str) -> str | None:
    """Why a mail without automatic headers is still a machine's reply (an out-of-office), or None.

    Args:
        subject: the decoded subject.
        body: the mail's text; only its first ``AUTO_TEXT_CHARS`` characters are read.

    Returns:
        A one-line reason, or None.
    """
    if _AUTO_SUBJECT.search(subject):
        return "automatic reply (its subject)"
    if _AUTO_BODY.search(body[:AUTO_TEXT_CHARS]):
        return "automatic reply (its text)"
    return None


# --- parsing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MailLimits:
    """Size limits of the intake (from the settings)."""

    max_message_bytes: int = 25 * 1024 * 1024
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_attachments: int = 20
    max_description_chars: int = 20_000


class MailRejected(Exception):
    """A mail the intake cannot take (unparseable, too big, no usable sender); recorded, marked seen, skipped."""

    def __init__(self, reason: str, *, message_id: str, key: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message_id = message_id
        self.key = key


def mail_key(message_id: str, sender: str, digest: str) -> str:
    """What makes two mails the same mail: its Message-ID, its sender and a digest of its content.

    A Message-ID alone is not enough: mailers reuse them (a web form's fixed id, a broken client), so a second
    customer's mail with a used id would be dropped. The same mail delivered twice (through two aliases of the
    desk, or read again after a crash) has the same three and is taken once. ``message_id`` is empty for a
    mail without one (its synthetic id is a digest of the bytes, which differ between two deliveries)."""
    return hashlib.sha256(f"{message_id}\n{sender.casefold()}\n{digest}".encode()).hexdigest()


def legacy_key(message_id: str) -> str:
    """The key of a mail recorded before keys (migration 0009 gave those their Message-ID's): a mail read then and
    read again now is still the mail already taken."""
    return hashlib.sha256(f"legacy\n{message_id}".encode()).hexdigest()


def unread_key(message_id: str, data: bytes) -> str:
    """The key of a mail recorded without being parsed (too big, unparseable): its id and its bytes (or its
    header's, when it was too big to download)."""
    return mail_key(message_id, "", hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class MailAttachment:
    filename: str
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class DroppedPart:
    """An attachment the intake did not keep, recorded by name, size and digest; the original kept on the case has
    a note in its place, and the customer is told."""

    filename: str
    size: int
    sha256: str
    too_big: bool
    """Over the size limit; else one attachment more than the limit on their number."""
    limit: int

    def __str__(self) -> str:
        if self.too_big:
            return f"{self.filename}: {self.size} bytes, limit {self.limit}"
        return f"{self.filename}: more than {self.limit} attachments"

    def record(self) -> dict[str, object]:
        """As the case's event records it (no content)."""
        return {"name": self.filename, "size": self.size, "sha256": self.sha256,
                "why": "too_big" if self.too_big else "too_many", "limit": self.limit}  # fmt: skip


@dataclass(frozen=True)
class ParsedMail:
    """What the intake needs from one mail, decoded."""

    message_id: str
    subject: str
    from_address: str
    from_name: str
    text: str
    """The body as text (HTML converted), trimmed, capped at ``max_description_chars``."""
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    attachments: tuple[MailAttachment, ...] = ()
    dropped: tuple[DroppedPart, ...] = ()
    """The attachments that were not kept (too big, too many)."""
    automatic: str | None = None
    mailing_list: bool = False
    """``automatic`` says only that it came through a list or as bulk mail (``Precedence``): a customer writing
    through a list gateway is still heard (``tasks.mail`` decides, knowing the customers and cases)."""
    defects: tuple[str, ...] = field(default=())
    has_message_id: bool = True
    """False: the mail had no usable Message-ID, and ``message_id`` is a digest of its bytes."""

    @property
    def skipped_attachments(self) -> tuple[str, ...]:
        """``"<file name>: <why>"`` for each attachment that was not kept."""
        return tuple(str(part) for part in self.dropped)

    @property
    def key(self) -> str:
        """Its de-duplication key (``mail_key``): id, sender, and a digest of subject, text and attachments."""
        digest = hashlib.sha256()
        for piece in (self.subject, self.text, *(a.sha256 for a in self.attachments),
                      *(d.sha256 for d in self.dropped)):  # fmt: skip
            digest.update(piece.encode("utf-8", "surrogatepass") + b"\0")
        return mail_key(self.message_id if self.has_message_id else "", self.from_address, digest.hexdigest())

    @property
    def replied_to(self) -> tuple[str, ...]:
        """Message-IDs this mail answers: In-Reply-To first, then References from the newest."""
        seen: dict[str, None] = {}
        for value in (*self.in_reply_to, *reversed(self.references)):
            seen.setdefault(value, None)
        return tuple(seen)

    @property
    def language(self) -> str:
        return guess_language(f"{self.subject}\n{self.text}")


MESSAGE_ID_MAX = 512
_MSG_ID = re.compile(r"<[^<>\s]+>")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def synthetic_message_id(raw: bytes) -> str:
    """A stable Message-ID for a mail that has none (or an unusable one): the same bytes give the same id,
    so a mail read twice is still recognised."""
    return f"<sha256-{hashlib.sha256(raw).hexdigest()}@claimflow.invalid>"


def _message_ids(value: object) -> tuple[str, ...]:
    """The Message-IDs in a header; one holding a control character or an undecodable byte is no usable id."""
    return tuple(
        m for m in _MSG_ID.findall(str(value or ""))
        if len(m) <= MESSAGE_ID_MAX and not _CONTROL.search(m) and not _SURROGATE.search(m)
    )  # fmt: skip


def _message_id(message: Message, raw: bytes) -> str:
    try:
        found = _message_ids(message.get("message-id"))
    except Exception:  # a malformed header must not cost us the id: fall back to the bytes' digest
        found = ()
    return found[0] if found else synthetic_message_id(raw)


def header_message_id(header: bytes) -> str:
    """The Message-ID from a mail's header block alone (or the whole mail); a synthetic one where it has none.

    Used for a mail too big to download: its header is enough to record it.
    """
    try:
        parsed = BytesHeaderParser(policy=email.policy.default).parsebytes(header)
    except Exception:
        return synthetic_message_id(header)
    return _message_id(parsed, header)


def _first_address(message: Message) -> tuple[str, str] | None:
    found = _addresses(message, "from")
    return found[0] if found else None


_NO_REPLY = re.compile(r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|noreply|donotreply)(?:[-+_.].*)?@", re.IGNORECASE)
SENDER_HEADERS = ("from", "reply-to", "sender")


def _raw_header(message: Message, name: str) -> str:
    for key, value in message.raw_items():
        if key.lower() == name:
            return str(value)
    return ""


def decode_header_value(raw: str, *, hints: Sequence[str] = ()) -> str:
    """A header's raw value as text: RFC 2047 encoded words each decoded with ``decode_bytes`` (the label's
    superset, then fallbacks) and raw 8-bit text (surrogate escapes) decoded again with the ``hints``."""
    try:
        chunks = email.header.decode_header(raw)
    except Exception:  # a broken encoded word: the raw text, cleaned
        return clean_text(raw, hints=hints)
    parts = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            parts.append(clean_text(chunk, hints=hints))
        elif charset is None:  # text between encoded words, kept by the decoder as raw-unicode-escape bytes
            parts.append(clean_text(chunk.decode("raw-unicode-escape"), hints=hints))
        else:
            parts.append(decode_bytes(chunk, charset, hints=hints))
    return "".join(parts)


def _unreadable(text: str) -> bool:
    return "\ufffd" in text or _SURROGATE.search(text) is not None


def header_text(message: Message, name: str, *, hints: Sequence[str] = ()) -> str:
    """A header as one line of text. Where the parser could not decode it (an undeclared 8-bit header, a
    character outside its label's charset) it is decoded again from the raw value (``decode_header_value``)."""
    try:
        text = str(message.get(name, "") or "")
    except Exception:
        text = "\ufffd"
    if _unreadable(text):
        text = decode_header_value(_raw_header(message, name), hints=hints)
    return one_line(clean_text(text))


def _addresses(message: Message, name: str, *, hints: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The usable (address, display name) pairs of an address header, in order."""
    try:
        parsed = [(a.addr_spec or "", a.display_name or "") for a in getattr(message.get(name), "addresses", ())]
    except Exception:
        parsed = [("", "\ufffd")]
    if any(_unreadable(address + display) for address, display in parsed):
        decoded = decode_header_value(_raw_header(message, name), hints=hints)
        parsed = [(address, display) for display, address in email.utils.getaddresses([decoded])]
    pairs = [(one_line(clean_text(address)), one_line(clean_text(display))) for address, display in parsed]
    return [(address, display) for address, display in pairs if _EMAIL.match(address)]


def find_sender(message: Message, *, hints: Sequence[str] = ()) -> tuple[str, str, str] | None:
    """Whom to answer: (address, display name, the header it came from), or None when no header names anyone.

    From, else Reply-To, else Sender; a no-reply From (a web form, a notification service) with a Reply-To
    names the customer in the Reply-To.

    Args:
        message: the parsed mail.
        hints: the charsets the mail's parts declare (for undeclared 8-bit headers).

    Returns:
        The address, the name (may be empty) and the header's name, lower case.
    """
    found = {name: _addresses(message, name, hints=hints) for name in SENDER_HEADERS}
    if found["from"] and _NO_REPLY.match(found["from"][0][0]) and found["reply-to"]:
        return (*found["reply-to"][0], "reply-to")
    for name in SENDER_HEADERS:
        if found[name]:
            return (*found[name][0], name)
    return None


def parse_message(raw: bytes, limits: MailLimits | None = None) -> ParsedMail:
    """Parse a mail's bytes into what the intake needs.

    Args:
        raw: the mail as received (RFC 5322 bytes).
        limits: size limits; default ``MailLimits()``.

    Returns:
        The decoded mail: subject (RFC 2047 decoded), sender, body as text (the plain part, or the HTML part
        converted to text), attachments within the limits, and whether it is an automatic mail.

    Raises:
        MailRejected: too big, unparseable, or no usable From address; carries the Message-ID to record it by.
    """
    limits = limits or MailLimits()
    if len(raw) > limits.max_message_bytes:
        message_id = header_message_id(raw)
        raise MailRejected(f"message too big: {len(raw)} bytes, limit {limits.max_message_bytes}",
                           message_id=message_id, key=unread_key(message_id, raw))  # fmt: skip
    message_id = synthetic_message_id(raw)
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        message_id = _message_id(message, raw)
        return _parse(message, message_id, limits, raw)
    except MailRejected:
        raise
    except Exception as exc:  # any mail, however broken, ends as a recorded rejection, never a crashed poll
        # the kind of fault only: a parser's message can quote the mail's text
        raise MailRejected(f"unparseable: {type(exc).__name__}", message_id=message_id,
                           key=unread_key(message_id, raw)) from exc  # fmt: skip


def _parse(message: EmailMessage, message_id: str, limits: MailLimits, raw: bytes) -> ParsedMail:
    hints = [c for c in message.get_charsets() if c]
    sender = find_sender(message, hints=hints)
    if sender is None:
        raise MailRejected("no usable From address", message_id=message_id, key=unread_key(message_id, raw))
    address, name, _header = sender
    subject = header_text(message, "subject", hints=hints)
    message = _repaired(message)
    body_part = message.get_body(preferencelist=("plain", "html"))
    text = _body_text(body_part, hints) if body_part is not None else ""
    if not text.strip() and message.get_content_maintype() == "multipart" and not message.is_multipart():
        text = clean_text(str(message.get_payload() or ""), hints=hints)  # no boundary at all: the text as it is
    for forwarded in _forwarded(message):
        text += "\n\n" + forwarded
    attachments: list[MailAttachment] = []
    dropped: list[DroppedPart] = []
    for number, part in enumerate(_attachment_parts(message, body_part), start=1):
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            data = bytes(str(part.get_payload()), "utf-8", errors="replace")
        content_type = one_line(clean_text(part.get_content_type()))
        filename = safe_filename(_filename(part, hints) or f"attachment-{number}{_extension(content_type)}")
        digest = hashlib.sha256(data).hexdigest()
        if len(data) > limits.max_attachment_bytes:
            dropped.append(DroppedPart(filename, len(data), digest, True, limits.max_attachment_bytes))
        elif len(attachments) >= limits.max_attachments:
            dropped.append(DroppedPart(filename, len(data), digest, False, limits.max_attachments))
        else:
            attachments.append(MailAttachment(filename, content_type, data))
    automatic = automatic_reason(message) or automatic_by_text(subject, text)
    return ParsedMail(
        message_id=message_id,
        subject=subject,
        from_address=address,
        from_name=name or address.split("@", 1)[0],
        text=trim_text(clean_text(text), limits.max_description_chars),
        in_reply_to=_message_ids(message.get("in-reply-to")),
        references=_message_ids(message.get("references")),
        attachments=tuple(attachments),
        dropped=tuple(dropped),
        automatic=one_line(clean_text(automatic)) if automatic else None,
        mailing_list=automatic is not None and automatic.startswith(LIST_REASONS),
        defects=tuple(type(d).__name__ for d in message.defects),
        has_message_id=not message_id.endswith("@claimflow.invalid>"),
    )


def size_words(size: int) -> str:
    """A size as a customer reads it: ``10 MB``, ``500 KB``, ``900 B``."""
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} B"


def without_parts(raw: bytes, dropped: Sequence[DroppedPart]) -> bytes:
    """The mail with each dropped attachment replaced by a short note (its name, size, digest and why), so the
    original kept on the case does not hold what the desk refused. Should the mail not be rebuilt, its header
    block is kept with a note that the body was left out."""
    digests = {d.sha256: d for d in dropped}
    try:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        message = _repaired(parsed)  # read with the boundary its body uses, as _parse read it
        hints = [c for c in message.get_charsets() if c]
        for part in message.walk():
            if part.is_multipart() or part is message:
                continue
            data = part.get_payload(decode=True)
            found = digests.get(hashlib.sha256(data).hexdigest()) if isinstance(data, bytes) else None
            assert isinstance(part, EmailMessage)
            if found is None or safe_filename(_filename(part, hints) or found.filename) != found.filename:
                continue  # not dropped (a kept attachment may have the same bytes under another name)
            part.clear()
            part.set_content(f"[claimflow: attachment not accepted and not kept: {found}; sha256 {found.sha256}]\n")
            part["X-Claimflow-Removed"] = f"size={found.size}; sha256={found.sha256}"
        return message.as_bytes(policy=email.policy.default.clone(linesep="\r\n"))
    except Exception:
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        return (
            head + b"\r\n\r\n[claimflow: the body was left out: it could not be kept without the attachments "
            b"that were not accepted]\r\n"
        )


def _body_text(part: Message, hints: Sequence[str]) -> str:
    assert isinstance(part, MIMEPart)
    text = _part_text(part, hints)
    return html_to_text(text) if part.get_content_type() == "text/html" else text


_BOUNDARY_LINE = re.compile(r"^--([0-9A-Za-z'()+_,./:=?-]{1,70})[ \t]*\r?$", re.MULTILINE)


def _repaired(message: EmailMessage) -> EmailMessage:
    """A multipart mail whose declared boundary is not in its body (a broken mailer, a proxy that rewrote it):
    read again with the boundary its body does use, so its text and attachments are found. Otherwise as it is."""
    payload = message.get_payload()
    if message.get_content_maintype() != "multipart" or not isinstance(payload, str):
        return message
    found = _BOUNDARY_LINE.search(payload)
    if found is None:
        return message
    try:
        repaired = email.message_from_bytes(message.as_bytes(policy=email.policy.compat32), policy=email.policy.default)
        assert isinstance(repaired, EmailMessage)
        repaired.set_param("boundary", found.group(1))
        again = email.message_from_bytes(repaired.as_bytes(policy=email.policy.compat32), policy=email.policy.default)
        assert isinstance(again, EmailMessage)
    except Exception:
        return message
    return again if again.is_multipart() else message


FORWARDED_MARK = "---------- Forwarded message ----------"


def _forwarded(message: EmailMessage) -> list[str]:
    """The text of each mail forwarded as an attachment (``message/rfc822``), headed by who sent it and its
    subject: a forwarded claim or complaint is otherwise only a subject line."""
    found = []
    for part in message.walk():
        if part is message or part.get_content_type() != "message/rfc822":
            continue
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        if not isinstance(inner, EmailMessage):
            continue
        hints = [c for c in inner.get_charsets() if c]
        body = inner.get_body(preferencelist=("plain", "html"))
        lines = [FORWARDED_MARK]
        for name, label in (("from", "From"), ("date", "Date"), ("subject", "Subject")):
            value = header_text(inner, name, hints=hints)
            if value:
                lines.append(f"{label}: {value}")
        found.append("\n".join(lines) + "\n\n" + (_body_text(body, hints) if body is not None else ""))
    return found


def _filename(part: EmailMessage, hints: Sequence[str]) -> str:
    """An attachment's name, decoded (RFC 2231, RFC 2047, or raw 8-bit bytes under the mail's charsets)."""
    try:
        name = part.get_filename() or ""
    except Exception:
        name = ""
    if _unreadable(name):  # raw 8-bit bytes in the parameter: read them from the raw header
        for header, parameter in (("content-disposition", "filename"), ("content-type", "name")):
            found = re.search(rf'(?i)\b{parameter}\s*=\s*(?:"([^"]*)"|([^;\s]+))', _raw_header(part, header))
            if found:
                return decode_header_value(found.group(1) or found.group(2), hints=hints)
    return clean_text(name, hints=hints)


def _part_text(part: MIMEPart, hints: Sequence[str] = ()) -> str:
    """A text part's content: its bytes decoded with ``decode_bytes`` (the declared charset's superset, UTF-8,
    the mail's other charsets, a detector), so an undeclared or wrong charset does not become replacement
    characters."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return clean_text(str(part.get_payload() or ""))
    return decode_bytes(payload, part.get_content_charset(), hints=hints)


def _attachment_parts(message: EmailMessage, body_part: Message | None) -> list[EmailMessage]:
    parts: list[EmailMessage] = []
    for part in message.walk():
        if part is body_part or part.is_multipart() or part is message:
            continue
        assert isinstance(part, EmailMessage)
        if part.get_content_disposition() == "attachment" or part.get_filename():
            parts.append(part)
    return parts


def _extension(content_type: str) -> str:
    return mimetypes.guess_extension(content_type) or ".bin"


_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')


def safe_filename(name: str, *, max_length: int = 150) -> str:
    """A file name that is safe to store: no folders, no control or reserved characters, not hidden, not too long.

    Args:
        name: the name the sender gave (decoded).
        max_length: longest result; the extension is kept when the stem is shortened.

    Returns:
        The cleaned name, ``attachment`` when nothing usable is left.
    """
    base = re.split(r"[\\/]", name)[-1]
    base = " ".join(_UNSAFE.sub("_", base).split()).lstrip(".").strip()
    if not base:
        return "attachment"
    if len(base) > max_length:
        stem, dot, extension = base.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            base = stem[: max_length - len(extension) - 1] + "." + extension
        else:
            base = base[:max_length]
    return base


def trim_text(text: str, max_chars: int) -> str:
    """Trim a body: no trailing spaces, at most one blank line in a row, capped with a marker.

    Args:
        text: the body as text.
        max_chars: longest result.

    Returns:
        The trimmed text; when cut, it ends with ``[...]``.
    """
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    joined = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if len(joined) <= max_chars:
        return joined
    marker = "\n[...]"
    return joined[: max(0, max_chars - len(marker))].rstrip() + marker


class _TextExtractor(HTMLParser):
    BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "blockquote", "hr"}
    )
    HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCK:
            self.chunks.append("\n")
        if tag == "li":
            self.chunks.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML mail: scripts and styles dropped, blocks on lines of their own,
    entities decoded, runs of spaces collapsed.

    Args:
        html: the HTML part's decoded content.

    Returns:
        Plain text.
    """
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.chunks).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- documents ----------------------------------------------------------------------------------------------

# Other names a requested document goes by, in file names and subjects (English variants and Chinese).
DOCUMENT_ALIASES: dict[str, tuple[str, ...]] = {
    "claim form": ("claim application", "理赔申请", "索赔申请"),
    "driving licence": ("driving license", "driver licence", "driver license", "驾驶证", "驾照"),
    "vehicle licence": ("vehicle license", "行驶证"),
    "police or accident report": ("police report", "accident report", "事故认定", "事故证明", "报警回执"),
    "repair invoice": ("维修发票",),
    "photos of the damage": ("damage photo", "damage photos", "损失照片", "受损照片", "现场照片"),
    "bank account details": ("bank account", "bank details", "银行卡", "银行账户", "收款账户"),
    "identity document": ("id card", "passport", "身份证", "护照"),
    "medical records": ("medical record", "病历"),
    "itemised hospital invoice": ("itemized hospital invoice", "hospital invoice", "医疗发票", "住院发票", "费用清单"),
    "discharge summary": ("出院小结", "出院记录"),
    "proof of ownership": ("ownership", "产权证明", "所有权证明", "购买发票"),
    "repair quote or invoice": ("repair quote", "repair invoice", "维修报价", "维修发票"),
    "police report for theft": ("police report", "theft report", "报案回执", "被盗证明"),
    "supporting evidence": ("evidence", "证明材料"),
}
_STOPWORDS = frozenset({"or", "of", "the", "for", "and", "a", "an", "to"})


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[_\-.+,;()\[\]]", " ", text.lower()).split())


def _names(text: str, phrase: str) -> bool:
    phrase = _normalise(phrase)
    if not phrase:
        return False
    if _CJK.search(phrase):
        return phrase in text
    if f" {phrase} " in f" {text} ":
        return True
    words = [w for w in phrase.split() if w not in _STOPWORDS]
    return len(words) > 1 and all(w in text.split() for w in words)


def document_type_for(filename: str, requested: Sequence[str], *, subject: str = "") -> str | None:
    """Which requested document an attachment is, guessed from its file name, else from the mail's subject.

    A heuristic, not a reading of the document: a requested type matches a text when the text holds the type
    as a phrase (``repair_invoice.pdf`` is a "repair invoice"), all its words (``damage-photos-2.jpg`` holds
    "photos" and "damage"), or one of its ``DOCUMENT_ALIASES`` (``驾驶证.jpg`` is a "driving licence").
    Case is ignored. The subject is asked only when the file name names nothing, and only if it names exactly
    one requested type (a subject listing several documents cannot say which file is which). Staff still
    confirm the documents; this only ticks the list.

    Args:
        filename: the attachment's file name.
        requested: the document types asked of the customer, in the order they were asked for.
        subject: the mail's subject.

    Returns:
        The requested type (as written in ``requested``), or None.
    """

    def matches(text: str) -> list[str]:
        normalised = _normalise(text)
        return [
            kind
            for kind in requested
            if _names(normalised, kind) or any(_names(normalised, a) for a in DOCUMENT_ALIASES.get(kind.lower(), ()))
        ]

    by_name = matches(filename.rsplit(".", 1)[0] if "." in filename else filename)
    if by_name:
        return by_name[0]
    by_subject = matches(subject)
    return by_subject[0] if len(by_subject) == 1 else None

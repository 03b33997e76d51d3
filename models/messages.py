"""Messages the desk sends: the one Jinja environment, the catalogue, languages and formatting (pure).

Every message is one template per language, ``templates/<lang>/<name>.txt.j2``, with two blocks:
``subject`` (one line) and ``body`` (plain text). The HTML part is not written by hand: the one layout
``templates/_layout.html.j2`` (autoescaped, as every ``.html`` template is) turns the rendered plain text
into paragraphs, lists and links. So the words a customer reads are written once per language, the
wording check reads exactly what is sent, and the text and HTML parts cannot drift apart. Every value
that comes from a case or a person is escaped once, by the layout.

The environment is strict: a variable the template uses and the context lacks is an error when the
message is rendered (``StrictUndefined``), never an empty gap in a letter to a customer.

Dates, deadlines and money are formatted per language by filters that read the message's language and the
office time zone from the render context, so one environment serves every language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from markupsafe import Markup, escape

from models.errors import InvalidInput, NotFound
from models.outside import OUTSIDE_BODIES, OutsideBodies, outside_body_name

LANGUAGES: tuple[str, ...] = ("zh-CN", "en")
"""The languages every message is written in; the first is the fallback of last resort."""

Audience = Literal["customer", "staff"]

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
"""Where the shipped templates live (the ``templates`` package)."""


@dataclass(frozen=True)
class MessageSpec:
    """One message of the catalogue.

    Attributes:
        name: the template name (file ``<lang>/<name>.txt.j2``).
        audience: ``customer`` (passes the wording check before it is queued) or ``staff``.
        required: context keys the caller must give; ``customer_name`` is filled in at delivery from the
            customer record and is not stored in the outbox.
        description: what the message is for, for ``claimflow template list``.
        sample: example values for every required key (previews, tests, the benchmark).
        later: delivered after every other due message (``Outbox.priority`` 1): a notice whose substance the
            reader's worklist already shows. One comes with every case filed, so in a surge they were half the
            outbox and the customers' acknowledgements waited behind them.
        digest: the message that carries several of these to one reader at once: the ones a sender claims
            together for the same reader leave as one ``digest`` listing them (``context["items"]``, each the
            context it was queued with; ``tasks.outbox.fold_notices``). A handler given 300 cases in a surge gets a
            few messages, not 300.
    """

    name: str
    audience: Audience
    required: tuple[str, ...]
    description: str
    sample: Mapping[str, Any] = field(default_factory=dict)
    later: bool = False
    digest: str | None = None


_SAMPLE_CASE = {
    "case_number": "CLM-2026-000123",
    "customer_name": "张三",
    "received_at": "2026-03-02T01:30:00+00:00",
    "due_at": "2026-03-06T16:00:00+00:00",
}

_MESSAGES: tuple[MessageSpec, ...] = (
    MessageSpec(
        "acknowledgement_claim",
        "customer",
        ("case_number", "customer_name", "channel", "received_at", "due_at"),
        "A claim was received: its number and the date by which it will be reviewed.",
        {**_SAMPLE_CASE, "channel": "email"},
    ),
    MessageSpec(
        "acknowledgement_complaint",
        "customer",
        ("case_number", "customer_name", "channel", "received_at", "due_at"),
        "A complaint was received: its number, who investigates and the date of the answer.",
        {**_SAMPLE_CASE, "case_number": "CMP-2026-000045", "channel": "phone"},
    ),
    MessageSpec(
        "acknowledgement_inquiry",
        "customer",
        ("case_number", "customer_name", "channel", "received_at", "due_at"),
        "An inquiry was received: its number and when it will be answered.",
        {**_SAMPLE_CASE, "case_number": "INQ-2026-000007", "channel": "webhook"},
    ),
    MessageSpec(
        "inquiry_answer",
        "customer",
        ("case_number", "customer_name", "answer"),
        "The answer to an inquiry, as the handler wrote it, on the customer's channel and in their language.",
        {
            **_SAMPLE_CASE,
            "case_number": "INQ-2026-000007",
            "answer": "Your policy covers windscreen damage without excess; "
            "you can book the repair at any partner garage.",
        },
    ),
    MessageSpec(
        "attachments_not_accepted",
        "customer",
        ("case_number", "customer_name", "not_accepted"),
        "A customer's mail about their case came with attachments the desk could not accept: which, why, how to send "
        "them.",
        {
            **_SAMPLE_CASE,
            "not_accepted": [{"name": "现场照片.zip", "too_big": True, "limit": 10485760, "limit_size": "10 MB"}],
        },
    ),
    MessageSpec(
        "missing_documents",
        "customer",
        ("case_number", "customer_name", "documents", "due_at"),
        "The one complete list of documents still missing for a claim.",
        {**_SAMPLE_CASE, "documents": ["医疗费用发票原件", "诊断证明", "银行卡复印件"]},
    ),
    MessageSpec(
        "extension_notice",
        "customer",
        ("case_number", "customer_name", "previous_due_at", "due_at", "reason"),
        "The answer will come later than promised: the new date and why.",
        {
            **_SAMPLE_CASE,
            "previous_due_at": "2026-03-06T16:00:00+00:00",
            "due_at": "2026-03-20T16:00:00+00:00",
            "reason": "需要向医院调取病历",
        },
    ),
    MessageSpec(
        "progress_notice",
        "customer",
        ("case_number", "customer_name", "reasons", "expected_by", "documents"),
        "A decision takes longer than a regulator's limit: why, what is still needed, by when it is expected, and "
        "(GB, AU) that the customer may go to the outside body now (models.notices).",
        {
            **_SAMPLE_CASE,
            "reasons": "需要向医院调取病历",
            "expected_by": "2026-04-10",
            "documents": ["诊断证明"],
            "jurisdiction": "GB",
        },
    ),
    MessageSpec(
        "decision",
        "customer",
        ("case_number", "customer_name", "outcome", "amount", "currency", "reasons", "clause"),
        "The decision on a claim (approved, partly approved, rejected), why, and how to complain or appeal.",
        {
            **_SAMPLE_CASE,
            "outcome": "partly_approved",
            "amount": "8600.00",
            "currency": "CNY",
            "reasons": "自费药品费用不在保险责任范围内",
            "clause": "《医疗保险条款》第五条第(三)项",
        },
    ),
    MessageSpec(
        "advance_payment",
        "customer",
        ("case_number", "customer_name", "amount", "currency", "paid_at", "account_hint"),
        "What is already certain was paid in advance while the claim is assessed (PRC Insurance Law art. 25); the "
        "difference follows.",
        {
            **_SAMPLE_CASE,
            "amount": "3000.00",
            "currency": "CNY",
            "paid_at": "2026-04-20T02:00:00+00:00",
            "account_hint": "6789",
        },
    ),
    MessageSpec(
        "payment_made",
        "customer",
        ("case_number", "customer_name", "amount", "currency", "paid_at", "account_hint"),
        "The claim amount was paid: how much, when and to which account (last digits only).",
        {
            **_SAMPLE_CASE,
            "amount": "8600.00",
            "currency": "CNY",
            "paid_at": "2026-03-10T02:00:00+00:00",
            "account_hint": "6789",
        },
    ),
    MessageSpec(
        "complaint_outcome",
        "customer",
        ("case_number", "customer_name", "outcome", "findings", "remedy", "jurisdiction"),
        "The answer to a complaint, and the outside body of its jurisdiction the customer can take it to.",
        {
            **_SAMPLE_CASE,
            "case_number": "CMP-2026-000045",
            "outcome": "partly_upheld",
            "findings": "理赔审核超出了承诺的时限",
            "remedy": "补偿延误期间的利息",
            "jurisdiction": "CN",
        },
    ),
    MessageSpec(
        "survey_invitation",
        "customer",
        ("case_number", "customer_name", "survey_url", "expires_at"),
        "An invitation to rate how the case was handled.",
        {
            **_SAMPLE_CASE,
            "survey_url": "https://desk.insurer.example/survey/abc123",
            "expires_at": "2026-03-24T16:00:00+00:00",
        },
    ),
    MessageSpec(
        "survey_follow_up",
        "customer",
        ("case_number", "customer_name", "due_at"),
        "The customer was not satisfied: a supervisor will call them back, by when.",
        _SAMPLE_CASE,
    ),
    MessageSpec(
        "staff_follow_up",
        "staff",
        ("case_number", "step", "supervisor_name", "score", "solved", "comment", "due_at", "command"),
        "A customer was not satisfied: the supervisor calls them back and records what was agreed.",
        {
            "case_number": "CLM-2026-000123",
            "step": "follow_up",
            "supervisor_name": "王芳",
            "score": 2,
            "solved": "no",
            "comment": "等了很久才有人联系我",
            "due_at": "2026-03-06T16:00:00+00:00",
            "command": "claimflow feedback done CLM-2026-000123 --by wang.fang --note ...",
        },
    ),
    MessageSpec(
        "staff_general_feedback",
        "staff",
        ("feedback_id", "channel", "classification", "score", "comment", "contact", "complaint_number", "command"),
        "Feedback about the desk with no case (hotline, web form, social media): a supervisor reads it and closes it "
        "(contact: on_file, given or none).",
        {
            "feedback_id": 17,
            "channel": "phone",
            "classification": "suggestion",
            "score": "-",
            "comment": "希望能在网上查询理赔进度",
            "contact": "on_file",
            "complaint_number": "-",
            "command": "claimflow feedback done --feedback 17 --by zhao.min --note ...",
        },
    ),
    MessageSpec(
        "staff_documents_arrived",
        "staff",
        ("case_number", "handler_name", "documents", "still_missing", "case_url"),
        "The customer sent missing documents from their case's status page.",
        {
            "case_number": "CLM-2026-000123",
            "handler_name": "李伟",
            "documents": ["repair invoice"],
            "still_missing": ["bank account details"],
            "due_at": None,  # the new due time when the upload completed the list and the clock runs again
            "case_url": "https://desk.insurer.example/cases/CLM-2026-000123",
        },
    ),
    MessageSpec(
        "staff_new_assignment",
        "staff",
        ("case_number", "kind", "priority", "handler_name", "due_at", "case_url"),
        "A case was assigned to a handler.",
        {
            "case_number": "CLM-2026-000123",
            "kind": "claim",
            "priority": "normal",
            "handler_name": "李伟",
            "due_at": "2026-03-06T16:00:00+00:00",
            "case_url": "https://desk.insurer.example/cases/CLM-2026-000123",
        },
        later=True,
        digest="staff_new_assignments",
    ),
    MessageSpec(
        "staff_new_assignments",
        "staff",
        ("handler_name", "items"),
        "Several cases were assigned to a handler while their notices waited: one message lists them all.",
        {
            "handler_name": "李伟",
            "items": [
                {
                    "case_number": "CLM-2026-000123",
                    "kind": "claim",
                    "priority": "normal",
                    "due_at": "2026-03-06T16:00:00+00:00",
                    "case_url": "https://desk.insurer.example/cases/CLM-2026-000123",
                },
                {
                    "case_number": "CMP-2026-000045",
                    "kind": "complaint",
                    "priority": "high",
                    "due_at": "2026-03-04T09:00:00+00:00",
                    "case_url": "https://desk.insurer.example/cases/CMP-2026-000045",
                },
            ],
            "worklist_url": "https://desk.insurer.example/runs?tag=assignee:li.wei",
        },
        later=True,
    ),
    MessageSpec(
        "staff_unassigned",
        "staff",
        ("case_number", "kind", "priority", "reason"),
        "A case was filed but nobody could take it (everyone at capacity or excluded): a supervisor assigns it.",
        {
            "case_number": "CLM-2026-000123",
            "kind": "claim",
            "priority": "high",
            "reason": "no active handler with free capacity for this claim",
            "reason_code": "no_capacity",
        },
    ),
    MessageSpec(
        "staff_reminder",
        "staff",
        ("case_number", "step", "percent", "handler_name", "due_at", "case_url"),
        "A step has used 50% or 75% of its time.",
        {
            "case_number": "CLM-2026-000123",
            "step": "review",
            "percent": 75,
            "handler_name": "李伟",
            "due_at": "2026-03-06T16:00:00+00:00",
            "case_url": "https://desk.insurer.example/cases/CLM-2026-000123",
        },
    ),
    MessageSpec(
        "staff_step_retimed",
        "staff",
        ("case_number", "step", "handler_name", "previous_due_at", "due_at", "case_url"),
        "A step's due time moved when the year's official calendar was imported (it had been assumed).",
        {
            "case_number": "CLM-2026-000123",
            "step": "review",
            "handler_name": "李伟",
            "previous_due_at": "2027-01-05T16:00:00+00:00",
            "due_at": "2027-01-07T16:00:00+00:00",
            "case_url": "https://desk.insurer.example/cases/CLM-2026-000123",
        },
    ),
    MessageSpec(
        "staff_breach_escalation",
        "staff",
        (
            "case_number",
            "step",
            "handler_name",
            "supervisor_name",
            "due_at",
            "approval_url",
            "approval_command",
        ),
        "A step breached its deadline: the supervisor decides, through the link or the command.",
        {
            "case_number": "CLM-2026-000123",
            "step": "review",
            "handler_name": "李伟",
            "supervisor_name": "王芳",
            "due_at": "2026-03-06T16:00:00+00:00",
            "approval_url": "http://127.0.0.1:4200/runs/flow-run/0e6c",
            "approval_command": "claimflow escalation decide CLM-2026-000123 --level 1",
        },
    ),
    MessageSpec(
        "staff_dead_letter",
        "staff",
        ("outbox_id", "case_number", "template", "recipient", "attempts", "last_error"),
        "A message could not be delivered after its last attempt.",
        {
            "outbox_id": 812,
            "case_number": "CLM-2026-000123",
            "template": "decision",
            "recipient": "customer:42",
            "attempts": 6,
            "last_error": "SMTP connection refused",
        },
    ),
)

CATALOGUE: dict[str, MessageSpec] = {spec.name: spec for spec in _MESSAGES}
"""Every message the desk sends, by template name."""

DELIVERY_FILLED = frozenset({"customer_name"})
"""Context keys filled in at delivery from the recipient, never stored in the outbox."""


@dataclass(frozen=True)
class RenderedMessage:
    """A message ready to leave: subject line, plain text (always) and HTML."""

    subject: str
    text: str
    html: str


DIGEST_SHARED = ("handler_name", "worklist_url")
"""Context keys that are the reader's, not a notice's: a digest takes them once, from its first notice."""


def digest_of(contexts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The context of a digest (``MessageSpec.digest``) of notices queued with ``contexts``, in their order: the
    reader's own values once (``DIGEST_SHARED``, from the first that has each), and each notice's own as an item."""
    if not contexts:
        raise InvalidInput("a digest needs at least one notice")
    shared: dict[str, Any] = {}
    for ctx in contexts:
        for key in DIGEST_SHARED:
            if key in ctx:
                shared.setdefault(key, ctx[key])
    items = [{key: value for key, value in ctx.items() if key not in DIGEST_SHARED} for ctx in contexts]
    return {**shared, "items": items}


def spec_for(name: str) -> MessageSpec:
    """The catalogue entry for ``name``; ``NotFound`` naming the known messages otherwise."""
    spec = CATALOGUE.get(name)
    if spec is None:
        raise NotFound(f"no message template named {name!r}; known: {', '.join(sorted(CATALOGUE))}")
    return spec


def choose_language(wanted: str | None, *, default: str) -> str:
    """The language a message is written in.

    Args:
        wanted: the customer's (or staff member's) language, e.g. ``zh-CN``, ``en-GB``, ``zh``; may be empty.
        default: the office default (``Settings.default_language``).

    Returns:
        ``wanted`` if a template language matches it exactly, else one sharing its primary subtag
        (``en-GB`` -> ``en``, ``zh-TW`` -> ``zh-CN``), else the same choice for ``default``, else ``zh-CN``.
    """
    for candidate in (wanted, default):
        if not candidate:
            continue
        if candidate in LANGUAGES:
            return candidate
        primary = candidate.split("-")[0].lower()
        for language in LANGUAGES:
            if language.split("-")[0].lower() == primary:
                return language
    return LANGUAGES[0]


# --- formatting ---------------------------------------------------------------------------------------

_EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

_CURRENCY_SYMBOL_ZH = {"CNY": "¥", "HKD": "HK$", "USD": "US$", "EUR": "€", "GBP": "£"}
_CURRENCY_NAME_ZH = {"CNY": "元", "HKD": "港元", "USD": "美元", "EUR": "欧元", "GBP": "英镑"}


def as_datetime(value: datetime | str) -> datetime:
    """An aware datetime from a datetime or ISO text (outbox context is stored as JSON)."""
    result = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(result, datetime):
        raise TypeError(f"expected a datetime or ISO text, got {value!r}")
    if result.tzinfo is None:
        raise ValueError(f"naive datetime {result.isoformat()} in a message; times must be aware")
    return result


def as_date(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(value).date() if "T" in value else date.fromisoformat(value)


def format_date(value: date | datetime | str, language: str, tz: str = "UTC") -> str:
    """``2026年3月5日`` / ``5 March 2026``; a datetime is read in the office time zone ``tz`` first."""
    if isinstance(value, datetime) or (isinstance(value, str) and "T" in value):
        day = as_datetime(value).astimezone(ZoneInfo(tz)).date()
    else:
        day = as_date(value)
    if language == "en":
        return f"{day.day} {_EN_MONTHS[day.month - 1]} {day.year}"
    return f"{day.year}年{day.month}月{day.day}日"


def format_datetime(value: datetime | str, language: str, tz: str = "UTC") -> str:
    """``2026年3月5日 17:00`` / ``5 March 2026, 17:00``, in the office time zone ``tz``."""
    local = as_datetime(value).astimezone(ZoneInfo(tz))
    separator = ", " if language == "en" else " "
    return f"{format_date(local.date(), language)}{separator}{local:%H:%M}"


def format_deadline(value: datetime | str, language: str, tz: str = "UTC") -> str:
    """A due time as a person reads it.

    A day-based deadline is stored as 00:00 of the day after the last day (the instant the limit is used
    up, see ``models.clock``); a customer is told the last day itself: ``2026年3月5日``, ``5 March 2026``.
    Any other time is shown with its hour.
    """
    local = as_datetime(value).astimezone(ZoneInfo(tz))
    if local.time() == time(0, 0):
        last_day = date.fromordinal(local.date().toordinal() - 1)
        return format_date(last_day, language)
    return format_datetime(local, language, tz)


def format_money(amount: Decimal | int | float | str, currency: str, language: str) -> str:
    """``¥12,800.50`` / ``CNY 12,800.50``: two decimals, thousands grouped.

    Raises:
        ValueError: ``amount`` is not a finite number.
    """
    try:
        value = Decimal(str(amount).replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not an amount of money") from None
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not an amount of money")
    grouped = f"{value.quantize(Decimal('0.01')):,.2f}"
    code = currency.upper()
    if language == "en":
        return f"{code} {grouped}"
    symbol = _CURRENCY_SYMBOL_ZH.get(code)
    if symbol:
        return f"{symbol}{grouped}"
    return f"{grouped} {_CURRENCY_NAME_ZH.get(code, code)}"


@pass_context
def _date_filter(context: Context, value: Any) -> str:
    return format_date(value, context["lang"], context["tz"])


@pass_context
def _datetime_filter(context: Context, value: Any) -> str:
    return format_datetime(value, context["lang"], context["tz"])


@pass_context
def _deadline_filter(context: Context, value: Any) -> str:
    return format_deadline(value, context["lang"], context["tz"])


@pass_context
def _document_filter(context: Context, value: Any) -> str:
    """A document the desk asks for, in the message's language (``repair invoice``: ``维修发票``); a name the desk
    has no words for (one a handler typed) as given."""
    from models.standards import document_words

    return document_words(str(value), context["lang"])


@pass_context
def _money_filter(context: Context, value: Any, currency: str = "CNY") -> str:
    return format_money(value, currency, context["lang"])


_URL = re.compile(r"https?://[^\s<>\"'，。）)]+")


def _linkify(line: str) -> Markup:
    """Escape one line of text and turn its http(s) URLs into links."""
    parts: list[str] = []
    last = 0
    for match in _URL.finditer(line):
        parts.append(str(escape(line[last : match.start()])))
        url = escape(match.group(0))
        parts.append(f'<a href="{url}">{url}</a>')
        last = match.end()
    parts.append(str(escape(line[last:])))
    return Markup("".join(parts))  # noqa: S704 - every piece above went through escape()


def text_blocks(text: str) -> list[dict[str, Any]]:
    """Split plain text into paragraphs and lists for the HTML layout.

    Blank lines separate blocks; a block whose lines all start with ``- `` is a list. Lines are escaped
    and their URLs become links.
    """
    blocks: list[dict[str, Any]] = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        lines = [line.rstrip() for line in chunk.splitlines() if line.strip()]
        if not lines:
            continue
        if all(line.lstrip().startswith("- ") for line in lines):
            blocks.append({"kind": "list", "items": [_linkify(line.lstrip()[2:]) for line in lines]})
        else:
            blocks.append({"kind": "paragraph", "lines": [_linkify(line) for line in lines]})
    return blocks


# --- the environment ----------------------------------------------------------------------------------


def make_environment(directory: Path | None = None) -> Environment:
    """The one Jinja environment of claimflow.

    ``StrictUndefined`` (a missing variable fails the render), autoescape for ``.html`` templates and
    none for plain text, whitespace control that keeps plain-text layout as written, and the language-aware
    filters ``date``, ``datetime``, ``deadline``, ``money`` and ``document``.

    Args:
        directory: the template folder; default: the shipped ``templates`` package.
    """
    env = Environment(
        loader=FileSystemLoader(str(directory or TEMPLATES_DIR)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["date"] = _date_filter
    env.filters["datetime"] = _datetime_filter
    env.filters["deadline"] = _deadline_filter
    env.filters["money"] = _money_filter
    env.filters["document"] = _document_filter
    return env


def template_path(name: str, language: str) -> str:
    return f"{language}/{name}.txt.j2"


def with_outside_body(context: Mapping[str, Any], language: str, desk: Mapping[str, Any] | None) -> dict[str, Any]:
    """``context`` with ``outside_body``, where it names a ``jurisdiction`` and no body of its own: that
    jurisdiction's body in ``language`` (the desk's ``outside_bodies``), as the message says it and the wording
    rules check it."""
    if context.get("outside_body") or "jurisdiction" not in context:
        return dict(context)
    bodies: OutsideBodies = (desk or {}).get("outside_bodies") or OUTSIDE_BODIES
    return {**context, "outside_body": outside_body_name(bodies, context.get("jurisdiction"), language)}


def render_message(
    env: Environment,
    name: str,
    *,
    language: str,
    context: Mapping[str, Any],
    timezone: str = "Asia/Shanghai",
    desk: Mapping[str, Any] | None = None,
    html: bool = True,
) -> RenderedMessage:
    """Render one message in one language.

    Args:
        env: the environment from ``make_environment``.
        name: a catalogue name.
        language: one of ``LANGUAGES`` (use ``choose_language`` first).
        context: the message's values; every key the catalogue requires must be present.
        timezone: the office time zone in which dates are shown.
        desk: the desk's own contact details (``phone``, ``email``), shown in customer messages, and the outside
            bodies (``outside_bodies``, default ``OUTSIDE_BODIES``) its complaint messages name.
        html: also lay the text out as HTML; False for a check at queue time (the layout only ever sees the
            rendered text, so it cannot fail on a message's values), and ``html`` is then empty.

    Returns:
        Subject, plain text and HTML.

    Raises:
        NotFound: no such message, or not written in ``language``.
        InvalidInput: a required key is missing (named), or a value cannot be formatted.
        jinja2.UndefinedError: the template uses a variable the context lacks (a template bug).
    """
    spec = spec_for(name)
    if language not in LANGUAGES:
        raise NotFound(f"messages are written in {', '.join(LANGUAGES)}, not {language!r}")
    missing = [key for key in spec.required if key not in context]
    if missing:
        raise InvalidInput(f"message {name!r} needs {', '.join(missing)} (not given)")
    bodies: OutsideBodies = (desk or {}).get("outside_bodies") or OUTSIDE_BODIES
    values = {
        **with_outside_body(context, language, desk),
        "lang": language,
        "tz": timezone,
        # desk.outside(jurisdiction): the outside body in this message's language, from CLAIMFLOW_OUTSIDE_BODIES
        "desk": desk_values(desk or {}) | {"outside": lambda j: outside_body_name(bodies, j, language)},
    }
    try:
        template = env.get_template(template_path(name, language))
    except TemplateNotFound:
        raise NotFound(f"message {name!r} has no {language} template") from None
    try:
        subject = " ".join(_render_block(template, "subject", values).split())
        text = _tidy(_render_block(template, "body", values))
        laid_out = (
            env.get_template("_layout.html.j2").render(subject=subject, blocks=text_blocks(text), lang=language)
            if html
            else ""
        )
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"message {name!r}: {exc}") from exc
    return RenderedMessage(subject=subject, text=text, html=laid_out)


DESK_SETTINGS = {"phone": "CLAIMFLOW_DESK_PHONE", "email": "CLAIMFLOW_DESK_EMAIL"}
"""The desk's contact details customer messages quote, and the setting each comes from."""
SAMPLE_DESK = {"phone": "010-0000-0000", "email": "service@insurer.example"}
"""A desk's details for previews and tests: no one's real line."""


class DeskNotConfigured(InvalidInput):
    """A message quotes a contact detail of the desk that is not set: it is held, not sent with a gap or with
    someone else's number."""

    def __init__(self, setting: str) -> None:
        super().__init__(f"the desk's {setting} is not set: customer messages quote it")
        self.setting = setting


class _NotSet:
    """A desk detail that is not configured: rendering it stops the render with ``DeskNotConfigured``."""

    def __init__(self, setting: str) -> None:
        self.setting = setting

    def __str__(self) -> str:
        raise DeskNotConfigured(self.setting)

    def __bool__(self) -> bool:
        return False


def desk_values(desk: Mapping[str, Any]) -> dict[str, Any]:
    """The desk's details for templates; an empty one renders as ``DeskNotConfigured``."""
    return {key: desk.get(key) or _NotSet(setting) for key, setting in DESK_SETTINGS.items()} | {
        key: value for key, value in desk.items() if key not in DESK_SETTINGS
    }


def _render_block(template: Any, block: str, values: Mapping[str, Any]) -> str:
    render = template.blocks.get(block)
    if render is None:
        raise NotFound(f"template {template.name} has no {block!r} block")
    return "".join(render(template.new_context(dict(values))))


def _tidy(text: str) -> str:
    """Trim trailing spaces and collapse runs of blank lines left by conditional blocks."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def html_to_text(html: str) -> str:
    """The visible text of an HTML part, for checks (tags dropped, entities decoded)."""
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", " ", html))

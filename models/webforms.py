"""The online claim and complaint forms (``/claim``, ``/complaint``), pure: their fields, words and checks.

A form posts plain ``application/x-www-form-urlencoded`` fields (no script needed). ``read_form`` turns them into the
``CaseCreate`` the webhook's intake files, or the problems to show next to each field, in the page's language; the
values typed are given back to the page as typed (the template escapes them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ValidationError

from models.enums import CaseKind, Channel, ContactChannel
from models.mail import infer_product_line
from models.standards import PRODUCT_WORDS
from models.tables import CaseCreate, CustomerCreate

KINDS = {"claim": CaseKind.claim, "complaint": CaseKind.complaint}
PRODUCT_LINES = ("motor", "health", "property", "travel", "life")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _max_length(model: type[BaseModel], name: str) -> int:
    """The column's own limit, so the form never promises more than the database keeps."""
    return next(m.max_length for m in model.model_fields[name].metadata if getattr(m, "max_length", None))


LIMITS = {**{name: _max_length(CustomerCreate, name) for name in ("name", "phone", "email")},
          "policy_number": _max_length(CaseCreate, "policy_number"), "related_case_number": 32, "incident_date": 10,
          "amount": 20, "description": 4000, "product_line": 16}  # fmt: skip
"""The longest value each field takes (characters; the form's own for the description); the page's inputs carry the
same ``maxlength``."""

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title_claim": "Make a claim", "title_complaint": "Make a complaint",
        "intro_claim": "Tell us what happened. We answer with a case number at once and tell you the documents we "
                       "need, in one list. It costs nothing.",
        "intro_complaint": "Tell us what went wrong. A team independent of the one you complain about looks into it, "
                           "and we answer in writing. It costs nothing.",
        "name": "Your name", "phone": "Mobile phone", "email": "E-mail",
        "contact_help": "Give at least one, so that we can reach you.",
        "policy_number": "Policy number (if you have it)", "product_line": "Kind of insurance",
        "product_unknown": "I do not know", "incident_date": "Date it happened (YYYY-MM-DD)",
        "amount": "Amount claimed (CNY, if known)", "related_case_number": "Case number it is about (if any)",
        "description_claim": "What happened",
        "description_complaint": "What went wrong, and what you would like us to do",
        "elderly": "I am 70 or older, or I need help (we call you first and ask for fewer documents)",
        "submit": "Send", "required": "required",
        "problems": "Please check the fields marked below.",
        "missing": "Please fill this in.", "too_long": "At most {limit} characters.",
        "contact_missing": "Please give a mobile phone number or an e-mail address.",
        "bad_phone": "This does not look like a phone number.", "bad_email": "This does not look like an e-mail "
                                                                              "address.",
        "bad_date": "Please write the date as YYYY-MM-DD, not in the future.",
        "bad_amount": "Please write an amount such as 12800.50.", "bad_value": "Please check this value.",
        "done_title": "We have received it", "done": "Your case number is {number}. We have sent you an "
                                                      "acknowledgement; keep the number for any question.",
        "status_link": "See where your case stands", "status_help": "This link is yours: do not share it.",
        "again": "This form was already sent: it is case {number}.",
        "conflict": "This form was already sent with other details. Please open a new form, or call us at {phone}.",
        "too_many": "Too many forms were sent from your connection in the last hour. Please try again later, or "
                    "call us at {phone}.",
        "too_big": "The form is too large (at most {limit} characters in all). Please shorten it, or call us at "
                   "{phone}.",
        "unavailable": "We cannot take your form right now. Please try again in a few minutes, or call us at "
                       "{phone}.",
        "large_on": "Larger text", "large_off": "Normal text", "other_language": "中文",
        "standards": "Our service standards",
    },
    "zh-CN": {
        "title_claim": "在线报案理赔", "title_complaint": "在线投诉",
        "intro_claim": "请告诉我们发生了什么。提交后立即生成案件编号，我们会一次性告知您所需的全部材料。免费。",
        "intro_complaint": "请告诉我们哪里做得不好。投诉由独立于被投诉部门的团队处理，并书面答复您。免费。",
        "name": "您的姓名", "phone": "手机号码", "email": "电子邮箱",
        "contact_help": "请至少填写一项，以便我们联系您。",
        "policy_number": "保单号（如有）", "product_line": "险种",
        "product_unknown": "不清楚", "incident_date": "出险日期（年-月-日，例如 2026-12-01）",
        "amount": "索赔金额（元，如已知）", "related_case_number": "相关案件号（如有）",
        "description_claim": "事故经过", "description_complaint": "投诉内容及您的诉求",
        "elderly": "我已年满70岁，或需要帮助（我们会先电话联系您，并简化所需材料）",
        "submit": "提交", "required": "必填",
        "problems": "请检查下面标出的内容。",
        "missing": "请填写此项。", "too_long": "最多{limit}个字。",
        "contact_missing": "请填写手机号码或电子邮箱。",
        "bad_phone": "手机号码格式不正确。", "bad_email": "电子邮箱格式不正确。",
        "bad_date": "请按 年-月-日 填写日期，且不晚于今天。",
        "bad_amount": "请填写金额，例如 12800.50。", "bad_value": "请检查此项。",
        "done_title": "已受理", "done": "您的案件号为 {number}。我们已向您发送受理通知，如有疑问请提供此案件号。",
        "status_link": "查看案件进度", "status_help": "此链接仅供您本人使用，请勿转发。",
        "again": "此表单已提交过，案件号为 {number}。",
        "conflict": "此表单已用其他内容提交过。请重新打开表单，或致电 {phone}。",
        "too_many": "您的网络在一小时内提交次数过多，请稍后再试，或致电 {phone}。",
        "too_big": "表单内容过长（合计最多{limit}个字），请精简后提交，或致电 {phone}。",
        "unavailable": "暂时无法受理，请几分钟后再试，或致电 {phone}。",
        "large_on": "大字模式", "large_off": "标准字号", "other_language": "English",
        "standards": "服务标准",
    },
}  # fmt: skip


@dataclass
class FormResult:
    """What a posted form gave: the case to file, or the problems per field (the values as typed, for the page)."""

    values: dict[str, str]
    problems: dict[str, str] = field(default_factory=dict)
    case: CaseCreate | None = None


def _one(fields: dict[str, list[str]], name: str) -> str:
    found = fields.get(name) or [""]
    return found[0].replace("\x00", "").strip()


def read_form(kind: str, fields: dict[str, list[str]], *, language: str, today: date) -> FormResult:
    """Check a posted form of ``kind`` (claim or complaint) and build its case, or say what to correct."""
    words = TEXT[language]
    names = ("name", "phone", "email", "policy_number", "product_line", "incident_date", "amount", "description",
             "related_case_number")  # fmt: skip
    values = {name: _one(fields, name) for name in names}
    values["elderly"] = "1" if _one(fields, "elderly") == "1" else ""
    problems: dict[str, str] = {}
    for name, limit in LIMITS.items():
        if len(values.get(name, "")) > limit:
            problems[name] = words["too_long"].format(limit=limit)
    for name in ("name", "description"):
        if not values[name] and name not in problems:
            problems[name] = words["missing"]
    if not values["phone"] and not values["email"]:
        problems["phone"] = words["contact_missing"]
    incident = amount = None
    if values["incident_date"] and "incident_date" not in problems:
        try:
            incident = date.fromisoformat(values["incident_date"])
            if incident > today:
                raise ValueError("in the future")
        except ValueError:
            problems["incident_date"] = words["bad_date"]
    if values["amount"] and "amount" not in problems:
        try:
            amount = Decimal(values["amount"].replace(",", "").replace("，", ""))
            if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
                raise InvalidOperation
        except InvalidOperation:
            problems["amount"] = words["bad_amount"]
    product = values["product_line"].lower() if values["product_line"].lower() in PRODUCT_LINES else None
    if product is None:  # not chosen: read from the words, as for a mail (a claim nothing tells waits in triage)
        product = infer_product_line("", values["description"])
    by_phone = bool(values["elderly"]) or not values["email"]
    case: CaseCreate | None = None
    try:
        customer = CustomerCreate(
            name=values["name"] or "-", phone=values["phone"] or None, email=values["email"] or None,
            language=language, elderly=bool(values["elderly"]),
            preferred_channel=ContactChannel.phone if by_phone else ContactChannel.email,
        )  # fmt: skip
        if not problems:
            case = CaseCreate(
                kind=KINDS[kind], channel=Channel.webhook, customer=customer, product_line=product,
                policy_number=values["policy_number"] or None, amount_claimed=amount, incident_date=incident,
                description=values["description"], related_case_number=values["related_case_number"].upper() or None,
            )  # fmt: skip
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            where = [str(part) for part in error.get("loc", ())]
            name = next((n for n in reversed(where) if n in values), "name")
            problems.setdefault(name, words.get(f"bad_{name}", words["bad_value"]))
    if problems:
        return FormResult(values, problems)
    return FormResult(values, case=case)


def words_for(language: str) -> dict[str, Any]:
    """The page's words, with the kinds of insurance a customer can choose (those of ``/standards``)."""
    products = {code: PRODUCT_WORDS[language][code] for code in PRODUCT_LINES}
    return {**TEXT[language], "products": products}

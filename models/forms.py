"""The words of the decision forms: each field's title and help, and each choice as a word, in the desk's languages.

The Prefect UI builds a form from the JSON schema of a RunInput model: a field's ``title`` is its label, its
``description`` the help under it, and an ``enum`` a select whose options are the enum's values as they are. So a
form in the desk's language offers its choices as words ("Approve in part", "部分赔付"), the stored answer holds
the word, and the flow reads the word back as its code (``approve_partly``) before the rules see it. The CLI and
the API keep the codes: ``fit_choices`` turns a code into the word the waiting form's schema offers.

The forms' fields are here, as plain pydantic models (the CLI checks an answer against them without loading
Prefect); ``flows.inputs`` makes each a Prefect ``RunInput``.

Pure: no Prefect, no database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

LANGUAGES = ("zh-CN", "en")

CHOICE_WORDS: dict[str, dict[str, dict[str, str]]] = {
    "claim_review": {
        "en": {"approve": "Approve in full", "approve_partly": "Approve in part", "reject": "Reject",
               "request_documents": "Ask for documents", "investigate": "Investigate first"},
        "zh-CN": {"approve": "全额赔付", "approve_partly": "部分赔付", "reject": "拒赔",
                  "request_documents": "要求补充材料", "investigate": "先调查"},
    },
    "second_approval": {
        "en": {"approve": "Approve", "reject": "Send back to the handler"},
        "zh-CN": {"approve": "同意", "reject": "退回经办人"},
    },
    "complaint_decision": {
        "en": {"uphold": "Uphold", "partly_uphold": "Uphold in part", "not_uphold": "Do not uphold",
               "mediate": "Offer mediation", "refer_outside": "Refer to the outside body"},
        "zh-CN": {"uphold": "投诉成立", "partly_uphold": "投诉部分成立", "not_uphold": "投诉不成立",
                  "mediate": "提供调解", "refer_outside": "转交外部机构"},
    },
    "escalation": {
        "en": {"extend": "Extend the deadline", "reassign": "Reassign to another handler",
               "take_over": "Take the case over"},
        "zh-CN": {"extend": "延长期限", "reassign": "改派经办人", "take_over": "亲自接手"},
    },
}  # fmt: skip
"""form -> language -> code -> the word the form shows. Every language names every code of a form."""

FIELD_WORDS: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "staff": ("Your username", "Your staff username, e.g. li.wei"),
        "approval_code": ("Approval code", "The 6-digit code your authenticator app shows now"),
        "decision": ("Decision", "What each choice does is described above"),
        "amount": ("Amount to pay", "Required to approve in full or in part, e.g. 12800.50"),
        "reasons": ("Reasons", "Required to reject or to approve in part; the customer reads them"),
        "clause": ("Policy clause", "The clause relied on; required to reject or to approve in part"),
        "claim_review.documents": ("Documents to ask for", "Separated by ';' (empty: the standard complete list)"),
        "documents": ("Documents received", "The documents that arrived"),
        "comment": ("Comment", "Why (recorded with the approval)"),
        "payment.amount": ("Amount paid", "Not more than the approved amount, e.g. 12800.50"),
        "reference": ("Payment reference", "The bank's or the payment system's reference"),
        "account_hint": ("Account (last four digits)", "The last four digits of the account paid into"),
        "remedy": ("Remedy", "What the desk will do (uphold, uphold in part)"),
        "complaint_decision.reasons": ("Findings", "What the investigation found (required unless upheld)"),
        "body": ("Outside body", "For a referral; empty: the jurisdiction's body"),
        "answer": ("Answer", "The answer the customer is sent, on their channel"),
        "extension": ("Extension rule", "The pack's extension rule to apply; empty: supervisor-extension"),
        "reassign_to": ("New handler", "Username of the new handler (reassign)"),
        "reason": ("Reason", "Why; required to extend, and the customer is told it"),
    },
    "zh-CN": {
        "staff": ("您的用户名", "您的员工用户名，例如 li.wei"),
        "approval_code": ("动态码", "身份验证器当前显示的 6 位数字"),
        "decision": ("决定", "各选项的处理方式见上文"),
        "amount": ("赔付金额", "全额或部分赔付时必填，例如 12800.50"),
        "reasons": ("理由", "拒赔或部分赔付时必填；客户会看到"),
        "clause": ("保单条款", "所依据的条款；拒赔或部分赔付时必填"),
        "claim_review.documents": ("需补充的材料", "用 ';' 分隔（留空：标准的完整清单）"),
        "documents": ("已收到的材料", "已到达的材料"),
        "comment": ("意见", "理由（随审批记录）"),
        "payment.amount": ("已付金额", "不超过核准金额，例如 12800.50"),
        "reference": ("付款流水号", "银行或支付系统的流水号"),
        "account_hint": ("收款账户后四位", "收款账户的后四位数字"),
        "remedy": ("补救措施", "将采取的措施（投诉成立或部分成立时）"),
        "complaint_decision.reasons": ("调查结论", "调查发现的情况（投诉成立以外必填）"),
        "body": ("外部机构", "转交时填写；留空：所属辖区的机构"),
        "answer": ("答复", "将按客户的联系渠道发送给客户"),
        "extension": ("延期规则", "适用的延期规则；留空：supervisor-extension"),
        "reassign_to": ("新经办人", "新经办人的用户名（改派时）"),
        "reason": ("理由", "原因；延期时必填，并会告知客户"),
    },
}  # fmt: skip
"""language -> field (or ``form.field`` where a form needs its own words) -> (title, help)."""


ACTION_WORDS: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "from_staff": ("Whose cases", "The username whose open cases move, e.g. li.wei"),
        "to_staff": ("To whom", "The username of the handler who takes them, e.g. wang.fang"),
        "by": ("Your username", "You: a supervisor or manager (for an extension or a letter, or the case's handler)"),
        "case_number": ("Case number", "e.g. CLM-2026-000001 (reassigning: empty for all their open cases)"),
        "step": ("Step", "Empty: the open step due first"),
        "outbox_id": ("Held message", "Its number (claimflow outbox list --status held); 0: every held letter"),
        "values": ("Values it lacked", 'e.g. {"clause": "4.2"}: only values the letter already has'),
        "reassign-cases.reason": ("Reason", "Why (the new handler and the audit log read it), e.g. on leave until "
                                  "12 January"),
        "extend-step.reason": ("Reason", "Why more time is needed; the customer is told it"),
    },
    "zh-CN": {
        "from_staff": ("转出谁的案件", "其未结案件将被转出的员工用户名，例如 li.wei"),
        "to_staff": ("转给谁", "接手案件的经办人用户名，例如 wang.fang"),
        "by": ("您的用户名", "您本人：主管或经理（延期或处理暂扣信函时，也可以是案件经办人）"),
        "case_number": ("案件编号", "例如 CLM-2026-000001（转派时留空：其全部未结案件）"),
        "step": ("环节", "留空：最先到期的未完成环节"),
        "outbox_id": ("被暂扣的消息", "消息编号（claimflow outbox list --status held）；0：该案件全部暂扣信函"),
        "values": ("缺少的内容", '例如 {"clause": "4.2"}：只能填写信函中已有的项目'),
        "reassign-cases.reason": ("理由", "原因（新经办人和审计记录可见），例如 休假至 1 月 12 日"),
        "extend-step.reason": ("理由", "需要更多时间的原因；会告知客户"),
    },
}  # fmt: skip
"""language -> parameter of the UI's desk actions (``flows/actions.py``) -> (title, help); the rest are the
forms' own words (``approval_code``, ``reason``, ``extension``)."""


def parameter_words(properties: Mapping[str, Any], language: str, action: str = "") -> dict[str, dict[str, Any]]:
    """A Custom-run form's parameters (the deployment's parameter schema ``properties``) titled and explained in
    ``language``: Prefect titles each by its Python name (``from_staff``). ``action``: the flow's name, where a
    parameter needs words of its own (``reassign-cases.reason``)."""
    words = {**FIELD_WORDS[_language(language)], **ACTION_WORDS[_language(language)]}
    shown: dict[str, dict[str, Any]] = {}
    for name, schema in properties.items():
        found = words.get(f"{action}.{name}") or words.get(name)
        shown[name] = {**schema, **({"title": found[0], "description": found[1]} if found else {})}
    return shown


def _language(language: str) -> str:
    return language if language in LANGUAGES else "en"


def field_words(form: str, field: str, language: str) -> tuple[str, str]:
    """The title and help of a form's field in ``language`` (English where the language is not the desk's)."""
    words = FIELD_WORDS[_language(language)]
    return words.get(f"{form}.{field}") or words.get(field) or (field.replace("_", " ").capitalize(), "")


def choice_words(form: str, language: str) -> dict[str, str]:
    """code -> word of the form's choices in ``language`` (empty for a form without choices)."""
    return dict(CHOICE_WORDS.get(form, {}).get(_language(language), {}))


def choice_code(form: str, value: Any) -> Any:
    """The code of a choice of ``form`` (empty: of any form) given as its code or as its word in any of the desk's
    languages (a form stored in one language is still read after the desk changed its language); anything else
    is returned as it is, for the form's own validation to refuse."""
    if not isinstance(value, str):
        return value
    given = value.strip()
    forms = [CHOICE_WORDS.get(form, {})] if form else list(CHOICE_WORDS.values())
    for languages in forms:
        for words in languages.values():
            for code, word in words.items():
                if given in (code, word):
                    return code
    return value


def fit_choices(form: str, answer: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``answer`` with each choice given as a code replaced by the word the waiting form's ``schema`` offers for
    it (the server accepts only the schema's own values); values the schema offers, or that are no choice of the
    form, are left as they are.

    Args:
        form: the form (``claim_review``, ``escalation``...).
        answer: field -> value, as the CLI or an API client gives it (codes).
        schema: the JSON schema the suspended run stored for its form.

    Returns:
        The answer to send.
    """
    fitted = dict(answer)
    properties = schema.get("properties") or {}
    for name, value in answer.items():
        offered = (properties.get(name) or {}).get("enum")
        if not offered or value in offered:
            continue
        code = choice_code(form, value)
        for word in offered:
            if choice_code(form, word) == code:
                fitted[name] = word
                break
    return fitted


# --- the forms' fields ---------------------------------------------------------------------------------------


class SignedFields(BaseModel):
    """Every form names the staff member and carries their current approval code (the open-source Prefect UI has
    no login: the flow checks the code, the role and the four-eyes rule before it acts)."""

    model_config = ConfigDict(extra="forbid")

    form: ClassVar[str] = ""
    staff: str = Field(description="Your staff username, e.g. li.wei")
    approval_code: str = Field(description="The 6-digit code your authenticator app shows now")

    @field_validator("decision", mode="before", check_fields=False)
    @classmethod
    def _choice_as_code(cls, value: Any) -> Any:
        """A choice given as its word (the UI's form in the desk's language) is read as its code."""
        return choice_code(cls.form, value)


class ClaimReviewFields(SignedFields):
    form: ClassVar[str] = "claim_review"
    decision: Literal["approve", "approve_partly", "reject", "request_documents", "investigate"]
    amount: str = Field(default="", description="Amount to pay (approve, approve_partly)")
    reasons: str = Field(default="", description="Reasons (required to reject or approve in part)")
    clause: str = Field(default="", description="Policy clause relied on (required to reject or approve in part)")
    documents: str = Field(
        default="", description="Documents to ask for, separated by ';' (empty: the standard complete list)"
    )


class DocumentsReceivedFields(SignedFields):
    form: ClassVar[str] = "documents"
    documents: list[str] = Field(default_factory=list, description="Documents that arrived")


class SecondApprovalFields(SignedFields):
    form: ClassVar[str] = "second_approval"
    decision: Literal["approve", "reject"]
    comment: str = Field(default="", description="Why (recorded with the approval)")


class PaymentRecordedFields(SignedFields):
    form: ClassVar[str] = "payment"
    amount: str = Field(description="Amount paid")
    reference: str = Field(default="", description="Payment reference")
    account_hint: str = Field(default="", description="Last four digits of the account paid into")


class ComplaintDecisionFields(SignedFields):
    form: ClassVar[str] = "complaint_decision"
    decision: Literal["uphold", "partly_uphold", "not_uphold", "mediate", "refer_outside"]
    remedy: str = Field(default="", description="What the desk will do (uphold, partly_uphold)")
    reasons: str = Field(default="", description="What the investigation found (required unless upheld)")
    body: str = Field(default="", description="Outside body (refer_outside; empty: the jurisdiction's)")


class InquiryAnswerFields(SignedFields):
    form: ClassVar[str] = "inquiry_answer"
    answer: str = Field(description="The answer given to the customer")


class EscalationDecisionFields(SignedFields):
    form: ClassVar[str] = "escalation"
    decision: Literal["extend", "reassign", "take_over"]
    extension: str = Field(default="", description="Extension rule to apply (extend); empty: supervisor-extension")
    reassign_to: str = Field(default="", description="Username of the new handler (reassign)")
    reason: str = Field(default="", description="Why (required to extend; told to the customer)")


FIELDS: dict[str, type[SignedFields]] = {
    f.form: f
    for f in (ClaimReviewFields, DocumentsReceivedFields, SecondApprovalFields, PaymentRecordedFields,
              ComplaintDecisionFields, InquiryAnswerFields, EscalationDecisionFields)
}  # fmt: skip
"""form name -> its fields (``InputKind`` values, and ``escalation``)."""

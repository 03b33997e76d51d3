"""The forms people fill in, as Prefect RunInput models: the Prefect UI shows each as a form with its choices.

Every form names the staff member and carries their current approval code, because the open-source
Prefect UI has no login: the flow checks the code, the role and the four-eyes rule before it acts.

The classes below take the choices as codes (the CLI, the API, the rules); ``form_for`` gives the same form in
the desk's language as the UI shows it: titles and help in that language, choices as words
(``models/forms.py``). Whichever a person or a client sends, the flow reads codes.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar, Literal

from prefect.input import RunInput
from pydantic import Field, create_model, field_validator

from models.forms import choice_code, choice_words, field_words
from models.plan import InputKind


class Signed(RunInput):
    form: ClassVar[str] = ""
    staff: str = Field(description="Your staff username, e.g. li.wei")
    approval_code: str = Field(description="The 6-digit code your authenticator app shows now")

    @field_validator("decision", mode="before", check_fields=False)
    @classmethod
    def _choice_as_code(cls, value: Any) -> Any:
        """A choice given as its word (the UI's form in the desk's language) is read as its code."""
        return choice_code(cls.form, value)


class ClaimReview(Signed):
    form: ClassVar[str] = InputKind.claim_review.value
    decision: Literal["approve", "approve_partly", "reject", "request_documents", "investigate"]
    amount: str = Field(default="", description="Amount to pay (approve, approve_partly)")
    reasons: str = Field(default="", description="Reasons (required to reject or approve in part)")
    clause: str = Field(default="", description="Policy clause relied on (required to reject or approve in part)")
    documents: str = Field(
        default="", description="Documents to ask for, separated by ';' (empty: the standard complete list)"
    )


class DocumentsReceived(Signed):
    form: ClassVar[str] = InputKind.documents.value
    documents: list[str] = Field(default_factory=list, description="Documents that arrived")


class SecondApproval(Signed):
    form: ClassVar[str] = InputKind.second_approval.value
    decision: Literal["approve", "reject"]
    comment: str = Field(default="", description="Why (recorded with the approval)")


class PaymentRecorded(Signed):
    form: ClassVar[str] = InputKind.payment.value
    amount: str = Field(description="Amount paid")
    reference: str = Field(default="", description="Payment reference")
    account_hint: str = Field(default="", description="Last four digits of the account paid into")


class ComplaintDecision(Signed):
    form: ClassVar[str] = InputKind.complaint_decision.value
    decision: Literal["uphold", "partly_uphold", "not_uphold", "mediate", "refer_outside"]
    remedy: str = Field(default="", description="What the desk will do (uphold, partly_uphold)")
    reasons: str = Field(default="", description="What the investigation found (required unless upheld)")
    body: str = Field(default="", description="Outside body (refer_outside; empty: the jurisdiction's)")


class InquiryAnswer(Signed):
    form: ClassVar[str] = InputKind.inquiry_answer.value
    answer: str = Field(description="The answer given to the customer")


class EscalationDecision(Signed):
    form: ClassVar[str] = "escalation"
    decision: Literal["extend", "reassign", "take_over"]
    extension: str = Field(default="", description="Extension rule to apply (extend); empty: supervisor-extension")
    reassign_to: str = Field(default="", description="Username of the new handler (reassign)")
    reason: str = Field(default="", description="Why (required to extend; told to the customer)")


FORMS: dict[InputKind, type[Signed]] = {
    InputKind.claim_review: ClaimReview,
    InputKind.documents: DocumentsReceived,
    InputKind.second_approval: SecondApproval,
    InputKind.payment: PaymentRecorded,
    InputKind.complaint_decision: ComplaintDecision,
    InputKind.inquiry_answer: InquiryAnswer,
}


@cache
def form_for(base: type[Signed], language: str) -> type[Signed]:
    """``base`` as the UI shows it in ``language``: each field titled and explained in that language, and each
    choice offered as its word (the schema's ``enum``; the answer's word is read back as its code)."""
    fields: dict[str, Any] = {}
    for name, info in base.model_fields.items():
        title, help_ = field_words(base.form, name, language)
        extra: dict[str, Any] = {}
        if name == "decision":
            extra["enum"] = list(choice_words(base.form, language).values())
        default: dict[str, Any] = (
            {"default_factory": info.default_factory} if info.default_factory is not None else {"default": info.default}
        )
        fields[name] = (info.annotation, Field(**default, title=title, description=help_, json_schema_extra=extra))
    model: type[Signed] = create_model(base.__name__, __base__=base, **fields)
    return model

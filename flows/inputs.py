"""The forms people fill in, as Prefect RunInput models: the Prefect UI shows each as a form with its choices.

Every form names the staff member and carries their current approval code, because the open-source
Prefect UI has no login: the flow checks the code, the role and the four-eyes rule before it acts. The fields are
in ``models/forms.py`` (the CLI checks an answer against them without loading Prefect).

The classes below take the choices as codes (the CLI, the API, the rules); ``form_for`` gives the same form in
the desk's language as the UI shows it: titles and help in that language, choices as words
(``models/forms.py``). Whichever a person or a client sends, the flow reads codes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from prefect.input import RunInput
from pydantic import Field, create_model

from models.forms import (
    ClaimReviewFields,
    ComplaintDecisionFields,
    DocumentsReceivedFields,
    EscalationDecisionFields,
    InquiryAnswerFields,
    PaymentRecordedFields,
    SecondApprovalFields,
    SignedFields,
    choice_words,
    field_words,
)
from models.plan import InputKind


class Signed(SignedFields, RunInput):
    """A form as a Prefect RunInput: its fields are ``models.forms.SignedFields`` and a form's own."""


class ClaimReview(ClaimReviewFields, Signed):
    pass


class DocumentsReceived(DocumentsReceivedFields, Signed):
    pass


class SecondApproval(SecondApprovalFields, Signed):
    pass


class PaymentRecorded(PaymentRecordedFields, Signed):
    pass


class ComplaintDecision(ComplaintDecisionFields, Signed):
    pass


class InquiryAnswer(InquiryAnswerFields, Signed):
    pass


class EscalationDecision(EscalationDecisionFields, Signed):
    pass


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

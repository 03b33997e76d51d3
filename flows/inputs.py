"""The forms people fill in, as Prefect RunInput models: the Prefect UI shows each as a form with its choices.

Every form names the staff member and carries their current approval code, because the open-source
Prefect UI has no login: the flow checks the code, the role and the four-eyes rule before it acts.
"""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import Field

from models.plan import InputKind


class Signed(RunInput):
    staff: str = Field(description="Your staff username, e.g. li.wei")
    approval_code: str = Field(description="The 6-digit code your authenticator app shows now")


class ClaimReview(Signed):
    decision: Literal["approve", "approve_partly", "reject", "request_documents", "investigate"]
    amount: str = Field(default="", description="Amount to pay (approve, approve_partly)")
    reasons: str = Field(default="", description="Reasons (required to reject or approve in part)")
    clause: str = Field(default="", description="Policy clause relied on (required to reject or approve in part)")
    documents: str = Field(
        default="", description="Documents to ask for, separated by ';' (empty: the standard complete list)"
    )


class DocumentsReceived(Signed):
    documents: list[str] = Field(default_factory=list, description="Documents that arrived")


class SecondApproval(Signed):
    decision: Literal["approve", "reject"]
    comment: str = Field(default="", description="Why (recorded with the approval)")


class PaymentRecorded(Signed):
    amount: str = Field(description="Amount paid")
    reference: str = Field(default="", description="Payment reference")
    account_hint: str = Field(default="", description="Last four digits of the account paid into")


class ComplaintDecision(Signed):
    decision: Literal["uphold", "partly_uphold", "not_uphold", "mediate", "refer_outside"]
    remedy: str = Field(default="", description="What the desk will do (uphold, partly_uphold)")
    reasons: str = Field(default="", description="What the investigation found (required unless upheld)")
    body: str = Field(default="", description="Outside body (refer_outside; empty: the jurisdiction's)")


class InquiryAnswer(Signed):
    answer: str = Field(description="The answer given to the customer")


class EscalationDecision(Signed):
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

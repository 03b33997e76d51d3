"""What a case flow does next, from the case's state alone (pure).

A case flow run is a loop: read the case, ask ``next_move``, then either run an automatic move (no person
needed), or suspend for a person's decision on a step, or stop because the case is closed. Because the
answer depends only on what the database says, a run restarted from its first line carries on where the
case is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from models.enums import CaseKind
from models.errors import InvalidInput


class InputKind(StrEnum):
    """The forms a person fills in; each is a RunInput model in ``flows.inputs``."""

    claim_review = "claim_review"
    documents = "documents"
    second_approval = "second_approval"
    payment = "payment"
    complaint_decision = "complaint_decision"
    inquiry_answer = "inquiry_answer"


@dataclass(frozen=True)
class Ask:
    """Suspend until a person decides ``input_kind`` on the case's ``step``."""

    input_kind: InputKind
    step: str


@dataclass(frozen=True)
class Auto:
    """Do ``action`` without anyone: ``start`` (route, first moves, first step) or ``finish`` (close)."""

    action: str


@dataclass(frozen=True)
class Finished:
    pass


Move = Ask | Auto | Finished

_CLAIM: dict[str, Move] = {
    "received": Auto("start"),
    "reopened": Auto("start"),
    "under_review": Ask(InputKind.claim_review, "review"),
    "investigating": Ask(InputKind.claim_review, "investigation"),
    "approved": Ask(InputKind.payment, "payment"),
    "partly_approved": Ask(InputKind.payment, "payment"),
    "paid": Auto("finish"),
    "rejected": Auto("finish"),
    "feedback": Auto("finish"),
    "withdrawn": Auto("finish"),
    "closed": Finished(),
}
_COMPLAINT: dict[str, Move] = {
    "received": Auto("start"),
    "acknowledged": Auto("start"),
    "reopened": Auto("start"),
    "investigating": Ask(InputKind.complaint_decision, "resolution"),
    "mediation": Ask(InputKind.complaint_decision, "resolution"),
    "resolved": Auto("finish"),
    "feedback": Auto("finish"),
    "referred": Auto("finish"),
    "withdrawn": Auto("finish"),
    "closed": Finished(),
}
_INQUIRY: dict[str, Move] = {
    "received": Ask(InputKind.inquiry_answer, "answer"),
    "answered": Auto("finish"),
    "closed": Finished(),
}
_MOVES = {CaseKind.claim: _CLAIM, CaseKind.complaint: _COMPLAINT, CaseKind.inquiry: _INQUIRY}


def next_move(
    kind: CaseKind | str,
    status: str,
    *,
    pending_second_approval: bool = False,
    waiting_on_documents_in: str | None = None,
) -> Move:
    """The next move of a case.

    Args:
        kind: the case kind.
        status: its lifecycle state.
        pending_second_approval: a decision awaits a second approver (the claim stays in review meanwhile).
        waiting_on_documents_in: for ``awaiting_documents``: the step whose clock is paused for them.
    """
    kind = CaseKind(kind)
    if kind == CaseKind.claim and status == "awaiting_documents":
        return Ask(InputKind.documents, waiting_on_documents_in or "review")
    if kind == CaseKind.claim and pending_second_approval and status in ("under_review", "investigating"):
        return Ask(InputKind.second_approval, "second_approval")
    move = _MOVES[kind].get(status)
    if move is None:
        raise InvalidInput(f"no next move for a {kind.value} in state '{status}'")
    return move

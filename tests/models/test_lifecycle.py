"""The case lifecycles, as a specification: every legal move, and every illegal one refused."""

from __future__ import annotations

import itertools

import pytest

from models.enums import CaseKind
from models.errors import IllegalTransition, InvalidInput, MissingTransitionData
from models.lifecycle import CLAIM, COMPLAINT, INQUIRY, Lifecycle, first_moves, lifecycle_for

# (from, action, to, data the move needs) -- the whole table, written out as the desk reads it.
CLAIM_MOVES = {
    ("received", "start_review", "under_review", ()),
    ("under_review", "request_documents", "awaiting_documents", ("documents",)),
    ("investigating", "request_documents", "awaiting_documents", ("documents",)),
    ("awaiting_documents", "documents_received", "under_review", ()),
    ("under_review", "start_investigation", "investigating", ()),
    ("under_review", "approve", "approved", ("amount",)),
    ("investigating", "approve", "approved", ("amount",)),
    ("under_review", "approve_partly", "partly_approved", ("amount", "reasons")),
    ("investigating", "approve_partly", "partly_approved", ("amount", "reasons")),
    ("under_review", "reject", "rejected", ("reasons", "clause")),
    ("investigating", "reject", "rejected", ("reasons", "clause")),
    ("approved", "record_payment", "paid", ("amount",)),
    ("partly_approved", "record_payment", "paid", ("amount",)),
    ("paid", "request_feedback", "feedback", ()),
    ("rejected", "request_feedback", "feedback", ()),
    ("feedback", "close", "closed", ()),
    ("paid", "close", "closed", ()),
    ("rejected", "close", "closed", ()),
    ("withdrawn", "close", "closed", ()),
    ("received", "withdraw", "withdrawn", ()),
    ("under_review", "withdraw", "withdrawn", ()),
    ("awaiting_documents", "withdraw", "withdrawn", ()),
    ("investigating", "withdraw", "withdrawn", ()),
    ("closed", "reopen", "reopened", ("reason",)),
    ("reopened", "start_review", "under_review", ()),
}

COMPLAINT_MOVES = {
    ("received", "acknowledge", "acknowledged", ()),
    ("acknowledged", "start_investigation", "investigating", ()),
    ("reopened", "start_investigation", "investigating", ()),
    ("investigating", "start_mediation", "mediation", ()),
    ("mediation", "end_mediation", "investigating", ("reason",)),
    ("investigating", "uphold", "resolved", ("remedy",)),
    ("mediation", "uphold", "resolved", ("remedy",)),
    ("investigating", "partly_uphold", "resolved", ("remedy", "reasons")),
    ("mediation", "partly_uphold", "resolved", ("remedy", "reasons")),
    ("investigating", "not_uphold", "resolved", ("reasons",)),
    ("mediation", "not_uphold", "resolved", ("reasons",)),
    ("resolved", "request_feedback", "feedback", ()),
    ("feedback", "close", "closed", ()),
    ("resolved", "close", "closed", ()),
    ("referred", "close", "closed", ()),
    ("withdrawn", "close", "closed", ()),
    ("acknowledged", "refer_outside", "referred", ("body",)),
    ("investigating", "refer_outside", "referred", ("body",)),
    ("mediation", "refer_outside", "referred", ("body",)),
    ("resolved", "refer_outside", "referred", ("body",)),
    ("feedback", "refer_outside", "referred", ("body",)),
    ("closed", "refer_outside", "referred", ("body",)),
    ("received", "withdraw", "withdrawn", ()),
    ("acknowledged", "withdraw", "withdrawn", ()),
    ("investigating", "withdraw", "withdrawn", ()),
    ("mediation", "withdraw", "withdrawn", ()),
    ("closed", "reopen", "reopened", ("reason",)),
}

INQUIRY_MOVES = {
    ("received", "answer", "answered", ("answer",)),
    ("answered", "follow_up", "received", ()),
    ("answered", "close", "closed", ()),
    ("received", "close_unanswered", "closed", ("reason",)),
}

SPEC = {CaseKind.claim: (CLAIM, CLAIM_MOVES), CaseKind.complaint: (COMPLAINT, COMPLAINT_MOVES),
        CaseKind.inquiry: (INQUIRY, INQUIRY_MOVES)}  # fmt: skip


def _data_for(requires: tuple[str, ...]) -> dict[str, object]:
    return {key: ["claim form"] if key == "documents" else f"some {key}" for key in requires}


def _legal() -> list[object]:
    return [
        pytest.param(kind, move, id=f"{kind.value}:{move[0]}-{move[1]}->{move[2]}")
        for kind, (_, moves) in SPEC.items()
        for move in sorted(moves)
    ]


def _illegal() -> list[object]:
    params = []
    for kind, (lifecycle, moves) in SPEC.items():
        legal = {(m[0], m[1]) for m in moves}
        for state, action in itertools.product(sorted(lifecycle.states), sorted(lifecycle.actions)):
            if (state, action) not in legal:
                params.append(pytest.param(kind, state, action, id=f"{kind.value}:{state}-x-{action}"))
    return params


@pytest.mark.parametrize("kind", list(CaseKind))
def test_the_table_is_exactly_the_specification(kind: CaseKind) -> None:
    lifecycle, moves = SPEC[kind]
    actual = {(t.source, t.action, t.target, t.requires) for t in lifecycle.transitions}
    assert actual == moves


@pytest.mark.parametrize(("kind", "move"), _legal())
def test_every_legal_move_gives_its_state_and_event(kind: CaseKind, move: tuple) -> None:
    source, action, target, requires = move
    new_state, event = lifecycle_for(kind).apply(source, action, actor="li.wei", data=_data_for(requires))
    assert new_state == target
    assert event.type == action
    assert event.actor == "li.wei"
    assert event.data["from"] == source and event.data["to"] == target
    for key in requires:
        assert event.data[key] == _data_for(requires)[key]


@pytest.mark.parametrize(("kind", "state", "action"), _illegal())
def test_every_illegal_move_is_refused_naming_state_and_allowed_moves(kind: CaseKind, state: str, action: str) -> None:
    lifecycle = lifecycle_for(kind)
    with pytest.raises(IllegalTransition) as caught:
        lifecycle.apply(state, action, actor="li.wei", data={"reasons": "x", "amount": "1", "remedy": "x"})
    error = caught.value
    assert (error.state, error.action) == (state, action)
    assert error.allowed == lifecycle.allowed(state)
    assert f"state '{state}'" in str(error)
    for allowed in error.allowed:
        assert allowed in str(error)


@pytest.mark.parametrize(
    ("kind", "state", "action", "data", "missing"),
    [
        pytest.param(CaseKind.claim, "under_review", "reject", {"reasons": "excluded"}, "clause",
                     id="rejection-needs-the-clause"),
        pytest.param(CaseKind.claim, "under_review", "reject", {"clause": "4.2", "reasons": "  "}, "reasons",
                     id="rejection-needs-non-blank-reasons"),
        pytest.param(CaseKind.claim, "under_review", "request_documents", {"documents": []}, "documents",
                     id="document-request-needs-the-complete-list"),
        pytest.param(CaseKind.claim, "investigating", "approve_partly", {"amount": "100"}, "reasons",
                     id="partial-approval-needs-reasons"),
        pytest.param(CaseKind.complaint, "investigating", "uphold", {}, "remedy", id="upheld-needs-remedy"),
        pytest.param(CaseKind.complaint, "closed", "refer_outside", {}, "body", id="referral-names-the-body"),
        pytest.param(CaseKind.inquiry, "received", "answer", {}, "answer", id="answer-needs-the-answer"),
    ],
)  # fmt: skip
def test_moves_that_record_a_decision_need_its_data(
    kind: CaseKind, state: str, action: str, data: dict, missing: str
) -> None:
    with pytest.raises(MissingTransitionData, match=missing):
        lifecycle_for(kind).apply(state, action, actor="li.wei", data=data)


@pytest.mark.parametrize(
    ("action", "data", "outcome"),
    [("approve", {"amount": "100"}, "approved"),
     ("approve_partly", {"amount": "50", "reasons": "deductible"}, "partly_approved"),
     ("reject", {"reasons": "excluded", "clause": "4.2"}, "rejected")],
)  # fmt: skip
def test_a_claim_decision_records_its_outcome(action: str, data: dict, outcome: str) -> None:
    _, event = CLAIM.apply("under_review", action, actor="li.wei", data=data)
    assert event.data["outcome"] == outcome


def test_a_complaint_outcome_is_recorded_on_resolution() -> None:
    state, event = COMPLAINT.apply("mediation", "not_uphold", actor="qa", data={"reasons": "terms clear"})
    assert state == "resolved"
    assert event.data["outcome"] == "not_upheld"


def test_documents_arriving_send_the_claim_back_to_review() -> None:
    state, _ = CLAIM.apply("under_review", "request_documents", actor="a", data={"documents": ["invoice"]})
    state, _ = CLAIM.apply(state, "documents_received", actor="customer")
    assert state == "under_review"


def test_a_rejected_claim_cannot_be_paid() -> None:
    with pytest.raises(IllegalTransition, match="allowed from 'rejected': request_feedback, close"):
        CLAIM.apply("rejected", "record_payment", actor="a", data={"amount": "1"})


def test_unknown_state_names_the_known_states() -> None:
    with pytest.raises(InvalidInput, match="unknown claim state 'lost'; known states: approved"):
        CLAIM.apply("lost", "close", actor="a")


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown case kind 'claims'"):
        lifecycle_for("claims")


def test_an_actor_is_required() -> None:
    with pytest.raises(InvalidInput, match="actor"):
        CLAIM.apply("received", "start_review", actor=" ")


def test_closed_is_the_only_closed_state_and_it_can_be_reopened() -> None:
    for lifecycle in (CLAIM, COMPLAINT, INQUIRY):
        assert lifecycle.closed == {"closed"}
        assert lifecycle.initial == "received"
    assert CLAIM.allowed("closed") == ("reopen",)


def test_a_duplicate_move_in_a_table_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="duplicate move"):
        Lifecycle(CaseKind.inquiry, initial="a", closed=("b",), moves=(("a", "go", "b"), ("a", "go", "c")))


def test_event_data_keeps_what_was_given_alongside_from_and_to() -> None:
    _, event = INQUIRY.apply("received", "answer", actor="li.wei", data={"answer": "Yes, covered."})
    assert event.data == {"from": "received", "to": "answered", "answer": "Yes, covered."}


@pytest.mark.parametrize("kind", list(CaseKind))
def test_a_case_s_own_first_moves_are_legal_from_every_state_and_end_where_a_person_acts(kind: CaseKind) -> None:
    lifecycle = lifecycle_for(kind)
    for state in sorted(lifecycle.states):
        status = state
        for action in first_moves(kind, state):
            status, _ = lifecycle.apply(status, action, actor="system")  # IllegalTransition would fail it
        assert first_moves(kind, status) == []  # nothing left to do by itself
    expected = {CaseKind.claim: ["start_review"], CaseKind.complaint: ["acknowledge", "start_investigation"],
                CaseKind.inquiry: []}  # fmt: skip
    assert first_moves(kind, lifecycle.initial) == expected[kind]

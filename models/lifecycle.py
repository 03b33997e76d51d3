"""Case lifecycles as explicit transition tables: pure code, no database, no clock.

A lifecycle is a list of moves ``(from state, action, to state, data the move requires)``. ``apply`` checks a
move and returns the new state with the event to record; the database layer (``tasks.cases``) persists both
in one transaction. Nothing else changes a case's status.

Claim::

    received -> under_review <-> awaiting_documents
    under_review -> investigating -> awaiting_documents (back to under_review when they arrive)
    under_review | investigating -> approved | partly_approved | rejected
    approved | partly_approved -> paid -> feedback -> closed;  rejected -> feedback | closed
    before a decision: -> withdrawn -> closed;  closed -> reopened -> under_review

Complaint::

    received -> acknowledged -> investigating <-> mediation -> resolved -> feedback -> closed
    resolved by uphold | partly_uphold | not_uphold (remedy or reasons required)
    acknowledged .. closed -> referred (to an outside body) -> closed;  -> withdrawn -> closed
    closed -> reopened -> investigating

Inquiry::

    received -> answered -> closed;  received -> closed (with a reason);  answered -> received (follow-up)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.enums import CaseKind
from models.errors import IllegalTransition, InvalidInput, MissingTransitionData


@dataclass(frozen=True)
class Transition:
    """One allowed move."""

    source: str
    action: str
    target: str
    requires: tuple[str, ...] = ()
    outcome: str | None = None


@dataclass(frozen=True)
class LifecycleEvent:
    """The event a transition produces, ready to be appended to the case's audit log."""

    type: str
    actor: str
    data: dict[str, Any] = field(default_factory=dict)


class Lifecycle:
    """A state machine given as a table of moves.

    Args:
        kind: the case kind it governs (used in error messages).
        initial: the state a new case starts in.
        closed: states in which the case counts as closed (``closed_at`` is set on entry).
        moves: ``(source, action, target)`` or ``(source, action, target, requires)`` or a ``Transition``;
            ``requires`` names data keys that must be given and non-empty. A source may be a tuple of states.
    """

    def __init__(
        self,
        kind: CaseKind,
        *,
        initial: str,
        closed: tuple[str, ...],
        moves: tuple[Any, ...],
        outcomes: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.initial = initial
        self.closed = frozenset(closed)
        self._moves: dict[tuple[str, str], Transition] = {}
        outcomes = outcomes or {}
        for move in moves:
            sources, action, target, *rest = move
            requires = tuple(rest[0]) if rest else ()
            for source in (sources,) if isinstance(sources, str) else sources:
                key = (source, action)
                if key in self._moves:
                    raise ValueError(f"duplicate move {key} in the {kind} lifecycle")
                self._moves[key] = Transition(source, action, target, requires, outcomes.get(action))
        self.states = frozenset({initial} | {s for s, _ in self._moves} | {t.target for t in self._moves.values()})
        self.actions = frozenset(a for _, a in self._moves)

    @property
    def transitions(self) -> tuple[Transition, ...]:
        return tuple(self._moves.values())

    def allowed(self, state: str) -> tuple[str, ...]:
        """The actions allowed from ``state``, in table order."""
        self._check_state(state)
        return tuple(action for (source, action) in self._moves if source == state)

    def transition(self, state: str, action: str) -> Transition:
        """The move for ``action`` from ``state``; raises ``IllegalTransition`` naming the allowed moves."""
        self._check_state(state)
        move = self._moves.get((state, action))
        if move is None:
            raise IllegalTransition(kind=self.kind.value, state=state, action=action, allowed=self.allowed(state))
        return move

    def apply(
        self, state: str, action: str, *, actor: str, data: Mapping[str, Any] | None = None
    ) -> tuple[str, LifecycleEvent]:
        """Apply ``action`` to a case in ``state``.

        Args:
            state: the case's current state.
            action: the move asked for (``start_review``, ``reject`` ...).
            actor: who asks (staff username, ``system`` or ``customer``).
            data: what the move records; keys the move requires must be present and non-empty.

        Returns:
            The new state and the event to record (type = action; data holds ``from``, ``to``, the outcome
            if the move decides one, and the given data).

        Raises:
            InvalidInput: ``state`` is not a state of this lifecycle.
            IllegalTransition: the move is not allowed from ``state``.
            MissingTransitionData: a required piece of data is missing or empty.
        """
        move = self.transition(state, action)
        given = dict(data or {})
        missing = [key for key in move.requires if _is_blank(given.get(key))]
        if missing:
            raise MissingTransitionData(f"{self.kind.value} '{action}' needs {', '.join(missing)} (none given)")
        if not actor or not actor.strip():
            raise InvalidInput("every transition needs an actor")
        event_data: dict[str, Any] = {"from": state, "to": move.target, **given}
        if move.outcome is not None:
            event_data["outcome"] = move.outcome
        return move.target, LifecycleEvent(type=action, actor=actor, data=event_data)

    def is_closed(self, state: str) -> bool:
        return state in self.closed

    def _check_state(self, state: str) -> None:
        if state not in self.states:
            known = ", ".join(sorted(self.states))
            raise InvalidInput(f"unknown {self.kind.value} state '{state}'; known states: {known}")


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str | list | tuple | dict | set):
        return len(value) == 0 or (isinstance(value, str) and not value.strip())
    return False


_CLAIM_OPEN = ("received", "under_review", "awaiting_documents", "investigating")

CLAIM = Lifecycle(
    CaseKind.claim,
    initial="received",
    closed=("closed",),
    moves=(
        ("received", "start_review", "under_review"),
        (("under_review", "investigating"), "request_documents", "awaiting_documents", ("documents",)),
        ("awaiting_documents", "documents_received", "under_review"),
        ("under_review", "start_investigation", "investigating"),
        (("under_review", "investigating"), "approve", "approved", ("amount",)),
        (("under_review", "investigating"), "approve_partly", "partly_approved", ("amount", "reasons")),
        (("under_review", "investigating"), "reject", "rejected", ("reasons", "clause")),
        (("approved", "partly_approved"), "record_payment", "paid", ("amount",)),
        (("paid", "rejected"), "request_feedback", "feedback"),
        (("feedback", "paid", "rejected", "withdrawn"), "close", "closed"),
        (_CLAIM_OPEN, "withdraw", "withdrawn"),
        ("closed", "reopen", "reopened", ("reason",)),
        ("reopened", "start_review", "under_review"),
    ),
    outcomes={"approve": "approved", "approve_partly": "partly_approved", "reject": "rejected"},
)

_COMPLAINT_RESOLVABLE = ("investigating", "mediation")

COMPLAINT = Lifecycle(
    CaseKind.complaint,
    initial="received",
    closed=("closed",),
    moves=(
        ("received", "acknowledge", "acknowledged"),
        (("acknowledged", "reopened"), "start_investigation", "investigating"),
        ("investigating", "start_mediation", "mediation"),
        ("mediation", "end_mediation", "investigating", ("reason",)),
        (_COMPLAINT_RESOLVABLE, "uphold", "resolved", ("remedy",)),
        (_COMPLAINT_RESOLVABLE, "partly_uphold", "resolved", ("remedy", "reasons")),
        (_COMPLAINT_RESOLVABLE, "not_uphold", "resolved", ("reasons",)),
        ("resolved", "request_feedback", "feedback"),
        (("feedback", "resolved", "referred", "withdrawn"), "close", "closed"),
        (
            ("acknowledged", "investigating", "mediation", "resolved", "feedback", "closed"),
            "refer_outside",
            "referred",
            ("body",),
        ),
        (("received", "acknowledged", "investigating", "mediation"), "withdraw", "withdrawn"),
        ("closed", "reopen", "reopened", ("reason",)),
    ),
    outcomes={"uphold": "upheld", "partly_uphold": "partly_upheld", "not_uphold": "not_upheld"},
)

INQUIRY = Lifecycle(
    CaseKind.inquiry,
    initial="received",
    closed=("closed",),
    moves=(
        ("received", "answer", "answered", ("answer",)),
        ("answered", "follow_up", "received"),
        ("answered", "close", "closed"),
        ("received", "close_unanswered", "closed", ("reason",)),
    ),
)

LIFECYCLES: dict[CaseKind, Lifecycle] = {
    CaseKind.claim: CLAIM,
    CaseKind.complaint: COMPLAINT,
    CaseKind.inquiry: INQUIRY,
}


def lifecycle_for(kind: CaseKind | str) -> Lifecycle:
    """The lifecycle of a case kind; an unknown kind is an ``InvalidInput``."""
    try:
        return LIFECYCLES[CaseKind(kind)]
    except ValueError:
        known = ", ".join(k.value for k in CaseKind)
        raise InvalidInput(f"unknown case kind '{kind}'; known kinds: {known}") from None


def first_moves(kind: CaseKind | str, status: str) -> list[str]:
    """The lifecycle moves a case makes by itself from ``status`` before a person's first step: a claim goes to
    review; a complaint is acknowledged, then investigated."""
    if kind == CaseKind.claim:
        return ["start_review"] if status in ("received", "reopened") else []
    if kind == CaseKind.complaint:
        moves = ["acknowledge"] if status == "received" else []
        if status in ("received", "acknowledged", "reopened"):
            moves.append("start_investigation")
        return moves
    return []

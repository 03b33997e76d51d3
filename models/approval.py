"""Who may decide what: roles and the four-eyes rule, pure.

- A handler decides their own case's review and decision (below the second-approval threshold).
- A supervisor (or manager) decides escalations, extensions and second approvals; a level-2 escalation needs a
  manager.
- The approver is never the requester and never the case's handler, whatever their role.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from models.enums import StaffRole
from models.errors import ClaimflowError, InvalidInput


class NotAllowed(ClaimflowError):
    """A person tried a decision their role or the four-eyes rule does not allow."""

    exit_code = 6


class DecisionKind(StrEnum):
    review = "review"  # the handler's review outcome and the decision on the claim or complaint
    second_approval = "second_approval"  # a high amount, approved by someone else
    escalation = "escalation"  # a breached step: extend, reassign or take over
    documents = "documents"  # documents received, recorded by staff


ROLES_FOR: dict[DecisionKind, frozenset[StaffRole]] = {
    DecisionKind.review: frozenset({StaffRole.handler, StaffRole.supervisor, StaffRole.manager}),
    DecisionKind.documents: frozenset({StaffRole.handler, StaffRole.supervisor, StaffRole.manager}),
    DecisionKind.second_approval: frozenset({StaffRole.supervisor, StaffRole.manager}),
    DecisionKind.escalation: frozenset({StaffRole.supervisor, StaffRole.manager}),
}


@dataclass(frozen=True)
class Decider:
    staff_id: int
    username: str
    role: StaffRole | str
    active: bool = True


def check_decider(
    decider: Decider,
    *,
    kind: DecisionKind,
    handler_id: int | None,
    assignee_id: int | None = None,
    requester_id: int | None = None,
    level: int = 1,
) -> None:
    """Raise ``NotAllowed`` unless ``decider`` may take this decision.

    Args:
        decider: who gives the decision.
        kind: what is decided.
        handler_id: the case's handler.
        assignee_id: the step's assignee (for a review: a handler may decide only what is assigned to them; for an
            escalation: whoever holds the breached step may not decide it, whatever their role).
        requester_id: who asked for the approval (four eyes: never the same person).
        level: the escalation level (2 and above need a manager).
    """
    role = StaffRole(decider.role)
    if not decider.active:
        raise NotAllowed(f"{decider.username} is not an active member of staff")
    allowed = ROLES_FOR[kind]
    if kind == DecisionKind.escalation and level >= 2:
        allowed = frozenset({StaffRole.manager})
    if role not in allowed:
        names = " or ".join(sorted(r.value for r in allowed))
        raise NotAllowed(f"{decider.username} is a {role.value}; this {kind.value} decision needs a {names}")
    if kind in (DecisionKind.second_approval, DecisionKind.escalation):
        if decider.staff_id == handler_id:
            raise NotAllowed(f"{decider.username} handles this case and cannot approve its own work (four eyes)")
        if kind == DecisionKind.escalation and decider.staff_id == assignee_id:
            raise NotAllowed(f"{decider.username} holds the breached step and cannot decide its escalation (four eyes)")
        if decider.staff_id == requester_id:
            raise NotAllowed(f"{decider.username} asked for this approval and cannot give it (four eyes)")
    if (
        kind in (DecisionKind.review, DecisionKind.documents)
        and role == StaffRole.handler
        and decider.staff_id not in {assignee_id, handler_id}
    ):
        raise NotAllowed(f"{decider.username} is not the handler of this case")


def check_payment(amount: Decimal, *, approved: Decimal | None, advanced: Decimal = Decimal(0)) -> None:
    """A payment records what was approved: the amount approved (after a second approval where one was needed),
    less what was paid in advance (PRC Insurance Law art. 25: the difference), no more and no less (the customer
    is told this sum was paid).

    Args:
        amount: the amount the payment form gives.
        approved: the amount of the claim's approval on record (None: no approval).
        advanced: the advance payments recorded on the claim.

    Raises:
        InvalidInput: no approval on record, or an amount other than the one still owed.
    """
    if approved is None:
        raise InvalidInput("there is no approved amount on record: a payment follows an approval")
    owed = approved - advanced
    if amount != owed:
        if advanced:
            raise InvalidInput(f"amount: {amount} is not the {owed} still owed ({approved} approved, {advanced} "
                               "paid in advance); a payment records the difference")  # fmt: skip
        raise InvalidInput(f"amount: {amount} is not the {approved} approved; a payment records the approved amount")


ROLE_WORDS: dict[str, dict[str, str]] = {
    "en": {"handler": "handler", "supervisor": "supervisor", "manager": "manager", "or": " or ",
           "the_handler": "{} (the handler)", "who_asked": "{} (who asked)", "a": "a {}", "nor": " nor ",
           "either": "{}, or a {}", "not": ", not {}"},
    "zh-CN": {"handler": "经办人", "supervisor": "主管", "manager": "经理", "or": "或",
              "the_handler": "{}（经办人）", "who_asked": "{}（申请人）", "a": "{}", "nor": "、",
              "either": "{}，或{}", "not": "，但不能是{}"},
}  # fmt: skip


def who_may_decide(
    kind: DecisionKind, *, handler: str | None, requester: str | None = None, level: int = 1, language: str = "en"
) -> str:
    """Who may give a decision, in words, for the people reading the form or the case's page; the rule itself
    is ``check_decider``.

    Args:
        kind: what is decided.
        handler: the case's handler (username), if any.
        requester: who asked for the approval (username), if any.
        level: the escalation level.
        language: ``en`` or ``zh-CN``.

    Returns:
        For instance ``li.wei (the handler), or a manager or supervisor`` or ``a manager or supervisor, not
        li.wei (the handler) nor zhao.min (who asked)``.
    """
    w = ROLE_WORDS.get(language, ROLE_WORDS["en"])
    allowed = ROLES_FOR[kind]
    if kind == DecisionKind.escalation and level >= 2:
        allowed = frozenset({StaffRole.manager})
    others = w["or"].join(w[r.value] for r in sorted(allowed, key=lambda r: r.value) if r != StaffRole.handler)
    if kind in (DecisionKind.review, DecisionKind.documents):
        return (
            w["either"].format(w["the_handler"].format(handler), others)
            if handler
            else w["a"].format(w["handler"] + w["or"] + others)
        )
    excluded = [w["the_handler"].format(handler) if handler else "", w["who_asked"].format(requester) if requester
                else ""]  # fmt: skip
    excluded = [e for e in excluded if e]
    return w["a"].format(others) + (w["not"].format(w["nor"].join(excluded)) if excluded else "")

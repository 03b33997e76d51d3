"""Who may decide: roles, and four eyes (never the handler, never the requester)."""

from __future__ import annotations

import pytest

from models.approval import Decider, DecisionKind, NotAllowed, check_decider
from models.enums import StaffRole

HANDLER = Decider(1, "li.wei", StaffRole.handler)
OTHER_HANDLER = Decider(2, "wang.fang", StaffRole.handler)
SUPERVISOR = Decider(5, "zhao.min", StaffRole.supervisor)
MANAGER = Decider(7, "zhou.qiang", StaffRole.manager)


@pytest.mark.parametrize(
    ("decider", "kind", "kwargs"),
    [
        pytest.param(HANDLER, DecisionKind.review, {"handler_id": 1, "assignee_id": 1}, id="handler-reviews-own-case"),
        pytest.param(SUPERVISOR, DecisionKind.review, {"handler_id": 1}, id="supervisor-may-review"),
        pytest.param(SUPERVISOR, DecisionKind.second_approval, {"handler_id": 1, "requester_id": 1}, id="supervisor-second-approval"),
        pytest.param(SUPERVISOR, DecisionKind.escalation, {"handler_id": 1}, id="supervisor-level-1"),
        pytest.param(MANAGER, DecisionKind.escalation, {"handler_id": 1, "level": 2}, id="manager-level-2"),
    ],
)  # fmt: skip
def test_allowed(decider, kind, kwargs) -> None:
    check_decider(decider, kind=kind, **kwargs)


@pytest.mark.parametrize(
    ("decider", "kind", "kwargs", "message"),
    [
        pytest.param(OTHER_HANDLER, DecisionKind.review, {"handler_id": 1, "assignee_id": 1},
                     "wang.fang is not the handler of this case", id="another-handlers-case"),
        pytest.param(HANDLER, DecisionKind.second_approval, {"handler_id": 9},
                     "li.wei is a handler; this second_approval decision needs a manager or supervisor", id="handler-cannot-approve"),
        pytest.param(Decider(5, "zhao.min", StaffRole.supervisor), DecisionKind.escalation, {"handler_id": 5},
                     "handles this case and cannot approve its own work", id="supervisor-who-handles-the-case"),
        pytest.param(SUPERVISOR, DecisionKind.second_approval, {"handler_id": 1, "requester_id": 5},
                     "asked for this approval and cannot give it", id="requester-cannot-approve"),
        pytest.param(SUPERVISOR, DecisionKind.escalation, {"handler_id": 1, "level": 2},
                     "needs a manager", id="level-2-needs-a-manager"),
        pytest.param(Decider(5, "zhao.min", StaffRole.supervisor, active=False), DecisionKind.escalation, {"handler_id": 1},
                     "not an active member of staff", id="inactive-staff"),
    ],
)  # fmt: skip
def test_refused(decider, kind, kwargs, message) -> None:
    with pytest.raises(NotAllowed, match=message):
        check_decider(decider, kind=kind, **kwargs)


def test_a_payment_records_the_approved_amount_and_nothing_else() -> None:
    from decimal import Decimal

    from models.approval import check_payment
    from models.errors import InvalidInput

    check_payment(Decimal("49000.00"), approved=Decimal("49000.00"))
    with pytest.raises(InvalidInput, match=r"4900000\.00 is not the 49000\.00 approved"):
        check_payment(Decimal("4900000.00"), approved=Decimal("49000.00"))
    with pytest.raises(InvalidInput, match=r"100\.00 is not the 49000\.00 approved"):
        check_payment(Decimal("100.00"), approved=Decimal("49000.00"))
    with pytest.raises(InvalidInput, match="no approved amount on record"):
        check_payment(Decimal("1.00"), approved=None)


def test_who_may_decide_says_the_rule_in_words() -> None:
    from models.approval import who_may_decide

    assert who_may_decide(DecisionKind.review, handler="li.wei") == "li.wei (the handler), or a manager or supervisor"
    assert who_may_decide(DecisionKind.second_approval, handler="li.wei", requester="zhao.min") == (
        "a manager or supervisor, not li.wei (the handler) nor zhao.min (who asked)"
    )
    assert who_may_decide(DecisionKind.escalation, handler="li.wei", level=2) == "a manager, not li.wei (the handler)"


def test_who_may_decide_in_chinese() -> None:
    from models.approval import who_may_decide

    assert who_may_decide(DecisionKind.review, handler="li.wei", language="zh-CN") == "li.wei（经办人），或经理或主管"
    assert who_may_decide(DecisionKind.second_approval, handler="li.wei", requester="zhao.min", language="zh-CN") == (
        "经理或主管，但不能是li.wei（经办人）、zhao.min（申请人）"
    )


def test_a_supervisor_who_holds_the_breached_step_cannot_decide_its_escalation() -> None:
    """A supervisor assigned a follow-up or complaint-review step (the case's handler is someone else) cannot
    extend or take over the escalation of their own breach."""
    supervisor = Decider(7, "zhao.min", StaffRole.supervisor)
    with pytest.raises(NotAllowed, match="holds the breached step"):
        check_decider(supervisor, kind=DecisionKind.escalation, handler_id=3, assignee_id=7)
    check_decider(supervisor, kind=DecisionKind.escalation, handler_id=3, assignee_id=4)  # someone else's breach

"""Extending a step before its deadline passes: who may, under which rule, and what the customer is told."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from models.approval import NotAllowed
from models.enums import CaseKind
from models.errors import InvalidInput
from models.otp import code_at
from models.tables import Approval, Case, Outbox, Staff
from tasks.extensions import extend_step, extension_rules
from tests.conftest import session_scope


def _extend(world, who: str, case, **options):
    world.now += timedelta(minutes=5)  # each code once
    with session_scope(world.engine) as session:
        return extend_step(session, world.desk, number=case.number, by=who, code=code_at(world.secrets[who], world.now),
                           now=world.now, **options)  # fmt: skip


def _handler(world, case) -> str:
    with Session(world.engine) as session:
        return session.get(Staff, world.case(case).handler_id).username


def test_a_supervisor_extends_a_claim_review_before_its_deadline_and_the_customer_is_told_at_once(world) -> None:
    case = world.file(product_line="motor")
    handler, due = _handler(world, case), world.step(case, "review").due_at
    # the house rule is approved by a supervisor: the handler asks, and cannot approve it themselves
    with pytest.raises(NotAllowed, match="ask a supervisor"):
        _extend(world, handler, case, reason="The assessor's report is due on Monday")
    done = _extend(world, "zhao.min", case, reason="The assessor's report is due on Monday")
    review = world.step(case, "review")
    assert (done.extension, done.previous_due, done.due) == ("supervisor-extension", due, review.due_at)
    assert review.due_at > due and review.extensions == ["supervisor-extension"]
    assert review.next_check_at is not None and review.escalation_level == 0  # reminders afresh from the new date
    assert "step_extended" in world.events(case)
    with Session(world.engine) as session:
        notice = session.exec(select(Outbox).where(Outbox.template == "extension_notice")).one()
        approval = session.exec(select(Approval).where(Approval.subject == "extension")).one()
        assert session.get(Staff, approval.requested_by_id).username == handler
        assert session.get(Staff, approval.approver_id).username == "zhao.min"
    assert notice.recipient.startswith("customer:") and notice.case_id == case.id
    assert world.now < due  # told before the old date passed


def test_an_extension_is_refused_past_the_deadline_beyond_the_rule_and_without_a_reason(world) -> None:
    case = world.file(product_line="motor")
    with pytest.raises(InvalidInput, match="states its reason"):
        _extend(world, "zhao.min", case, reason="  ")
    with pytest.raises(InvalidInput, match="the packs allow supervisor-extension"):
        _extend(world, "zhao.min", case, reason="More time", extension="forever")
    _extend(world, "zhao.min", case, reason="Report awaited")
    _extend(world, "zhao.min", case, reason="Report awaited again")  # the house rule allows it twice
    with pytest.raises(InvalidInput, match="may be granted 2 time"):
        _extend(world, "zhao.min", case, reason="And again")
    world.now = world.step(case, "review").due_at + timedelta(minutes=1)
    with pytest.raises(InvalidInput, match="past its deadline"):
        _extend(world, "zhao.min", case, reason="Too late")
    assert world.step(case, "review").extensions == ["supervisor-extension"] * 2  # refusals changed nothing


def test_only_the_cases_holder_or_a_supervisor_may_and_a_step_without_a_rule_says_so(world) -> None:
    case = world.file(product_line="motor")
    with pytest.raises(NotAllowed, match="ask a supervisor"):  # a handler (of another team too) cannot approve
        _extend(world, "liu.yang", case, reason="More time")
    with session_scope(world.engine) as session:  # a manager who holds the case cannot approve its extension
        member = session.exec(select(Staff).where(Staff.username == "zhou.qiang")).one()
        held = session.get(Case, case.id)
        held.handler_id = member.id
        session.add(held)
    with pytest.raises(NotAllowed, match="four eyes"):
        _extend(world, "zhou.qiang", case, reason="More time")
    inquiry = world.file(CaseKind.inquiry)
    assert extension_rules(world.desk, world.case(inquiry), world.step(inquiry, "answer")) == []
    with pytest.raises(InvalidInput, match="no pack in force allows extending step answer"):
        _extend(world, "zhao.min", inquiry, reason="More time")


def test_wrong_codes_given_to_an_action_are_counted_towards_the_lock_out(world) -> None:
    """A refused action rolls back, but not the count of wrong codes: otherwise a six-digit code could be guessed
    through any command or UI action that is not a form's decision."""
    from models.otp import MAX_WRONG_CODES, CodeRefused

    case = world.file(product_line="motor")
    for _ in range(MAX_WRONG_CODES):
        with pytest.raises(CodeRefused), session_scope(world.engine) as session:
            extend_step(session, world.desk, number=case.number, by="zhao.min", code="000000", reason="More time",
                        now=world.now)  # fmt: skip
    with pytest.raises(CodeRefused, match="locked after"):
        _extend(world, "zhao.min", case, reason="More time")  # the right code too, while locked
    assert world.step(case, "review").extensions == []  # nothing else was kept

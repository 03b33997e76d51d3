"""The notices regulators require while a case is undecided, on live cases driven on a fake clock: a US-CA claim
owes written notice at 40 days and every 30 days after; a GB complaint a holding response by eight weeks; an AU
complaint a delay notification by 30 days; each watched like any step and moot once the case is decided."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, col, select

from claimflow.db import session_scope
from models.approval import NotAllowed
from models.enums import CaseKind
from models.errors import InvalidInput
from models.otp import code_at
from models.tables import Event, Outbox, Staff, Step
from tasks.escalations import watch_pass
from tasks.notices import send_progress_notice

LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def _notices(world, case) -> list[Step]:
    with Session(world.engine) as session:
        return list(session.exec(select(Step).where(Step.case_id == case.id, Step.name == "progress_notice")
                                 .order_by(col(Step.id))))  # fmt: skip


def _send(world, case, by: str, *, reasons: str = "We are waiting for the police report", expected: date | None = None):
    world.now += timedelta(minutes=5)  # each code is used once
    with session_scope(world.engine) as session:
        return send_progress_notice(session, world.desk, number=case.number, by=by, reasons=reasons,
                                    code=code_at(world.secrets[by], world.now),
                                    expected=expected or (world.now + timedelta(days=20)).date(), now=world.now)  # fmt: skip


def _steps(world, case) -> list[Step]:
    with Session(world.engine) as session:
        return list(session.exec(select(Step).where(Step.case_id == case.id).order_by(col(Step.id))))


def _handler(world, case) -> str:
    with Session(world.engine) as session:
        return session.get(Staff, world.case(case).handler_id).username


def _letter(world, case) -> Outbox:
    with Session(world.engine) as session:
        return session.exec(select(Outbox).where(Outbox.case_id == case.id, Outbox.template == "progress_notice")
                            .order_by(col(Outbox.id).desc())).first()  # fmt: skip


def _watch(world, at) -> None:
    with session_scope(world.engine) as session:
        watch_pass(session, now=at)


def test_a_california_claim_still_undecided_at_40_days_owes_written_notice_then_every_30_days(world) -> None:
    case = world.file(product_line="motor", jurisdiction="US-CA")
    [first] = _notices(world, case)
    assert first.due_at.astimezone(LOS_ANGELES).date() == date(2026, 4, 11)  # 40 calendar days, Pacific time
    assert first.policy_rule.startswith("us-ca claim.review: 40 calendar days (10 CCR 2695.7(b)")
    handler = _handler(world, case)
    assert first.assignee_id == world.case(case).handler_id
    from tasks.caseview import snapshot

    with Session(world.engine) as session:  # the case's page says how to send it
        view = snapshot(session, case_id=case.id)
    assert f"claimflow case notice {case.number} --by USERNAME" in view.cli_command
    assert any(line.name == "progress_notice" and line.due_at == first.due_at for line in view.steps)

    _watch(world, first.started_at + (first.due_at - first.started_at) * 0.8)  # watched like any step
    _watch(world, first.due_at + timedelta(hours=1))
    with Session(world.engine) as session:
        watched = [(e.type, e.data.get("step")) for e in session.exec(select(Event).where(Event.case_id == case.id))]
    assert ("reminder", "progress_notice") in watched and ("escalated", "progress_notice") in watched

    world.now = first.due_at + timedelta(hours=2)
    with pytest.raises(InvalidInput, match="--reasons"):
        _send(world, case, handler, reasons="  ")
    with pytest.raises(InvalidInput, match="already past"):
        _send(world, case, handler, expected=date(2026, 1, 1))
    with pytest.raises(NotAllowed, match="not the handler"):
        _send(world, case, "wang.fang" if handler != "wang.fang" else "li.wei")
    following = _send(world, case, handler)
    letter = _letter(world, case)
    assert letter.context["reasons"] == "We are waiting for the police report" and letter.status == "pending"
    assert letter.context["jurisdiction"] == "US-CA"
    [sent, again] = _notices(world, case)
    assert (sent.status, sent.outcome) == ("done", "sent") and again.id == following.id and again.status == "open"
    assert again.due_at.astimezone(LOS_ANGELES) == (world.now.astimezone(LOS_ANGELES).replace(tzinfo=None)
                                                     + timedelta(days=30)).replace(tzinfo=LOS_ANGELES)  # fmt: skip
    assert "10 CCR 2695.7(c)(1)" in again.policy_rule and again.escalation_level == 0

    world.decide(case, handler, decision="approve", amount="1200")  # decided: no further notice is owed
    [_, closed] = _notices(world, case)
    assert (closed.status, closed.outcome) == ("done", "not_needed")
    with pytest.raises(InvalidInput, match="owes no progress notice"):
        _send(world, case, handler)


@pytest.mark.parametrize(
    ("jurisdiction", "days", "body"),
    [("GB", 56, "financial-ombudsman.org.uk"), ("AU", 30, "afca.org.au")],
)
def test_a_complaint_owes_its_holding_response_or_delay_notification_with_the_outside_body(
    world, jurisdiction: str, days: int, body: str
) -> None:
    from tasks.outbox import default_config, prepare

    complaint = world.file(CaseKind.complaint, product_line="motor", jurisdiction=jurisdiction)
    [notice] = _notices(world, complaint)
    zone = ZoneInfo({"GB": "Europe/London", "AU": "Australia/Sydney"}[jurisdiction])
    end_of_day = world.now.astimezone(zone).date() + timedelta(days=days + 1)  # the end of the last day, there
    assert notice.due_at.astimezone(zone).replace(tzinfo=None) == datetime.combine(end_of_day, datetime.min.time())
    assert _send(world, complaint, "zhao.min") is None  # a supervisor may send it; one notice, no repeat
    letter = _letter(world, complaint)
    with Session(world.engine) as session:
        from dataclasses import replace

        from pydantic import SecretStr

        config = replace(default_config(), customer_email_url=SecretStr("mailto://desk:pw@127.0.0.1:25"))
        text = prepare(session, letter, config=config).text  # as delivered, the wording check included
    assert "需要更多时间的原因：We are waiting for the police report" in text  # in the customer's language
    assert body in text
    assert [(s.status, s.outcome) for s in _notices(world, complaint)] == [("done", "sent")]


def test_a_complaint_decided_in_time_owes_no_notice_and_a_chinese_claim_never_carries_one(world) -> None:
    complaint = world.file(CaseKind.complaint, product_line="motor", jurisdiction="AU")
    with session_scope(world.engine) as session:
        from tasks.workflow import _move

        stored = world.case(complaint)
        stored = session.merge(stored)
        _move(session, case=stored, action="not_uphold", actor="test", now=world.now, data={"reasons": "no fault"})
    assert [(s.status, s.outcome) for s in _notices(world, complaint)] == [("done", "not_needed")]
    claim = world.file(product_line="motor")  # CN: no notice is owed (an advance payment is: below)
    assert _notices(world, claim) == []


def _advance(world, case, by: str, **given):
    from tasks.notices import record_advance_payment

    world.now += timedelta(minutes=5)
    with session_scope(world.engine) as session:
        record_advance_payment(session, world.desk, number=case.number, by=by, now=world.now,
                               code=code_at(world.secrets[by], world.now), **given)  # fmt: skip


def test_a_chinese_claim_owes_what_is_certain_in_advance_by_day_60_and_the_final_payment_is_the_difference(
    world,
) -> None:
    from decimal import Decimal

    claim = world.file(product_line="motor", amount_claimed=Decimal("12000"))
    [advance] = [s for s in _steps(world, claim) if s.name == "advance_payment"]
    shanghai = ZoneInfo("Asia/Shanghai")
    assert advance.policy_rule.startswith("cn-regulatory claim.advance_payment: 60 calendar days")
    assert advance.due_at.astimezone(shanghai).date() >= world.now.astimezone(shanghai).date() + timedelta(days=60)
    assert advance.escalation_level == 0 and advance.next_check_at is not None  # watched
    from tasks.caseview import snapshot

    with Session(world.engine) as session:  # the case's page says how to record it
        assert f"claimflow case advance {claim.number} --by USERNAME" in snapshot(session, case_id=claim.id).cli_command
    handler = _handler(world, claim)
    with pytest.raises(InvalidInput, match="either --amount"):
        _advance(world, claim, handler)
    with pytest.raises(InvalidInput, match=r"within the 12000\.00 claimed"):
        _advance(world, claim, handler, amount=Decimal("20000"), reference="ADV-1")
    _advance(world, claim, handler, amount=Decimal("3000"), reference="ADV-1", account_hint="6222021234566789")
    assert "advance_paid" in world.events(claim)
    with Session(world.engine) as session:
        letter = session.exec(select(Outbox).where(Outbox.template == "advance_payment")).one()
    assert (letter.context["amount"], letter.context["account_hint"]) == ("3000", "6789")
    assert [(s.status, s.outcome) for s in _steps(world, claim) if s.name == "advance_payment"] == [("done", "paid")]

    below = world.decide(claim, handler, decision="approve", amount="2000")  # less than the advance already paid
    assert not below.applied and "below the 3000.00 already paid in advance" in (below.refused or "")
    world.decide(claim, handler, decision="approve", amount="10000")
    refused = world.decide(claim, handler, amount="10000", reference="PAY-1", account_hint="6789")
    assert not refused.applied
    assert "7000.00 still owed (10000.00 approved, 3000.00 paid in advance)" in (refused.refused or "")
    assert world.decide(claim, handler, amount="7000", reference="PAY-1", account_hint="6789").applied
    assert world.case(claim).status == "paid"


def test_an_advance_nothing_is_certain_for_is_recorded_and_a_decided_claim_owes_none(world) -> None:
    claim = world.file(product_line="motor")
    _advance(world, claim, _handler(world, claim), none_certain="The garage has not quoted yet")
    assert "advance_not_certain" in world.events(claim)
    decided = world.file(product_line="motor")
    world.decide(decided, _handler(world, decided), decision="reject", reasons="Not covered", clause="Clause 4.2")
    assert [(s.status, s.outcome) for s in _steps(world, decided) if s.name == "advance_payment"] == [
        ("done", "not_needed")
    ]
    with pytest.raises(InvalidInput, match="owes no advance payment"):
        _advance(world, decided, _handler(world, decided), none_certain="x")


def test_an_approval_the_advance_already_paid_in_full_owes_no_payment_of_nothing(world) -> None:
    """Approved at exactly what was paid in advance: the claim is settled, not left waiting for a payment of
    0.00 that a handler would have to record."""
    from decimal import Decimal

    claim = world.file(product_line="motor", amount_claimed=Decimal("5000"))
    handler = _handler(world, claim)
    _advance(world, claim, handler, amount=Decimal("3000"), reference="ADV-1")
    assert world.decide(claim, handler, decision="approve", amount="3000").applied
    assert world.case(claim).status == "paid"
    assert "record_payment" in world.events(claim)
    assert "payment" not in [s.name for s in _steps(world, claim)]  # no payment step was opened
    assert world.view(claim).move.__class__.__name__ != "Ask"  # the case moves on to its feedback, asking no one

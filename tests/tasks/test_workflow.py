"""The workflow in the database: intake, steps and clocks, people's decisions with codes and roles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, col, select

from claimflow.db import session_scope
from models.enums import CaseKind, Channel, StepStatus
from models.otp import code_at
from models.plan import Ask, Auto, Finished, InputKind
from models.tables import Approval, Case, CustomerCreate, DocumentRequirement, Outbox, Staff, Step
from tasks.workflow import decide, route_deferred


def test_intake_routes_opens_the_review_with_its_deadline_and_acknowledges(world) -> None:
    case = world.file(product_line="motor", amount_claimed=Decimal("8000"))
    stored = world.case(case)
    assert stored.status == "under_review"
    review = world.step(case, "review")
    assert review.status == StepStatus.open
    # 3 working days after Monday 2 March 2026: end of Thursday 5 March (Shanghai) = 16:00 UTC
    assert review.due_at == datetime(2026, 3, 5, 16, 0, tzinfo=UTC)
    assert "service-standard claim.review: 3 working days" in review.policy_rule
    assert review.next_check_at == datetime(2026, 3, 3, 16, 0, tzinfo=UTC) + timedelta(hours=12)  # the 50% reminder
    # the review, and (CN) the advance payment the law requires by day 60 while the amount is not fixed
    assert world.events(case) == ["filed", "assigned", "start_review", "step_opened", "step_opened"]
    assert world.step(case, "advance_payment").assignee_id == stored.handler_id
    assert world.outbox() == ["staff_new_assignment", "acknowledgement_claim"]
    with Session(world.engine) as session:
        handler = session.get(Staff, stored.handler_id)
    assert handler.username in ("li.wei", "wang.fang")  # the motor handlers


def test_a_claim_from_review_to_closure_with_documents_and_payment(world) -> None:
    case = world.file(product_line="motor", amount_claimed=Decimal("8000"))
    handler = world.case(case).handler_id
    with Session(world.engine) as session:
        who = session.get(Staff, handler).username
    assert world.view(case).move == Ask(InputKind.claim_review, "review")

    result = world.decide(case, who, decision="request_documents")
    assert result.applied
    assert world.case(case).status == "awaiting_documents"
    review = world.step(case, "review")
    assert review.status == StepStatus.paused and review.next_check_at is None
    assert world.view(case).move == Ask(InputKind.documents, "review")
    with Session(world.engine) as session:
        asked = [
            d.document_type for d in session.exec(select(DocumentRequirement).order_by(col(DocumentRequirement.id)))
        ]
    assert "repair invoice" in asked and "driving licence" in asked  # the full motor list, asked once

    world.now += timedelta(days=7)
    assert world.decide(case, who, documents=["repair invoice"]).applied
    review = world.step(case, "review")
    assert review.status == StepStatus.open
    assert review.due_at > datetime(2026, 3, 5, 16, 0, tzinfo=UTC)  # the clock stood still while they were owed
    assert world.case(case).status == "under_review"

    assert world.decide(case, who, decision="approve", amount="7800").applied
    assert world.case(case).status == "approved"
    assert world.view(case).move == Ask(InputKind.payment, "payment")
    # a payment of another sum than the one approved is refused: the customer would be told it was paid
    refused = world.decide(case, who, amount="780000", reference="PAY-1", account_hint="6789")
    assert refused.refused == "amount: 780000.00 is not the 7800.00 approved; a payment records the approved amount"
    assert world.case(case).status == "approved" and "payment_made" not in world.outbox()
    assert world.decide(case, who, amount="7800", reference="PAY-1", account_hint="6789").applied
    assert world.view(case).move == Auto("finish")
    world.advance(case, "finish")
    assert world.case(case).status == "closed"
    assert world.view(case).move == Finished()
    assert world.events(case)[-5:] == [
        "record_payment",
        "step_completed",
        "request_feedback",
        "survey_invited",
        "close",
    ]
    assert {"missing_documents", "decision", "payment_made"} <= set(world.outbox())


def test_a_wrong_code_is_refused_recorded_and_asked_again_under_a_new_key(world) -> None:
    case = world.file(product_line="motor")
    with Session(world.engine) as session:
        who = session.get(Staff, world.case(case).handler_id).username
    first_key = world.view(case).waiting_key
    refused = world.decide(case, who, decision="reject", reasons="excluded", clause="4.2", code="000000")
    assert not refused.applied and "wrong or has expired" in refused.refused
    second_key = world.view(case).waiting_key
    assert second_key != first_key and second_key.endswith("-2")
    assert "**上一次提交被拒绝** (" in world.view(case).description  # the form says why, the second time
    assert "wrong or has expired" in world.view(case).description
    assert world.events(case)[-1] == "decision_refused"
    assert world.case(case).status == "under_review"
    # another handler may not decide this case; a rejection without a clause is refused
    other = "wang.fang" if who == "li.wei" else "li.wei"
    assert "is not the handler of this case" in world.decide(case, other, decision="approve", amount="1").refused
    assert "reasons and the clause" in world.decide(case, who, decision="reject", reasons="excluded").refused
    assert world.decide(case, who, decision="reject", reasons="Racing is excluded", clause="4.2").applied
    assert world.case(case).status == "rejected"


def test_a_replayed_answer_under_an_old_key_changes_nothing(world) -> None:
    case = world.file(product_line="motor")
    with Session(world.engine) as session:
        who = session.get(Staff, world.case(case).handler_id).username
    key = world.view(case).waiting_key
    assert world.decide(case, who, decision="investigate").applied
    world.now += timedelta(minutes=5)
    with session_scope(world.engine) as session:
        again = decide(
            session,
            world.desk,
            case_id=case.id,
            key=key,
            answer={"staff": who, "approval_code": code_at(world.secrets[who], world.now), "decision": "investigate"},
            now=world.now,
        )
    assert again.stale and not again.applied
    assert world.events(case).count("start_investigation") == 1


def test_a_high_amount_needs_a_second_approver_who_is_not_the_handler(world) -> None:
    case = world.file(product_line="motor", amount_claimed=Decimal("90000"))
    with Session(world.engine) as session:
        who = session.get(Staff, world.case(case).handler_id).username
    assert world.decide(case, who, decision="approve", amount="90000").applied
    assert world.case(case).status == "under_review"
    assert world.view(case).move == Ask(InputKind.second_approval, "second_approval")
    assert "needs a manager or supervisor" in world.decide(case, who, decision="approve").refused
    assert world.decide(case, "zhao.min", decision="approve", comment="checked the invoices").applied
    assert world.case(case).status == "approved"
    with Session(world.engine) as session:
        approval = session.exec(select(Approval)).one()
        approver = session.get(Staff, approval.approver_id).username
    assert (approval.decision, approver, approval.amount) == ("approved", "zhao.min", Decimal("90000.00"))


def test_a_complaint_about_a_claim_goes_to_the_independent_team(world) -> None:
    claim = world.file(product_line="motor")
    complaint = world.file(CaseKind.complaint, product_line="motor", related_case_number=claim.number)
    stored, about = world.case(complaint), world.case(claim)
    with Session(world.engine) as session:
        handler = session.get(Staff, stored.handler_id)
        claim_handler = session.get(Staff, about.handler_id)
    assert handler.username == "chen.jing"
    assert handler.id != claim_handler.id and handler.department_id != claim_handler.department_id
    assert stored.status == "investigating"
    resolution = world.step(complaint, "resolution")
    assert resolution.due_at is not None and "complaint.resolution" in resolution.policy_rule
    assert world.decide(
        complaint,
        "chen.jing",
        decision="partly_uphold",
        remedy="Interest for the delay",
        reasons="The review took longer than promised",
    ).applied
    world.advance(complaint, "finish")
    assert world.case(complaint).status == "closed"
    assert "complaint_outcome" in world.outbox()


def test_an_inquiry_is_answered_within_its_channel_limit(world) -> None:
    inquiry = world.file(CaseKind.inquiry, channel=Channel.phone, product_line="health")
    answer = world.step(inquiry, "answer")
    assert answer.due_at == datetime(2026, 3, 2, 1, 30, tzinfo=UTC) + timedelta(hours=24)
    with Session(world.engine) as session:
        who = session.get(Staff, world.case(inquiry).handler_id).username
    # what the customer would be told is held to the wording rules: the handler rewrites it, nothing is sent
    dishonest = world.decide(inquiry, who, answer="Our health plan is risk-free and always pays.")
    assert dishonest.refused.startswith("answer: the wording check held it back: no-promised-returns")
    assert "no-exaggeration" in dishonest.refused
    assert world.decide(inquiry, who, answer="   ").refused == "answer: the answer the customer is sent is empty"
    assert world.step(inquiry, "answer").status == StepStatus.open and "inquiry_answer" not in world.outbox()
    with Session(world.engine) as session:
        assert not session.exec(select(Step).where(Step.name == "fix_wording")).all()
    assert world.decide(inquiry, who, answer="Physiotherapy is covered up to 20 sessions.").applied
    world.advance(inquiry, "finish")
    assert world.case(inquiry).status == "closed"
    with Session(world.engine) as session:
        [sent] = session.exec(select(Outbox).where(Outbox.template == "inquiry_answer")).all()
    assert sent.recipient == f"customer:{world.case(inquiry).customer_id}"
    assert sent.context["answer"] == "Physiotherapy is covered up to 20 sessions."
    assert sent.language == "zh-CN"  # the customer's (a Chinese name, the desk's default)


def test_an_elderly_customer_gets_the_simplified_list(world) -> None:
    case = world.file(product_line="motor", customer=CustomerCreate(name="王奶奶", phone="13800000000", elderly=True))
    with Session(world.engine) as session:
        who = session.get(Staff, world.case(case).handler_id).username
    world.decide(case, who, decision="request_documents")
    with Session(world.engine) as session:
        asked = [
            d.document_type for d in session.exec(select(DocumentRequirement).order_by(col(DocumentRequirement.id)))
        ]
    assert asked == ["claim form", "repair invoice", "bank account details"]
    assert world.step(case, "home_visit").status == StepStatus.open  # offered to the elderly customer
    assert "care_plan" in world.events(case)


def test_other_customers_get_no_home_visit(world) -> None:
    case = world.file(product_line="motor")
    assert world.step(case, "home_visit") is None
    assert "care_plan" not in world.events(case)


def test_a_case_nobody_has_room_for_is_filed_unassigned_and_assigned_when_room_frees(world) -> None:
    with session_scope(world.engine) as session:
        for member in session.exec(select(Staff).where(Staff.role == "handler")):
            member.capacity = 0
            session.add(member)
    case = world.file(product_line="motor")  # accepted all the same: never refused for lack of staff
    stored = world.case(case)
    assert stored.handler_id is None and stored.status == "under_review"
    review = world.step(case, "review")
    assert review.assignee_id is None and review.due_at is not None  # the clock runs from filing
    assert "routing_deferred" in world.events(case)
    with Session(world.engine) as session:
        told = session.exec(select(Outbox).where(Outbox.template == "staff_unassigned")).one()
    assert told.recipient == "role:supervisor" and "capacity" in told.context["reason"]
    assert told.context["reason_code"] == "no_capacity"  # what the message says in the supervisor's language
    with session_scope(world.engine) as session:
        assert route_deferred(session, now=world.now) == []  # still no room: nothing new is recorded
    assert world.events(case).count("routing_deferred") == 1

    with session_scope(world.engine) as session:
        member = session.exec(select(Staff).where(Staff.username == "wang.fang")).one()
        member.capacity = 5
        session.add(member)
    with session_scope(world.engine) as session:
        assert route_deferred(session, now=world.now) == [case.number]
    assert world.step(case, "review").assignee_id == world.case(case).handler_id is not None
    assert world.events(case)[-3:] == ["assigned", "step_assigned", "step_assigned"]  # the review, the advance
    assert world.outbox().count("staff_new_assignment") == 2


def test_the_home_visit_is_recorded_by_whoever_went_and_closes_its_step(world) -> None:
    from models.errors import InvalidInput, NotFound
    from tasks.workflow import record_home_visit

    case = world.file(product_line="motor", customer=CustomerCreate(name="王奶奶", phone="13800000000", elderly=True))
    for fields, error, message in [
        ({"outcome": "maybe", "note": "x"}, InvalidInput, "one of visited"),
        ({"outcome": "visited", "note": " "}, InvalidInput, "what was done"),
        ({"outcome": "visited", "note": "x", "username": "nobody"}, NotFound, "no active staff member"),
    ]:
        with session_scope(world.engine) as session, pytest.raises(error, match=message):
            record_home_visit(session, **{"number": case.number, "username": "li.wei", "now": world.now, **fields})
    with session_scope(world.engine) as session:
        record_home_visit(session, number=case.number, username="li.wei", outcome="visited",
                          note="collected the invoice at home", now=world.now)  # fmt: skip
    step = world.step(case, "home_visit")
    assert step.status == StepStatus.done and step.outcome.startswith("visited: collected")
    with session_scope(world.engine) as session, pytest.raises(NotFound, match="no home visit open"):
        record_home_visit(session, number=case.number, username="li.wei", outcome="visited", note="again",
                          now=world.now)  # fmt: skip


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite has one writer: nothing to race
def test_two_runs_reading_an_approved_claim_at_once_open_its_payment_step_once(world) -> None:
    """A restarted run beside a late one: both read the case as the payment is due; the case's row makes them
    take turns, so the step opens once and the chain stays whole (PostgreSQL; SQLite has one writer)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from models.tables import Step
    from tasks.audit import verify_cases

    case = world.file(product_line="motor", amount_claimed=Decimal("3000"))
    with Session(world.engine) as session:
        who = session.get(Staff, world.case(case).handler_id).username
    assert world.decide(case, who, decision="approve", amount="3000").applied
    barrier = threading.Barrier(2)

    def read(_: int):
        barrier.wait()
        return world.view(case)

    with ThreadPoolExecutor(2) as pool:
        views = list(pool.map(read, range(2)))
    assert [v.move for v in views] == [Ask(InputKind.payment, "payment")] * 2
    assert views[0].waiting_key == views[1].waiting_key
    with Session(world.engine) as session:
        steps = session.exec(select(Step).where(Step.case_id == case.id, col(Step.name) == "payment")).all()
        assert len(steps) == 1
        assert not verify_cases(session).breaks
    assert world.events(case).count("step_opened") == 3  # review and the advance payment, then payment once


def test_text_from_outside_in_the_form_shows_as_written(world) -> None:
    """The Resume form renders its description as markdown: a policy number that is a link or an image from an
    outside host, or a staff name typed as one, must show as written (a code span), not as a live link or a
    fetched image."""
    case = world.file(product_line="motor", policy_number="[P-1](https://evil.example/x)![i](https://evil.example/p)")
    world.decide(case, "![x](https://evil.example/track.png)", decision="investigate", code="123456")
    described = world.view(case).description
    assert "险种: `motor`; 保单 `[P-1](https://evil.example/x)![i](https://evil.example/p)`" in described
    assert "(`![x](https://evil.example/track.png)`): `no staff member" in described


def test_the_form_says_when_it_is_due_in_office_time_who_may_decide_and_what_each_choice_does(world) -> None:
    case = world.file(product_line="motor")
    described = world.view(case).description
    handler = _handler_name(world, case)
    # filed Monday 09:30 in Shanghai, due when Thursday ends there
    assert "截止: 2026-03-06 周五 00:00 (Asia/Shanghai) · 还剩 3天 14小时 · `service-standard claim.review" in described
    assert f"可决定的人: {handler}（经办人），或经理或主管" in described
    assert "- **要求补充材料** (`request_documents`): 一次性通知客户需补充的全部材料；材料到齐前时限暂停" in described
    assert "- **拒赔** (`reject`): 拒赔：通知客户理由、所依据的条款及投诉途径" in described


def _handler_name(world, case) -> str:
    with Session(world.engine) as session:
        return session.get(Staff, world.case(case).handler_id).username


def test_a_partial_approval_that_needs_a_second_approver_keeps_its_reasons_and_clause_for_the_letter(world) -> None:
    """The letter of a partial approval states the reasons and the clause (the wording rules); after the second
    approval it is sent with the handler's reasons and clause, not held back, and the approvers' internal comment
    is not in it."""
    case = world.file(product_line="motor", amount_claimed=Decimal("120000"))
    who = _handler_name(world, case)
    refused = world.decide(case, who, decision="approve_partly", amount="90000", reasons="Excess of 30,000")
    assert refused.refused == "a partial approval states its reasons and the clause relied on"
    assert world.decide(case, who, decision="approve_partly", amount="90000", reasons="Excess of 30,000 applies",
                        clause="5.1").applied  # fmt: skip
    assert world.decide(case, "zhao.min", decision="approve", comment="internal: checked the garage").applied
    assert world.case(case).status == "partly_approved"
    with Session(world.engine) as session:
        [letter] = session.exec(select(Outbox).where(Outbox.template == "decision")).all()
        assert not session.exec(select(Step).where(Step.name == "fix_wording")).all()
    assert (letter.context["reasons"], letter.context["clause"]) == ("Excess of 30,000 applies", "5.1")
    assert "internal" not in str(letter.context)
    assert "wording_check_failed" not in world.events(case)


def test_a_supervisor_hands_a_persons_open_cases_to_another_handler_each_on_its_own(world) -> None:
    """li.wei goes on leave: zhao.min moves his open motor claims to wang.fang (told of each); a complaint about
    wang.fang's own work stays with li.wei, with the reason; refused for a handler or without a reason."""
    from models.approval import NotAllowed
    from models.errors import InvalidInput
    from tasks.reassign import reassign_cases

    def reassign(by: str, **given: object):
        world.now += timedelta(minutes=5)  # each code is used once
        with session_scope(world.engine) as session:
            return reassign_cases(session, world.desk, from_username="li.wei", to_username="wang.fang", by=by,
                                  code=code_at(world.secrets[by], world.now), now=world.now,
                                  **{"reason": "li.wei on leave", **given})  # fmt: skip

    claims = [world.file(product_line="motor") for _ in range(4)]
    mine = [c for c in claims if _handler_name(world, c) == "li.wei"]
    others = [c for c in claims if _handler_name(world, c) == "wang.fang"]
    assert mine and others
    complaint = world.file(CaseKind.complaint, product_line="motor", related_case_number=others[0].number)
    with session_scope(world.engine) as session:  # by hand: the complaint team's member is away, li.wei helps
        stored = session.get(Case, complaint.id)
        stored.handler_id = session.exec(select(Staff).where(Staff.username == "li.wei")).one().id
        session.add(stored)
    with pytest.raises(NotAllowed, match="reassigning needs a supervisor or manager"):
        reassign("wang.fang")
    with pytest.raises(InvalidInput, match="states its reason"):
        reassign("zhao.min", reason=" ")
    done = reassign("zhao.min")
    assert sorted(done.moved) == sorted(c.number for c in mine)
    assert done.skipped == [(complaint.number, "wang.fang belongs to the team the complaint is about")]
    for case in mine:
        assert _handler_name(world, case) == "wang.fang"
        assert world.step(case, "review").assignee_id == world.case(case).handler_id
        assert "reassigned" in world.events(case)
    with Session(world.engine) as session:
        told = session.exec(select(Outbox).where(Outbox.template == "staff_new_assignment",
                                                 Outbox.recipient == "staff:wang.fang")).all()  # fmt: skip
        approvals = session.exec(select(Approval).where(Approval.subject == "reassignment")).all()
    assert {o.context["case_number"] for o in told} >= {c.number for c in mine}
    assert len(approvals) == len(mine) and all(a.comment == "li.wei on leave" for a in approvals)


def test_a_claim_of_no_known_product_line_waits_in_triage_until_a_supervisor_sorts_it(world) -> None:
    """Not routed to whichever handler has room: the supervisors are told to sort it; the watcher's routing pass
    leaves it; once sorted it goes to a handler with the skill, who gets its open step and is told."""
    from models.approval import NotAllowed
    from models.errors import InvalidInput
    from tasks.reassign import triage_case
    from tasks.workflow import route_deferred

    def triage(by: str, product_line: str = "motor", number: str | None = None):
        world.now += timedelta(minutes=5)  # each code is used once
        with session_scope(world.engine) as session:
            return triage_case(session, world.desk, number=number or case.number, product_line=product_line, by=by,
                               code=code_at(world.secrets[by], world.now), now=world.now)  # fmt: skip

    case = world.file()
    assert world.case(case).handler_id is None and world.step(case, "review").assignee_id is None
    assert "routing_deferred" in world.events(case)
    with Session(world.engine) as session:
        told = session.exec(select(Outbox).where(Outbox.template == "staff_unassigned")).one()
    assert told.context["triage"] is True and told.recipient == "role:supervisor"
    with session_scope(world.engine) as session:
        assert case.number not in route_deferred(session, now=world.now)  # not given to whoever has room
    with pytest.raises(NotAllowed, match="supervisor's or manager's"):
        triage("li.wei")
    with pytest.raises(InvalidInput, match="none of motor, health, property, travel, life"):
        triage("zhao.min", product_line="boats")
    handler = triage("zhao.min", product_line=" Motor ")
    assert handler is not None and "motor" in handler.skills
    assert world.case(case).product_line == "motor" and world.case(case).handler_id == handler.id
    assert world.step(case, "review").assignee_id == handler.id
    assert world.events(case)[-4:] == ["triaged", "assigned", "step_assigned", "step_assigned"]
    with Session(world.engine) as session:
        assert session.exec(select(Outbox).where(Outbox.template == "staff_new_assignment",
                                                 Outbox.recipient == f"staff:{handler.username}")).all()  # fmt: skip
    with pytest.raises(InvalidInput, match="use claimflow staff reassign"):
        triage("zhao.min")
    inquiry = world.file(CaseKind.inquiry)
    assert world.case(inquiry).handler_id is not None  # only a claim needs its product line to be routed
    with pytest.raises(InvalidInput, match="is an inquiry: nothing to sort"):
        triage("zhao.min", number=inquiry.number)


def test_approval_codes_lock_after_five_wrong_ones_in_a_row(world) -> None:
    """Guessing a six-digit code: after five wrong ones in a row the member's codes are refused for 15 minutes, even
    the right one; then the right one works and the count starts again."""
    from models.otp import LOCKOUT, MAX_WRONG_CODES

    case = world.file(product_line="motor")
    who = _handler_name(world, case)
    for _ in range(MAX_WRONG_CODES):
        at = world.now + timedelta(minutes=5)  # when world.decide gives it
        valid = {code_at(world.secrets[who], at + timedelta(seconds=s)) for s in (-30, 0, 30)}
        wrong = next(c for c in (f"{n:06d}" for n in range(10)) if c not in valid)
        refused = world.decide(case, who, decision="investigate", code=wrong)
        assert refused.refused == "the approval code is wrong or has expired"
    locked = world.decide(case, who, decision="investigate")  # the right code, but locked
    assert locked.refused.startswith(f"{who}'s approval codes are locked after {MAX_WRONG_CODES} wrong ones")
    world.now += LOCKOUT
    assert world.decide(case, who, decision="investigate").applied
    with Session(world.engine) as session:
        member = session.exec(select(Staff).where(Staff.username == who)).one()
    assert (member.codes_refused, member.codes_locked_until) == (0, None)


def test_a_desk_without_its_phone_set_holds_customer_messages_until_it_is_and_then_sends_them(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No default number: the acknowledgement (which quotes the desk's phone) is kept as held with its values, the
    case says why, nobody's task list grows; once the phone is set the release queues it, worded with that number."""
    from claimflow.settings import get_settings
    from models.enums import OutboxStatus
    from tasks.outbox import default_config, prepare, release_held

    monkeypatch.setenv("CLAIMFLOW_DESK_PHONE", "")
    get_settings.cache_clear()
    case = world.file(product_line="motor")
    with Session(world.engine) as session:
        [ack] = session.exec(select(Outbox).where(Outbox.case_id == case.id,
                                                  col(Outbox.recipient).startswith("customer:"))).all()  # fmt: skip
    assert (ack.status, ack.template) == (OutboxStatus.held, "acknowledgement_claim")
    assert ack.last_error == "the desk's CLAIMFLOW_DESK_PHONE is not set: customer messages quote it"
    assert "message_held" in world.events(case)
    with Session(world.engine) as session:  # the operator's setting to fix, not a task for the handler
        assert not session.exec(select(Step).where(Step.case_id == case.id, Step.name == "fix_wording")).all()
    with session_scope(world.engine) as session:  # still not set: nothing changes
        assert release_held(session, now=world.now, config=default_config()).queued == []

    monkeypatch.setenv("CLAIMFLOW_DESK_PHONE", "021-5555-0100")
    get_settings.cache_clear()
    with session_scope(world.engine) as session:
        done = release_held(session, now=world.now, config=default_config())
    assert [row.id for row in done.queued] == [ack.id]
    with Session(world.engine) as session:
        row = session.get(Outbox, ack.id)
        assert row.status == OutboxStatus.pending and row.next_attempt_at == world.now
        from dataclasses import replace

        from pydantic import SecretStr

        config = replace(default_config(), customer_email_url=SecretStr("mailto://desk:pw@127.0.0.1:25"))
        assert "021-5555-0100" in prepare(session, row, config=config).text
    assert "message_released" in world.events(case)

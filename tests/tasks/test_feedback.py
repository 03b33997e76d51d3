"""Survey invitations, answers and feedback from other channels, on SQLite and PostgreSQL: what is stored, what
follow-up it starts, who is asked to call, and what the customer is told."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, col, select

from claimflow.db import session_scope
from models.enums import CaseKind, StepStatus
from models.errors import InvalidInput, NotFound
from models.survey import Refusal, SurveyAnswer, SurveyLinkRefused
from models.tables import Case, Customer, Escalation, Event, Feedback, Outbox, Staff, SurveyInvitation
from tasks.feedback import answer_survey, finish_follow_up, open_follow_ups, periodic_survey, record
from tasks.survey import invite, link_token, open_invitation


def handler_of(world, case: Case) -> Staff:
    handler_id = world.case(case).handler_id
    with Session(world.engine) as session:
        staff = session.get(Staff, handler_id)
        assert staff is not None
        return staff


def settled_claim(world, **fields: object) -> Case:
    """A motor claim approved, paid and finished: closed, with its survey invitation sent."""
    case = world.file(product_line="motor", amount_claimed=Decimal("8000"), **fields)
    who = handler_of(world, case).username
    assert world.decide(case, who, decision="approve", amount="7800").applied
    assert world.decide(case, who, amount="7800", reference="PAY-1", account_hint="6789").applied
    world.advance(case, "finish")
    return world.case(case)


def token_of(world, case: Case) -> str:
    with Session(world.engine) as session:
        token = link_token(session, world.desk.settings, case=case)
    assert token is not None
    return token


def answer(world, token: str, score: int, solved: bool, comment: str | None = None):
    with session_scope(world.engine) as session:
        outcome = answer_survey(session, world.desk, token=token, answer=SurveyAnswer(score, solved, comment),
                                now=world.now)  # fmt: skip
        return (
            outcome.kind,
            outcome.follow_up.name if outcome.follow_up else None,
            (outcome.complaint_case.number if outcome.complaint_case else None),
        )


def test_a_settled_claim_sends_one_survey_link_that_expires_in_the_configured_days(world) -> None:
    case = settled_claim(world)
    assert world.case(case).status == "closed"
    assert world.events(case)[-3:] == ["request_feedback", "survey_invited", "close"]
    with Session(world.engine) as session:
        invitation = session.exec(select(SurveyInvitation)).one()
        message = session.exec(select(Outbox).where(Outbox.template == "survey_invitation")).one()
    assert invitation.case_id == case.id and invitation.reason == "resolution"
    assert invitation.expires_at - invitation.sent_at == timedelta(days=world.desk.settings.survey_valid_days)
    assert message.context["survey_url"].startswith("http://127.0.0.1:8000/survey/")
    assert message.context["survey_url"].endswith(token_of(world, case))
    # asking again (a flow run restarted) sends nothing new
    with session_scope(world.engine) as session:
        again = invite(session, world.desk.settings, case=world.case(case), reason="resolution", now=world.now)
    assert again is not None and again.id == invitation.id
    assert world.outbox().count("survey_invitation") == 1


def test_a_good_answer_is_stored_as_praise_and_starts_no_follow_up(world) -> None:
    case = settled_claim(world)
    assert answer(world, token_of(world, case), 5, True, "处理很及时，谢谢！") == ("praise", None, None)
    with Session(world.engine) as session:
        feedback = session.exec(select(Feedback)).one()
        invitation = session.exec(select(SurveyInvitation)).one()
    assert (feedback.score, feedback.solved, feedback.channel) == (5, True, "survey")
    assert feedback.invitation_id == invitation.id and invitation.answered_at == world.now
    assert world.events(case)[-1] == "feedback_received"
    assert "survey_follow_up" not in world.outbox()


@pytest.mark.parametrize(("score", "solved"), [(2, True), (1, True), (4, False)])
def test_a_low_score_or_not_solved_opens_a_follow_up_for_a_supervisor_who_is_not_the_handler(
    world, score: int, solved: bool
) -> None:
    case = settled_claim(world)
    handler = handler_of(world, case)
    _, step_name, complaint = answer(world, token_of(world, case), score, solved)
    assert step_name == "follow_up" and complaint is None
    step = world.step(case, "follow_up")
    with Session(world.engine) as session:
        supervisor = session.get(Staff, step.assignee_id)
    assert supervisor is not None and supervisor.role == "supervisor" and supervisor.id != handler.id
    assert step.status == StepStatus.open and step.due_at is not None
    assert world.now + timedelta(days=1) < step.due_at <= world.now + timedelta(days=5)  # two working days
    assert step.next_check_at is not None  # the watcher reminds and escalates it like any other step
    assert world.outbox()[-2:] == ["staff_follow_up", "survey_follow_up"]  # the supervisor, then the customer


def test_a_dissatisfied_complainant_gets_an_independent_complaint_review(world) -> None:
    claim = world.file(product_line="motor")
    complaint = world.file(CaseKind.complaint, related_case_number=claim.number, description="理赔太慢")
    who = handler_of(world, complaint).username
    assert world.decide(complaint, who, decision="uphold", remedy="补偿利息", reasons="延误属实").applied
    world.advance(complaint, "finish")
    assert world.case(complaint).status == "closed"
    kind, step_name, filed = answer(world, token_of(world, complaint), 2, False, "还是不满意")
    assert (kind, step_name, filed) == ("complaint", "complaint_review", None)  # no complaint about a complaint
    review = world.step(complaint, "complaint_review")
    handler = handler_of(world, complaint)
    with Session(world.engine) as session:
        reviewer = session.get(Staff, review.assignee_id)
    assert reviewer is not None and handler is not None
    assert reviewer.role in ("supervisor", "manager") and reviewer.department_id != handler.department_id


def test_a_complaint_in_the_comment_becomes_a_complaint_case_for_the_same_customer(world) -> None:
    case = settled_claim(world)
    kind, step_name, filed = answer(world, token_of(world, case), 1, False, "我要投诉，赔款算错了")
    assert kind == "complaint" and step_name == "follow_up" and filed is not None
    with Session(world.engine) as session:
        complaint = session.exec(select(Case).where(Case.number == filed)).one()
        feedback = session.exec(select(Feedback)).one()
        customers = session.exec(select(Customer)).all()
    assert complaint.kind == "complaint" and complaint.related_case_id == case.id
    assert complaint.customer_id == case.customer_id and len(customers) == 1  # not a second copy of the customer
    assert complaint.handler_id != handler_of(world, case).id  # routed away from the claim's handler
    assert feedback.complaint_case_id == complaint.id
    assert "complaint_filed_from_feedback" in world.events(case)


def test_a_link_answers_once_and_says_so_afterwards(world) -> None:
    case = settled_claim(world)
    token = token_of(world, case)
    answer(world, token, 4, True)
    with pytest.raises(SurveyLinkRefused) as refused:
        answer(world, token, 1, False)
    assert refused.value.reason == Refusal.used
    with Session(world.engine) as session:
        assert len(session.exec(select(Feedback)).all()) == 1


def test_an_expired_link_is_refused_and_nothing_is_stored(world) -> None:
    case = settled_claim(world)
    token = token_of(world, case)
    world.now += timedelta(days=world.desk.settings.survey_valid_days)
    with pytest.raises(SurveyLinkRefused) as refused:
        answer(world, token, 5, True)
    assert refused.value.reason == Refusal.expired
    with Session(world.engine) as session:
        assert session.exec(select(Feedback)).all() == []


def test_a_forged_or_tampered_link_is_refused(world) -> None:
    case = settled_claim(world)
    token = token_of(world, case)
    with Session(world.engine) as session:
        for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "x" + token, "not-a-token", ""):
            with pytest.raises(SurveyLinkRefused) as refused:
                open_invitation(session, world.desk.settings, token=bad, now=world.now)
            assert refused.value.reason == Refusal.forged


def test_phone_notes_and_webhook_feedback_are_recorded_and_classified(world) -> None:
    case = settled_claim(world)
    with session_scope(world.engine) as session:
        stored = world.case(case)
        praise = record(session, world.desk, case=stored, channel="phone", text="Thanks, very helpful staff",
                        source="li.wei", now=world.now)  # fmt: skip
        idea = record(session, world.desk, case=stored, channel="webhook", text="建议增加微信进度查询",
                      source="webhook webform", now=world.now)  # fmt: skip
        assert (praise.kind, idea.kind) == ("praise", "suggestion")
        assert praise.follow_up is None and idea.complaint_case is None
    with Session(world.engine) as session:
        rows = session.exec(select(Feedback).order_by(col(Feedback.id))).all()
    assert [(f.channel, f.classification, f.source) for f in rows] == [
        ("phone", "praise", "li.wei"),
        ("webhook", "suggestion", "webhook webform"),
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"channel": "fax", "text": "hi"}, "channel 'fax'"),
        ({"channel": "phone", "text": "hi", "score": 9}, "score 9"),
        ({"channel": "phone", "text": "   "}, "needs a score"),
    ],
)
def test_bad_feedback_is_refused_with_what_was_wrong(world, fields: dict, message: str) -> None:
    case = settled_claim(world)
    with session_scope(world.engine) as session, pytest.raises(InvalidInput, match=message):
        record(session, world.desk, case=world.case(case), now=world.now, **fields)


def test_the_supervisor_closes_the_follow_up_after_calling_back(world) -> None:
    case = settled_claim(world)
    answer(world, token_of(world, case), 1, False)
    step = world.step(case, "follow_up")
    with Session(world.engine) as session:
        assert [c.number for c, _ in open_follow_ups(session)] == [case.number]
        supervisor = session.get(Staff, step.assignee_id)
    handler = handler_of(world, case)
    with session_scope(world.engine) as session, pytest.raises(InvalidInput, match="someone else"):
        finish_follow_up(session, number=case.number, username=handler.username, note="called", now=world.now)
    with session_scope(world.engine) as session, pytest.raises(InvalidInput, match="what was agreed"):
        finish_follow_up(session, number=case.number, username=supervisor.username, note=" ", now=world.now)
    with session_scope(world.engine) as session:
        finish_follow_up(session, number=case.number, username=supervisor.username, note="refund explained",
                         now=world.now)  # fmt: skip
    assert world.step(case, "follow_up").status == StepStatus.done
    with Session(world.engine) as session:
        assert open_follow_ups(session) == []
    with session_scope(world.engine) as session, pytest.raises(NotFound, match="no open follow-up"):
        finish_follow_up(session, number=case.number, username=supervisor.username, note="again", now=world.now)


def test_with_no_supervisor_the_follow_up_waits_unassigned_and_the_supervisors_are_told(world) -> None:
    case = settled_claim(world)
    with session_scope(world.engine) as session:
        for member in session.exec(select(Staff).where(col(Staff.role).in_(("supervisor", "manager")))):
            member.active = False
            session.add(member)
    answer(world, token_of(world, case), 1, True)
    assert world.step(case, "follow_up").assignee_id is None
    assert "follow_up_unassigned" in world.events(case)
    with Session(world.engine) as session:
        told = session.exec(select(Outbox).where(Outbox.template == "staff_follow_up")).one()
    assert told.recipient == "role:supervisor"


def _closed_cases(world, count: int, **fields: object) -> list[Case]:
    """Cases closed without a feedback step (answered inquiries), so none has an invitation yet."""
    cases = []
    for _ in range(count):
        case = world.file(CaseKind.inquiry, **fields)
        with session_scope(world.engine) as session:
            stored = session.get(Case, case.id)
            stored.status, stored.closed_at = "closed", world.now
            session.add(stored)
        cases.append(case)
    return cases


def test_the_periodic_survey_samples_a_share_per_handler_and_respects_the_quiet_period(world) -> None:
    world.desk = world.desk.__class__(
        rules=world.desk.rules, settings=world.desk.settings.model_copy(update={"survey_share": 0.5})
    )
    cases = _closed_cases(world, 6)
    world.now += timedelta(days=1)
    with session_scope(world.engine) as session:
        report = periodic_survey(session, world.desk, now=world.now)
    # every inquiry was filed for a new customer; groups are (handler, product line)
    with Session(world.engine) as session:
        handlers = {session.get(Case, c.id).handler_id for c in cases}
        invitations = session.exec(select(SurveyInvitation)).all()
    assert report.closed == 6
    assert len(handlers) <= len(report.invited) <= 6
    assert {i.reason for i in invitations} == {"periodic"}
    assert world.outbox().count("survey_invitation") == len(report.invited)
    # a second pass finds the same population minus those invited, and never invites a case twice
    with session_scope(world.engine) as session:
        again = periodic_survey(session, world.desk, now=world.now)
    assert set(again.invited).isdisjoint(report.invited)


def test_a_customer_invited_recently_is_left_alone_by_the_periodic_survey(world) -> None:
    case = settled_claim(world)  # invited at resolution
    customer_id = world.case(case).customer_id
    with Session(world.engine) as session:
        customer = session.get(Customer, customer_id)
        customer_data = customer.model_dump(include={"name", "email"})
    from models.tables import CustomerCreate

    # another case of the same customer, closed later, is not surveyed within the quiet period
    other = world.file(CaseKind.inquiry, customer=CustomerCreate(**customer_data))
    with session_scope(world.engine) as session:
        stored = session.get(Case, other.id)
        stored.customer_id, stored.status, stored.closed_at = customer_id, "closed", world.now
        session.add(stored)
    with session_scope(world.engine) as session:
        report = periodic_survey(session, world.desk, now=world.now + timedelta(days=1))
    assert report.invited == ()
    with Session(world.engine) as session:
        assert len(session.exec(select(SurveyInvitation)).all()) == 1
        assert session.exec(select(Event).where(Event.type == "survey_invited")).all()


def test_a_follow_up_nobody_does_is_reminded_and_escalated_like_any_step(world) -> None:
    from tasks.escalations import watch_pass

    case = settled_claim(world)
    answer(world, token_of(world, case), 1, False)
    step = world.step(case, "follow_up")
    with session_scope(world.engine) as session:
        report = watch_pass(session, now=step.due_at + timedelta(minutes=1))
    assert report.escalations  # breached: the supervisors' ladder takes it (the case itself stays closed)
    with Session(world.engine) as session:
        escalation = session.exec(select(Escalation).where(Escalation.step_id == step.id)).one()
    assert escalation.level == 1 and escalation.role == "supervisor"
    assert world.case(case).status == "closed"


# --- feedback about the desk, with no case ------------------------------------------------------------------


def _general(world, **kwargs: object):
    from tasks.feedback import record_general

    world.now += timedelta(minutes=1)
    with session_scope(world.engine) as session:
        outcome = record_general(session, world.desk, now=world.now, **kwargs)
        return outcome.feedback.id, outcome.kind.value, outcome.complaint_case, outcome.unanswerable


def test_general_praise_is_kept_without_a_case_and_the_supervisors_are_told(world) -> None:
    from tasks.feedback import finish_general, open_general

    feedback_id, kind, complaint, unanswerable = _general(world, channel="phone", text="谢谢你们的服务，非常满意",
                                                          score=5)  # fmt: skip
    assert kind == "praise" and complaint is None and not unanswerable
    with Session(world.engine) as session:
        stored = session.get(Feedback, feedback_id)
        assert stored.case_id is None and stored.customer_id is None and stored.handled_at is None
        told = session.exec(select(Outbox).where(Outbox.template == "staff_general_feedback")).one()
        assert told.recipient == "role:supervisor" and told.case_id is None
        assert f"--feedback {feedback_id}" in told.context["command"]
        assert [f.id for f in open_general(session)] == [feedback_id]
    with pytest.raises(InvalidInput, match="supervisor or manager"), session_scope(world.engine) as session:
        finish_general(session, feedback_id=feedback_id, username="li.wei", note="Read", now=world.now)
    with session_scope(world.engine) as session:
        finish_general(session, feedback_id=feedback_id, username="zhao.min", note="Passed on to the team",
                       now=world.now)  # fmt: skip
    with Session(world.engine) as session:
        assert open_general(session) == []
        assert session.get(Feedback, feedback_id).handled_by == "zhao.min"


def test_a_general_complaint_from_a_customer_on_file_files_a_complaint_case_for_them(world) -> None:
    """Noted by staff (vouched): the complaint is filed for the customer on file, not for a new one."""
    from models.tables import CustomerCreate

    claim = world.file(product_line="motor", customer=CustomerCreate(name="王小明", email="Wang@Example.com"))
    feedback_id, kind, complaint, _ = _general(
        world, channel="phone", text="投诉：客服电话一直打不通，态度很差", vouched=True,
        contact=CustomerCreate(name="王小明", email="wang@example.com"),
    )  # fmt: skip
    assert kind == "complaint" and complaint is not None and complaint.kind == CaseKind.complaint
    customer_id = world.case(claim).customer_id
    with Session(world.engine) as session:
        stored = session.get(Feedback, feedback_id)
        assert stored.complaint_case_id == complaint.id
        assert stored.customer_id == customer_id == complaint.customer_id  # the same customer, not a new one
        assert session.exec(select(Outbox).where(Outbox.template == "acknowledgement_complaint")).one()


def test_a_general_complaint_from_nobody_reachable_is_kept_and_bad_feedback_is_refused(world) -> None:
    from models.tables import CustomerCreate

    _, kind, complaint, unanswerable = _general(world, channel="webhook", text="投诉：你们的网站总是出错")
    assert kind == "complaint" and complaint is None and unanswerable
    with pytest.raises(InvalidInput, match="phone number or an e-mail"):
        _general(world, channel="phone", text="投诉", contact=CustomerCreate(name="匿名"))
    with pytest.raises(InvalidInput, match="needs a score"):
        _general(world, channel="phone", text="  ")
    with pytest.raises(InvalidInput, match="channel"):
        _general(world, channel="pigeon", text="hello")


def test_a_complaint_posted_with_someones_address_is_not_filed_in_their_name(world) -> None:
    """Unvouched (a webhook): the feedback is linked to the customer on file for the supervisors to see, but the
    complaint is filed for the contact as given, so the desk does not write to the customer on file's phone."""
    from models.tables import CustomerCreate

    claim = world.file(product_line="motor", customer=CustomerCreate(name="王小明", email="wang@example.com",
                                                                    phone="13812345678"))  # fmt: skip
    feedback_id, _, complaint, _ = _general(world, channel="webhook", text="投诉：服务太差",
                                            contact=CustomerCreate(name="X", email="wang@example.com"))  # fmt: skip
    on_file = world.case(claim).customer_id
    with Session(world.engine) as session:
        assert session.get(Feedback, feedback_id).customer_id == on_file
        assert complaint is not None and complaint.customer_id != on_file
        assert session.get(Customer, complaint.customer_id).phone is None


def test_the_supervisors_message_about_general_feedback_speaks_their_language_not_codes(world) -> None:
    from tasks.outbox import default_config

    _general(world, channel="phone", text="希望能在网上查询进度", score=4)
    with Session(world.engine) as session:
        told = session.exec(select(Outbox).where(Outbox.template == "staff_general_feedback")).one()
    assert (told.context["channel"], told.context["contact"]) == ("phone", "none")
    zh = default_config().render("staff_general_feedback", language="zh-CN", context=told.context)
    en = default_config().render("staff_general_feedback", language="en", context=told.context)
    assert "通过电话收到" in zh.text and "建议" in zh.subject and "未留联系方式" in zh.text
    assert not any(code in zh.text + zh.subject for code in ("phone", "suggestion", "none"))
    assert "by phone" in en.text and "nobody to answer" in en.text

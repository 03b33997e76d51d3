"""The shipped policy packs: each one validates, and each rule gives the date its source text gives.

One test per shipped rule; the docstring quotes (or names) the text the number comes from. A rule added
to a pack without a test here fails ``test_every_shipped_rule_has_a_test``.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from models.calendar import region_calendar
from models.clock import Pause, Unit
from models.errors import InvalidInput
from models.sla import NoRule, due, load_pack, notice_times, shipped_pack_names

SH = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
SYDNEY = ZoneInfo("Australia/Sydney")
LA = ZoneInfo("America/Los_Angeles")
CN = region_calendar("CN")

TESTED: set[tuple[str, str, str]] = set()


def covers(pack: str, kind: str, step: str):
    """Mark a test as the test of one shipped rule."""
    TESTED.add((pack, kind, step))
    return lambda test: test


def at(text: str, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone)


@pytest.mark.parametrize("name", ["service-standard", "cn-regulatory", "uk-fca", "au-asic", "us-ca"])
def test_shipped_pack_validates(name: str) -> None:
    pack = load_pack(name)
    assert pack.name == name
    for _, _, rule in pack.rules():
        for limit in [rule.limit, *(rule.limit_by_channel or {}).values()]:
            if limit is not None:
                assert limit.source.strip()


def test_the_five_packs_are_shipped() -> None:
    assert shipped_pack_names() == ["au-asic", "cn-regulatory", "service-standard", "uk-fca", "us-ca"]


# -- service-standard ------------------------------------------------------------------------------


@covers("service-standard", "inquiry", "answer")
@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        pytest.param("phone", "2025-09-27 15:00", id="phone-24-hours"),
        pytest.param("email", "2025-09-28 15:00", id="email-48-hours"),
        pytest.param("counter", "2025-09-27 15:00", id="counter-follows-phone"),
        pytest.param("app", "2025-09-28 15:00", id="app-follows-email"),
        pytest.param("webhook", "2025-09-28 15:00", id="webhook-follows-email"),
        pytest.param("letter", "2025-09-28 15:00", id="letter-follows-email"),
    ],
)
def test_service_standard_inquiry_answer(channel: str, expected: str) -> None:
    """Service code: phone inquiries answered within 24 hours, e-mail within 48 (wall-clock hours)."""
    result = due(
        load_pack("service-standard"),
        kind="inquiry",
        step="answer",
        channel=channel,
        start=at("2025-09-26 15:00", SH),
        calendar=CN,
    )
    assert result.due == at(expected, SH)
    assert result.rule.channel == channel


@covers("service-standard", "claim", "review")
def test_service_standard_claim_review() -> None:
    """Service code: claims reviewed within 3 working days; the ladder: supervisor at breach, manager a
    working day later; reminders at 50% and 75%."""
    result = due(
        load_pack("service-standard"),
        kind="claim",
        step="review",
        start=at("2025-09-30 11:00", SH),
        calendar=CN,
    )
    assert result.last_day == dt.date(2025, 10, 11)  # Oct 9, Oct 10, make-up Saturday Oct 11
    assert [r.fraction for r in result.reminders] == [0.5, 0.75]
    assert [(e.role, e.at) for e in result.escalations] == [
        ("supervisor", at("2025-10-12 00:00", SH)),
        ("manager", at("2025-10-14 00:00", SH)),  # Sunday Oct 12 rests; Monday Oct 13 is the working day
    ]


@covers("service-standard", "claim", "follow_up")
@covers("service-standard", "inquiry", "follow_up")
@covers("service-standard", "complaint", "complaint_review")
@pytest.mark.parametrize(("kind", "step"), [("claim", "follow_up"), ("inquiry", "follow_up"),
                                            ("complaint", "complaint_review")])  # fmt: skip
def test_service_standard_follow_up_of_a_dissatisfied_customer(kind: str, step: str) -> None:
    """claimflow default: a supervisor calls back a dissatisfied customer within two working days of the
    survey answer (the step opens then; the weekend does not count)."""
    result = due(load_pack("service-standard"), kind=kind, step=step, start=at("2026-03-06 15:00", SH), calendar=CN)
    assert result.last_day == dt.date(2026, 3, 10)  # Friday's answer: Monday 9 and Tuesday 10 March
    assert [r.fraction for r in result.reminders] == [0.5, 0.75]
    assert result.escalations[0].role == "supervisor"


@covers("service-standard", "complaint", "resolution")
def test_service_standard_complaint_resolution() -> None:
    """Service code: complaints investigated and answered within 10 working days."""
    result = due(
        load_pack("service-standard"),
        kind="complaint",
        step="resolution",
        start=at("2026-02-10 09:30", SH),
        calendar=CN,
    )
    # Feb 11, 12, 13, 14 (make-up Sat), then the 9-day Spring Festival, Feb 24, 25, 26, 27, 28 (make-up Sat), Mar 2
    assert result.last_day == dt.date(2026, 3, 2)
    assert any(
        "independent" in duty.text for duty in load_pack("service-standard").rule("complaint", "resolution").duties
    )


def test_service_standard_supervisor_extensions() -> None:
    """claimflow default: a supervisor may extend a breached claim review by 2 working days (twice) and a
    complaint answer by 5 working days (once); the customer is told the new date."""
    pack = load_pack("service-standard")
    start = at("2025-09-30 11:00", SH)
    once = due(pack, kind="claim", step="review", start=start, calendar=CN, extensions=["supervisor-extension"])
    twice = due(
        pack,
        kind="claim",
        step="review",
        start=start,
        calendar=CN,
        extensions=["supervisor-extension", "supervisor-extension"],
    )
    assert once.last_day == dt.date(2025, 10, 14)  # 11 Oct (make-up Saturday) + Mon 13, Tue 14
    assert twice.last_day == dt.date(2025, 10, 16)
    with pytest.raises(InvalidInput):
        due(pack, kind="claim", step="review", start=start, calendar=CN, extensions=["supervisor-extension"] * 3)
    complaint = due(
        pack,
        kind="complaint",
        step="resolution",
        start=at("2026-02-10 09:30", SH),
        calendar=CN,
        extensions=["supervisor-extension"],
    )
    assert complaint.last_day == dt.date(2026, 3, 9)  # 2 March + 5 working days
    assert all(e.tell_customer for e in pack.rule("claim", "review").extensions)


@covers("service-standard", "complaint", "feedback")
def test_service_standard_complaint_feedback_is_a_duty() -> None:
    """Service code: periodic satisfaction surveys — no number, so no due time."""
    with pytest.raises(NoRule, match="duty with no number"):
        due(
            load_pack("service-standard"),
            kind="complaint",
            step="feedback",
            start=at("2025-09-26 15:00", SH),
            calendar=CN,
        )


# -- cn-regulatory ---------------------------------------------------------------------------------

REG = "cn-regulatory"


@covers(REG, "claim", "intake")
def test_cn_one_complete_notice_of_missing_documents() -> None:
    """保险法 art. 22: 及时一次性通知 … 补充提供 — a duty with no number."""
    rule = load_pack(REG).rule("claim", "intake")
    assert rule is not None and rule.limit is None
    assert "一次性" in rule.duties[0].source


@covers(REG, "claim", "review")
def test_cn_claim_decision_within_30_days_minus_document_time() -> None:
    """保险法 art. 23: 情形复杂的，应当在三十日内作出核定; 解释二 art. 15: time to supply documents deducted."""
    start = at("2025-09-01 10:00", SH)
    plain = due(load_pack(REG), kind="claim", step="review", start=start, calendar=CN)
    assert plain.last_day == dt.date(2025, 10, 9)  # Oct 1 is the 30th day, a holiday: rolls to Oct 9
    assert plain.rolled
    waiting = Pause(at("2025-09-05 00:00", SH), at("2025-09-12 00:00", SH))  # 7 days waiting for documents
    paused = due(load_pack(REG), kind="claim", step="review", start=start, calendar=CN, pauses=[waiting])
    assert paused.last_day == dt.date(2025, 10, 9)  # Oct 8 is still National Day: rolls to Oct 9
    longer = Pause(at("2025-09-05 00:00", SH), at("2025-09-14 00:00", SH))  # 9 days
    assert due(
        load_pack(REG), kind="claim", step="review", start=start, calendar=CN, pauses=[longer]
    ).last_day == dt.date(2025, 10, 10)


@covers(REG, "claim", "resolution")
def test_cn_rejection_notice_within_3_days_with_reasons() -> None:
    """保险法 art. 24: 自作出核定之日起三日内 … 发出拒绝 … 通知书，并说明理由."""
    result = due(load_pack(REG), kind="claim", step="resolution", start=at("2025-09-29 16:00", SH), calendar=CN)
    assert result.last_day == dt.date(2025, 10, 9)  # Oct 2 is in National Day: rolls past it
    assert "说明理由" in load_pack(REG).rule("claim", "resolution").duties[0].source


@covers(REG, "claim", "payment")
def test_cn_payment_within_10_days_of_agreement() -> None:
    """保险法 art. 23: 达成 … 协议后十日内，履行赔偿或者给付保险金义务."""
    result = due(load_pack(REG), kind="claim", step="payment", start=at("2026-02-05 10:00", SH), calendar=CN)
    assert result.last_day == dt.date(2026, 2, 24)  # Feb 15 is Spring Festival: first working day Feb 24


@covers(REG, "claim", "advance_payment")
def test_cn_advance_payment_after_60_days() -> None:
    """保险法 art. 25: 六十日内 … 数额不能确定的 … 先予支付."""
    result = due(load_pack(REG), kind="claim", step="advance_payment", start=at("2025-03-01 10:00", SH), calendar=CN)
    assert result.last_day == dt.date(2025, 4, 30)


@covers(REG, "complaint", "resolution")
def test_cn_complaint_15_days_extensions_appraisal_and_new_facts() -> None:
    """投诉办法: 15日内; 情况复杂的可以延长至30日; 特别复杂 … 审批并告知投诉人，可以再延长30日;
    鉴定、检测、评估 … 不计入; 提出新的事实和理由的 … 重新计算."""
    pack = load_pack(REG)
    start = at("2025-03-03 10:00", SH)
    assert due(pack, kind="complaint", step="resolution", start=start, calendar=CN).last_day == dt.date(2025, 3, 18)
    assert due(
        pack, kind="complaint", step="resolution", start=start, calendar=CN, extensions=["complex"]
    ).last_day == dt.date(2025, 4, 2)
    assert due(
        pack,
        kind="complaint",
        step="resolution",
        start=start,
        calendar=CN,
        extensions=["complex", "particularly-complex"],
    ).last_day == dt.date(2025, 5, 6)  # May 2 rests
    rule = pack.rule("complaint", "resolution")
    assert rule is not None
    special = next(e for e in rule.extensions if e.name == "particularly-complex")
    assert special.approved_by and special.tell_customer
    appraisal = Pause(at("2025-03-10 00:00", SH), at("2025-03-15 00:00", SH))
    assert rule.paused_in == ("external_appraisal",)
    assert due(
        pack, kind="complaint", step="resolution", start=start, calendar=CN, pauses=[appraisal]
    ).last_day == dt.date(2025, 3, 24)  # Mar 23 (Sunday) rolls to Monday
    assert rule.restarted_by == ("new_facts_submitted",)
    restarted = due(pack, kind="complaint", step="resolution", start=at("2025-03-12 14:00", SH), calendar=CN)
    assert restarted.last_day == dt.date(2025, 3, 27)


# -- uk-fca ----------------------------------------------------------------------------------------

GB = region_calendar("GB")


@covers("uk-fca", "complaint", "intake")
def test_uk_prompt_acknowledgement_is_a_duty() -> None:
    """DISP 1.6.1R: a prompt written acknowledgement — no number."""
    with pytest.raises(NoRule, match="duty with no number"):
        due(
            load_pack("uk-fca"),
            kind="complaint",
            step="intake",
            start=at("2025-08-21 10:00", LONDON),
            calendar=GB,
        )


@covers("uk-fca", "complaint", "review")
def test_uk_summary_resolution_by_third_business_day() -> None:
    """DISP 1.5.1R: close of business on the third business day following the day of receipt."""
    result = due(
        load_pack("uk-fca"),
        kind="complaint",
        step="review",
        start=at("2025-08-21 16:00", LONDON),
        calendar=GB,
    )
    assert result.last_day == dt.date(2025, 8, 27)  # Fri 22, (bank holiday Mon 25), Tue 26, Wed 27
    assert result.window is True
    assert result.escalations == ()


@covers("uk-fca", "complaint", "resolution")
def test_uk_final_response_by_end_of_eight_weeks() -> None:
    """DISP 1.6.2R: by the end of eight weeks after receipt — no roll past weekends."""
    result = due(
        load_pack("uk-fca"),
        kind="complaint",
        step="resolution",
        start=at("2025-01-06 09:00", LONDON),
        calendar=GB,
    )
    assert result.last_day == dt.date(2025, 3, 3)
    assert result.due == at("2025-03-04 00:00", LONDON)


# -- au-asic ---------------------------------------------------------------------------------------

AU = region_calendar("AU")


@covers("au-asic", "complaint", "intake")
def test_au_acknowledge_within_24_hours() -> None:
    """RG 271: acknowledge within 24 hours (or one business day); the stricter 24 hours applies."""
    result = due(
        load_pack("au-asic"),
        kind="complaint",
        step="intake",
        start=at("2025-10-03 16:00", SYDNEY),
        calendar=AU,
    )
    assert result.due == at("2025-10-04 16:00", SYDNEY)


@covers("au-asic", "complaint", "review")
def test_au_five_business_day_window() -> None:
    """RG 271: complaints closed by the end of the fifth business day need no written IDR response."""
    result = due(
        load_pack("au-asic"),
        kind="complaint",
        step="review",
        start=at("2025-10-01 10:00", SYDNEY),
        calendar=AU,
    )
    assert result.last_day == dt.date(2025, 10, 9)  # Oct 2, 3, (Labour Day Mon 6), 7, 8, 9
    assert result.window is True


@covers("au-asic", "complaint", "resolution")
def test_au_idr_response_within_30_calendar_days() -> None:
    """RG 271: IDR response no later than 30 calendar days after receipt; delay notification has no length."""
    pack = load_pack("au-asic")
    start = at("2025-11-01 10:00", SYDNEY)
    assert due(pack, kind="complaint", step="resolution", start=start, calendar=AU).last_day == dt.date(2025, 12, 1)
    with pytest.raises(InvalidInput, match="no fixed length"):
        due(
            pack,
            kind="complaint",
            step="resolution",
            start=start,
            calendar=AU,
            extensions=["delay-notification"],
        )


# -- us-ca -----------------------------------------------------------------------------------------

CA = region_calendar("US-CA")


@covers("us-ca", "claim", "intake")
def test_ca_acknowledge_claim_within_15_calendar_days() -> None:
    """10 CCR 2695.5(e): acknowledge, send forms, begin investigation within 15 calendar days."""
    result = due(load_pack("us-ca"), kind="claim", step="intake", start=at("2025-06-02 11:00", LA), calendar=CA)
    assert result.last_day == dt.date(2025, 6, 17)


@covers("us-ca", "claim", "review")
def test_ca_accept_or_deny_within_40_days_and_notice_every_30() -> None:
    """10 CCR 2695.7(b): accept or deny within 40 calendar days of proof of claim; 2695.7(c)(1): written
    notice every 30 calendar days while more time is needed."""
    pack = load_pack("us-ca")
    result = due(pack, kind="claim", step="review", start=at("2025-06-02 11:00", LA), calendar=CA)
    assert result.last_day == dt.date(2025, 7, 12)  # a Saturday: calendar days do not roll
    rule = pack.rule("claim", "review")
    assert rule is not None and result.due is not None
    notice = rule.notices[0]
    assert notice.every.value == 30 and notice.every.unit is Unit.CALENDAR_DAYS
    times = notice_times(notice, first=result.due, until=at("2025-10-01 00:00", LA), calendar=CA)
    assert [t.date() for t in times] == [dt.date(2025, 7, 13), dt.date(2025, 8, 12), dt.date(2025, 9, 11)]


@covers("us-ca", "claim", "payment")
def test_ca_pay_within_30_days_of_acceptance() -> None:
    """10 CCR 2695.7(h): tender payment within 30 calendar days of acceptance."""
    result = due(load_pack("us-ca"), kind="claim", step="payment", start=at("2025-12-01 09:00", LA), calendar=CA)
    assert result.last_day == dt.date(2025, 12, 31)


@covers("us-ca", "inquiry", "answer")
def test_ca_respond_to_communications_within_15_days() -> None:
    """10 CCR 2695.5(b): a complete response within 15 calendar days of the communication."""
    result = due(
        load_pack("us-ca"),
        kind="inquiry",
        step="answer",
        channel="letter",
        start=at("2025-12-20 09:00", LA),
        calendar=CA,
    )
    assert result.last_day == dt.date(2026, 1, 4)
    assert result.due == at("2026-01-05 00:00", LA)


def test_every_shipped_rule_has_a_test() -> None:
    shipped = {
        (name, str(kind), str(step)) for name in shipped_pack_names() for kind, step, _ in load_pack(name).rules()
    }
    assert shipped - TESTED == set()

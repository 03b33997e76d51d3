"""Routing: balanced by load, matched by skill and language, independent for complaints, kind to the elderly."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models.enums import CaseKind, ContactChannel, StaffRole
from models.routing import (
    Candidate,
    NoEligibleHandler,
    RoutingRequest,
    care_plan,
    choose_handler,
    complaint_exclusions,
    documents_for,
    missing_documents,
    needs_second_approval,
)

LI = Candidate(
    1,
    "li.wei",
    StaffRole.handler,
    "claims-motor",
    frozenset({"motor"}),
    frozenset({"zh-CN", "en"}),
    capacity=10,
    open_load=4,
)
WANG = Candidate(
    2,
    "wang.fang",
    StaffRole.handler,
    "claims-motor",
    frozenset({"motor"}),
    frozenset({"zh-CN"}),
    capacity=10,
    open_load=2,
)
LIU = Candidate(
    3,
    "liu.yang",
    StaffRole.handler,
    "claims-health",
    frozenset({"health"}),
    frozenset({"zh-CN", "en"}),
    capacity=10,
    open_load=0,
)
CHEN = Candidate(
    4,
    "chen.jing",
    StaffRole.handler,
    "complaints",
    frozenset({"complaints"}),
    frozenset({"zh-CN", "en"}),
    capacity=5,
    open_load=3,
)
ZHAO = Candidate(
    5,
    "zhao.min",
    StaffRole.supervisor,
    "claims-motor",
    frozenset({"motor"}),
    frozenset({"zh-CN"}),
    capacity=50,
    open_load=0,
)
DESK = [LI, WANG, LIU, CHEN, ZHAO]


def _request(kind=CaseKind.claim, product_line="motor", language="zh-CN", **kw) -> RoutingRequest:
    return RoutingRequest(kind=kind, product_line=product_line, language=language, **kw)


@pytest.mark.parametrize(
    ("request_", "desk", "chosen"),
    [
        pytest.param(_request(), DESK, "wang.fang", id="skilled-and-least-loaded"),
        pytest.param(_request(language="en"), DESK, "li.wei", id="language-before-load"),
        pytest.param(_request(language="en-GB"), DESK, "li.wei", id="language-family-matches"),
        pytest.param(_request(product_line="health"), DESK, "liu.yang", id="product-line-skill"),
        pytest.param(_request(product_line="marine"), DESK, "liu.yang", id="no-skill-anywhere-least-loaded-wins"),
        pytest.param(_request(kind=CaseKind.complaint), DESK, "chen.jing", id="complaints-team-for-complaints"),
        pytest.param(_request(), [LI, WANG.__class__(**{**WANG.__dict__, "open_load": 10})], "li.wei",
                     id="full-handler-skipped"),
        pytest.param(_request(), [LI, WANG.__class__(**{**WANG.__dict__, "active": False})], "li.wei",
                     id="inactive-handler-skipped"),
        pytest.param(_request(), [ZHAO, LIU], "liu.yang", id="supervisors-are-not-routed-cases"),
    ],
)  # fmt: skip
def test_choose_handler(request_: RoutingRequest, desk: list[Candidate], chosen: str) -> None:
    assert choose_handler(request_, desk).username == chosen


def test_ties_are_broken_by_username_so_routing_is_repeatable() -> None:
    a = Candidate(10, "b.user", StaffRole.handler, None, frozenset({"motor"}), frozenset({"zh-CN"}))
    b = Candidate(11, "a.user", StaffRole.handler, None, frozenset({"motor"}), frozenset({"zh-CN"}))
    assert choose_handler(_request(), [a, b]).username == "a.user"


def test_load_is_relative_to_capacity() -> None:
    big = Candidate(
        10,
        "big",
        StaffRole.handler,
        None,
        frozenset({"motor"}),
        frozenset({"zh-CN"}),
        capacity=40,
        open_load=8,
    )
    small = Candidate(
        11,
        "small",
        StaffRole.handler,
        None,
        frozenset({"motor"}),
        frozenset({"zh-CN"}),
        capacity=5,
        open_load=2,
    )
    assert choose_handler(_request(), [big, small]).username == "big"


def test_a_complaint_never_goes_to_the_handler_or_department_it_is_about() -> None:
    staff, departments = complaint_exclusions(about_handler=WANG.staff_id, about_department="claims-motor")
    motor_only = [
        LI,
        WANG,
        Candidate(7, "sun.lei", StaffRole.handler, "claims-health", frozenset(), frozenset({"zh-CN"})),
    ]
    chosen = choose_handler(
        _request(kind=CaseKind.complaint, excluded_staff=staff, excluded_departments=departments), motor_only
    )
    assert chosen.username == "sun.lei"
    with pytest.raises(NoEligibleHandler, match="outside the excluded handler and department"):
        choose_handler(
            _request(kind=CaseKind.complaint, excluded_staff=staff, excluded_departments=departments),
            [LI, WANG],
        )


def test_the_reason_says_what_matched() -> None:
    assert choose_handler(_request(), DESK).reason == "skill motor; speaks zh-CN; load 2/10"
    assert "no one with skill marine had room" in choose_handler(_request(product_line="marine"), DESK).reason


def test_nobody_free_is_a_clear_error() -> None:
    with pytest.raises(NoEligibleHandler, match="no active handler with free capacity for this claim"):
        choose_handler(_request(), [ZHAO])


@pytest.mark.parametrize(
    ("elderly", "vulnerable", "preferred", "simplified", "first", "visit"),
    [
        pytest.param(True, False, ContactChannel.email, True, ContactChannel.phone, True, id="elderly-phone-first"),
        pytest.param(False, True, ContactChannel.sms, True, ContactChannel.phone, True, id="vulnerable-phone-first"),
        pytest.param(False, False, ContactChannel.email, False, ContactChannel.email, False, id="others-as-they-prefer"),
    ],
)  # fmt: skip
def test_care_plan(elderly, vulnerable, preferred, simplified, first, visit) -> None:
    plan = care_plan(elderly=elderly, vulnerable=vulnerable, preferred=preferred)
    assert (plan.simplified_documents, plan.contact_first, plan.offer_home_visit) == (
        simplified,
        first,
        visit,
    )


def test_the_simplified_document_list_is_shorter_and_part_of_the_full_one() -> None:
    for line in ("motor", "health", "property", None):
        full, short = documents_for(line, simplified=False), documents_for(line, simplified=True)
        assert set(short) < set(full)


def test_missing_documents_keep_the_order_asked() -> None:
    asked = documents_for("motor", simplified=True)
    assert missing_documents(asked, ["Repair Invoice "]) == ("claim form", "bank account details")


@pytest.mark.parametrize(
    ("amount", "needed"),
    [(None, False), (Decimal("49999.99"), False), (Decimal("50000"), True), (Decimal("120000"), True)],
)
def test_second_approval_threshold(amount, needed) -> None:
    assert needs_second_approval(amount, Decimal("50000")) is needed

"""``claimflow demo``: sample cases walked through their lifecycles, so a newcomer sees the desk work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import Engine

from claimflow.db import session_scope
from models.enums import CaseKind, Channel, ContactChannel
from models.staff import StaffDirectory
from models.tables import CaseCreate, CustomerCreate
from tasks.cases import apply_transition, file_case
from tasks.staff import import_directory


@dataclass(frozen=True)
class DemoCase:
    number: str
    kind: str
    status: str
    story: str


def sample_directory() -> StaffDirectory:
    text = (resources.files("claimflow") / "examples" / "staff.yaml").read_text(encoding="utf-8")
    return StaffDirectory.model_validate(yaml.safe_load(text))


def run_demo(engine: Engine, *, now: datetime) -> list[DemoCase]:
    """Load the sample desk and file three cases; each move is its own transaction, as at a real desk."""
    with session_scope(engine) as session:
        import_directory(session, directory=sample_directory())
    clock = iter(now + timedelta(minutes=i) for i in range(1000))

    def file(kind: CaseKind, channel: Channel, customer: CustomerCreate, **fields: Any) -> str:
        with session_scope(engine) as session:
            data = CaseCreate(kind=kind, channel=channel, customer=customer, **fields)
            return file_case(session, data=data, actor="demo", now=next(clock)).number

    def move(number: str, actor: str, *steps: tuple[str, dict[str, Any]]) -> str:
        status = ""
        for action, data in steps:
            with session_scope(engine) as session:
                case, _ = apply_transition(
                    session, number=number, action=action, actor=actor, now=next(clock), data=data
                )
                status = case.status
        return status

    claim = file(
        CaseKind.claim,
        Channel.phone,
        CustomerCreate(name="张三丰", phone="13812345678", birth_date=datetime(1950, 3, 2).date(),  # noqa: DTZ001
                       elderly=True, preferred_channel=ContactChannel.phone),
        product_line="motor", policy_number="P-778899", amount_claimed=Decimal("12800.50"),
    )  # fmt: skip
    claim_status = move(
        claim,
        "li.wei",
        ("start_review", {}),
        ("request_documents", {"documents": ["police report", "repair invoice"]}),
        ("documents_received", {}),
        ("approve", {"amount": "12000.00"}),
        ("record_payment", {"amount": "12000.00"}),
        ("request_feedback", {}),
    )
    complaint = file(
        CaseKind.complaint,
        Channel.email,
        CustomerCreate(name="Wang Fang", email="wang.fang@example.com", language="en"),
        product_line="motor", related_case_number=claim,
        description="The assessor was late twice.",
    )  # fmt: skip
    complaint_status = move(complaint, "chen.jing", ("acknowledge", {}), ("start_investigation", {}))
    inquiry = file(
        CaseKind.inquiry,
        Channel.webhook,
        CustomerCreate(name="刘洋", email="liu.yang@example.com"),
        product_line="health", description="Is physiotherapy covered?",
    )  # fmt: skip
    inquiry_status = move(inquiry, "liu.yang", ("answer", {"answer": "Yes, up to 20 sessions a year."}))
    return [
        DemoCase(claim, "claim", claim_status, "reviewed, documents asked once and received, approved, paid"),
        DemoCase(complaint, "complaint", complaint_status, "about the claim, with the independent complaints team"),
        DemoCase(inquiry, "inquiry", inquiry_status, "answered"),
    ]

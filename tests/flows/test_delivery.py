"""The deliver-outbox flow on a real Prefect server, a real database and a real SMTP server."""

from __future__ import annotations

import email
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine
from sqlmodel import Session, select

from claimflow.db import session_scope
from claimflow.settings import get_settings
from flows.delivery import QUEUED_EVENT, deliver_outbox, deliver_outbox_deployment
from models.enums import CaseKind, Channel, OutboxStatus
from models.messages import CATALOGUE
from models.tables import CaseCreate, CustomerCreate, Outbox
from tasks.cases import file_case
from tasks.outbox import enqueue
from tests.ports import free_port

NOW = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)


class SmtpSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email_policy.default))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.controller.start()
    yield sink
    sink.controller.stop()


@pytest.fixture
def configured(database_url: str, engine: Engine, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv(
        "CLAIMFLOW_CUSTOMER_EMAIL_URL",
        f"mailto://127.0.0.1:{smtp.port}?mode=insecure&from=desk@insurer.example",
    )
    get_settings.cache_clear()
    yield engine
    get_settings.cache_clear()


def _queue_acknowledgements(engine: Engine, count: int) -> None:
    with session_scope(engine) as session:
        for i in range(count):
            case = file_case(
                session,
                data=CaseCreate(
                    kind=CaseKind.claim,
                    channel=Channel.email,
                    customer=CustomerCreate(name=f"客户{i}", email=f"customer{i}@example.com"),
                ),
                actor="intake",
                now=NOW,
            )
            context = {**CATALOGUE["acknowledgement_claim"].sample, "case_number": case.number}
            enqueue(
                session,
                template="acknowledgement_claim",
                recipient=f"customer:{case.customer_id}",
                context=context,
                idempotency_key=f"ack:{case.number}",
                now=NOW,
                case=case,
            )


def test_the_flow_drains_the_outbox_in_batches(prefect_server: None, configured: Engine, smtp: SmtpSink) -> None:
    _queue_acknowledgements(configured, 5)

    result = deliver_outbox(max_batches=10, batch_size=2)

    assert result["claimed"] == 5 and result["sent"] == 5
    assert sorted(m["To"] for m in smtp.messages) == [f"customer{i}@example.com" for i in range(5)]
    with Session(configured) as session:
        assert {r.status for r in session.exec(select(Outbox))} == {OutboxStatus.sent}
    assert deliver_outbox(max_batches=10)["claimed"] == 0  # nothing twice


def test_the_deployment_runs_on_a_schedule_and_on_the_queued_event() -> None:
    deployment = deliver_outbox_deployment(interval_seconds=5)
    assert deployment.name == "deliver-outbox"
    [schedule] = deployment.schedules
    assert schedule.schedule.interval.total_seconds() == 5
    [trigger] = deployment.triggers
    assert trigger.expect == {QUEUED_EVENT}

"""The outbox on a real database (SQLite and PostgreSQL), delivering to a real SMTP server and HTTP receiver."""

from __future__ import annotations

import email
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from claimflow.db import session_scope
from models.delivery import DeliveryPolicy
from models.enums import CaseKind, Channel, ContactChannel, OutboxStatus, StaffRole
from models.errors import InvalidInput
from models.messages import CATALOGUE
from models.tables import Case, CaseCreate, CustomerCreate, Event, Outbox, Staff, Step
from models.wording import load_rules, parse_rules
from tasks.cases import file_case
from tasks.outbox import (
    OUTBOX_ID_HEADER,
    Message,
    OutboxConfig,
    Queued,
    claim_due,
    deliver_batch,
    drain,
    due_statement,
    enqueue,
    enqueue_many,
    mask_secrets,
    record_result,
    retry,
)
from tasks.outbox import _environment as shared_environment
from tests.ports import free_port
from tests.tasks.test_cases import rewind_ids, table_rows

T0 = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)


# --- real receivers -------------------------------------------------------------------------------------


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Any] = []
        self.connections = 0
        self._controller: Controller | None = None

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        parsed = email.message_from_bytes(envelope.content, policy=email_policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?mode=insecure&from=desk@insurer.example"


@dataclass
class HttpReceiver:
    """A local HTTP server that keeps every POST (path, headers, JSON body): the staff webhook."""

    port: int = field(default_factory=free_port)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(body or b"{}")}
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def webhook() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def config(smtp: SmtpSink, webhook: HttpReceiver) -> OutboxConfig:
    hook = f"json://127.0.0.1:{webhook.port}"
    return OutboxConfig(
        env=shared_environment(),
        rules=load_rules(),
        policy=DeliveryPolicy(max_attempts=3, base_seconds=60, max_seconds=600, jitter=0.2, lease_seconds=120),
        desk={"phone": "010-0000-0000", "email": "service@insurer.example"},
        customer_email_url=SecretStr(smtp.url),
        customer_sms_url=SecretStr(f"{hook}/sms?-to={{phone}}"),
        staff_channels={
            "department:claims-motor": [SecretStr(f"{hook}/claims-motor")],
            "role:supervisor": [SecretStr(f"{hook}/supervisors")],
        },
    )


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **kwargs: float) -> None:
        self.at += timedelta(**kwargs)


# --- helpers ----------------------------------------------------------------------------------------------


def _file(
    engine: Engine,
    *,
    language: str = "zh-CN",
    contact: ContactChannel = ContactChannel.email,
    email_address: str | None = "zhang.san@example.com",
    name: str = "张三",
) -> Case:
    with session_scope(engine) as session:
        handler = Staff(username="li.wei", name="李伟", role=StaffRole.handler, email="li.wei@insurer.example")
        session.add(handler)
        session.flush()
        case = file_case(
            session,
            data=CaseCreate(
                kind=CaseKind.claim,
                channel=Channel.email,
                customer=CustomerCreate(
                    name=name,
                    email=email_address,
                    phone="13812345678",
                    language=language,
                    preferred_channel=contact,
                ),
            ),
            actor="intake",
            now=T0,
        )
        case.handler_id = handler.id
        session.add(case)
        return case


def _queue(
    engine: Engine,
    case: Case,
    config: OutboxConfig,
    template: str = "acknowledgement_claim",
    key: str | None = None,
    **changes: Any,
) -> Any:
    context = {**CATALOGUE[template].sample, "case_number": case.number, **changes}
    context.pop("customer_name", None)
    with session_scope(engine) as session:
        return enqueue(
            session,
            template=template,
            recipient=f"customer:{case.customer_id}",
            context=context,
            idempotency_key=key or f"{template}:{case.number}",
            now=T0,
            case=case,
            config=config,
        )


def _rows(engine: Engine) -> list[Outbox]:
    with Session(engine) as session:
        return list(session.exec(select(Outbox).order_by(col(Outbox.id))))


def _events(engine: Engine, case: Case) -> list[Event]:
    with Session(engine) as session:
        return list(session.exec(select(Event).where(Event.case_id == case.id).order_by(col(Event.sequence))))


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --- tests ------------------------------------------------------------------------------------------------


def test_a_customer_acknowledgement_arrives_by_smtp_in_chinese_with_its_headers(
    engine: Engine, smtp: SmtpSink, config: OutboxConfig
) -> None:
    case = _file(engine)
    queued = _queue(engine, case, config)
    assert queued.queued and queued.outbox.channel == "email" and queued.outbox.language == "zh-CN"
    assert "customer_name" not in queued.outbox.context  # personal data stays in Customer

    report = drain(engine, now=Clock(), config=config)

    assert (report.claimed, report.sent) == (1, 1)
    [message] = smtp.messages
    assert message["Subject"] == f"理赔申请已受理：{case.number}"
    assert message["To"] == "zhang.san@example.com"
    assert message["From"].endswith("<desk@insurer.example>") or message["From"] == "desk@insurer.example"
    assert message[OUTBOX_ID_HEADER] == str(queued.outbox.id)
    assert message["Message-ID"]
    assert smtp.envelopes[0].rcpt_tos == ["zhang.san@example.com"]
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    assert "尊敬的张三：" in plain.get_content()
    assert f"案件号为 {case.number}" in plain.get_content()
    assert "2026年3月" in plain.get_content()
    assert "<p>尊敬的张三：</p>" in html.get_content()
    [row] = _rows(engine)
    assert (row.status, row.attempts, row.sent_at, row.last_error) == (OutboxStatus.sent, 1, T0, None)


def test_an_english_speaking_customer_is_written_to_in_english(
    engine: Engine, smtp: SmtpSink, config: OutboxConfig
) -> None:
    case = _file(engine, language="en-GB", name="Wei Li")
    _queue(engine, case, config)
    drain(engine, now=Clock(), config=config)
    [message] = smtp.messages
    assert message["Subject"] == f"We have received your claim {case.number}"
    plain = message.get_body(("plain",))
    assert plain is not None and "Dear Wei Li," in plain.get_content()


def test_a_customer_who_prefers_sms_gets_it_through_the_gateway(
    engine: Engine, webhook: HttpReceiver, config: OutboxConfig
) -> None:
    case = _file(engine, contact=ContactChannel.sms)
    queued = _queue(engine, case, config)
    assert queued.outbox.channel == "sms"
    drain(engine, now=Clock(), config=config)
    [request] = webhook.requests
    assert request["path"].startswith("/sms?to=13812345678")
    assert request["json"]["title"] == f"理赔申请已受理：{case.number}"
    assert "尊敬的张三" in request["json"]["message"] and "<p>" not in request["json"]["message"]


def test_a_staff_message_goes_to_the_department_webhook(
    engine: Engine, webhook: HttpReceiver, config: OutboxConfig
) -> None:
    case = _file(engine)
    with session_scope(engine) as session:
        queued = enqueue(
            session,
            template="staff_new_assignment",
            recipient="department:claims-motor",
            context={**CATALOGUE["staff_new_assignment"].sample, "case_number": case.number},
            idempotency_key=f"assigned:{case.number}:li.wei",
            now=T0,
            case=case,
            config=config,
        )
    assert queued.outbox.channel == "staff" and queued.outbox.language == "zh-CN"
    assert drain(engine, now=Clock(), config=config).sent == 1
    [request] = webhook.requests
    assert request["path"] == "/claims-motor"
    assert request["headers"][OUTBOX_ID_HEADER] == str(queued.outbox.id)
    assert request["json"]["title"] == f"新案件分配：{case.number}"
    assert "李伟" in request["json"]["message"]


def test_smtp_down_means_retries_with_backoff_then_dead_letter_and_a_staff_alert(
    engine: Engine, smtp: SmtpSink, webhook: HttpReceiver, config: OutboxConfig
) -> None:
    case = _file(engine)
    queued = _queue(engine, case, config)
    smtp.stop()
    clock = Clock()

    first = drain(engine, now=clock, config=config, random=lambda: 0.5)
    [row] = _rows(engine)
    assert (first.claimed, first.retried) == (1, 1)
    assert (row.status, row.attempts, row.next_attempt_at) == (
        OutboxStatus.pending,
        1,
        T0 + timedelta(seconds=60),
    )
    assert row.last_error and "zhang.san@example.com" not in row.last_error  # masked

    clock.advance(seconds=59)
    assert drain(engine, now=clock, config=config).claimed == 0  # not due yet
    clock.advance(seconds=1)
    assert drain(engine, now=clock, config=config, random=lambda: 0.5).retried == 1
    [row] = _rows(engine)
    assert (row.attempts, row.next_attempt_at) == (2, clock.at + timedelta(seconds=120))  # doubled

    clock.advance(seconds=120)
    last = drain(engine, now=clock, config=config, random=lambda: 0.5)
    assert last.dead == 1 and last.sent == 1  # the dead letter, then the alert about it
    rows = _rows(engine)
    assert [(r.template, r.status) for r in rows] == [
        ("acknowledgement_claim", OutboxStatus.dead),
        ("staff_dead_letter", OutboxStatus.sent),
    ]
    assert rows[0].attempts == 3
    [alert] = webhook.requests
    assert alert["path"] == "/supervisors"
    assert f"#{queued.outbox.id}" in alert["json"]["title"]
    assert f"claimflow outbox retry {queued.outbox.id}" in alert["json"]["message"]
    assert "zhang.san@example.com" not in json.dumps(alert["json"], ensure_ascii=False)
    assert [e.type for e in _events(engine, case)][-1] == "message_dead_lettered"
    assert smtp.messages == []


def test_a_message_that_failed_once_is_delivered_when_smtp_comes_back(
    engine: Engine, smtp: SmtpSink, config: OutboxConfig
) -> None:
    case = _file(engine)
    _queue(engine, case, config)
    smtp.stop()
    clock = Clock()
    drain(engine, now=clock, config=config, random=lambda: 0.0)
    smtp.start()
    clock.advance(minutes=5)
    assert drain(engine, now=clock, config=config).sent == 1
    [row] = _rows(engine)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.sent, 2, None)
    assert len(smtp.messages) == 1


def test_a_message_is_queued_once_per_idempotency_key(engine: Engine, config: OutboxConfig) -> None:
    case = _file(engine)
    first = _queue(engine, case, config, key="ack:1")
    second = _queue(engine, case, config, key="ack:1")
    assert first.queued and not first.duplicate
    assert second.duplicate and second.outbox.id == first.outbox.id
    assert len(_rows(engine)) == 1


def test_a_rejection_without_its_clause_is_held_back_and_the_handler_gets_a_task(
    engine: Engine, smtp: SmtpSink, config: OutboxConfig
) -> None:
    case = _file(engine)
    result = _queue(engine, case, config, template="decision", outcome="rejected", clause="")
    assert not result.queued
    assert [v.rule_id for v in result.violations] == ["rejection-states-reasons-and-clause"]
    [held] = _rows(engine)  # kept with its values, not sent
    assert (held.status, held.last_error) == ("held", "held by the wording check: rejection-states-reasons-and-clause")
    event = _events(engine, case)[-1]
    assert event.type == "wording_check_failed"
    assert event.data["rules"] == ["rejection-states-reasons-and-clause"]
    with Session(engine) as session:
        [step] = session.exec(select(Step).where(Step.case_id == case.id, Step.name == "fix_wording")).all()
        handler = session.exec(select(Staff).where(Staff.username == "li.wei")).one()
    assert step.assignee_id == handler.id and step.status == "open"
    assert step.outcome == "rejection-states-reasons-and-clause"
    assert step.policy_rule is not None and "decision/zh-CN" in step.policy_rule and "条款" in step.policy_rule
    assert drain(engine, now=Clock(), config=config).claimed == 0 and smtp.messages == []

    # the handler writes the clause the letter lacked: checked again, queued, and the task is done
    from models.errors import InvalidInput, NotFound
    from tasks.outbox import release_held

    with pytest.raises(InvalidInput, match="has no value amount_in_words"), session_scope(engine) as session:
        release_held(session, now=T0, config=config, outbox_id=held.id, edits={"amount_in_words": "x"})
    with pytest.raises(NotFound, match="no held message 99"), session_scope(engine) as session:
        release_held(session, now=T0, config=config, outbox_id=99)
    with session_scope(engine) as session:
        still = release_held(session, now=T0, config=config)
    assert [reason for _, reason in still.still_held] == [
        "held by the wording check: rejection-states-reasons-and-clause"
    ]
    with session_scope(engine) as session:
        done = release_held(session, now=T0, config=config, outbox_id=held.id, by="li.wei",
                            edits={"clause": "第七条第二款：酒后驾驶不予赔付"})  # fmt: skip
    assert [row.id for row in done.queued] == [held.id] and done.still_held == []
    with Session(engine) as session:
        [step] = session.exec(select(Step).where(Step.case_id == case.id, Step.name == "fix_wording")).all()
    assert (step.status, step.outcome) == ("done", "released")
    assert [e.type for e in _events(engine, case)][-3:] == ["message_edited", "step_completed", "message_released"]
    assert drain(engine, now=Clock(), config=config).sent == 1
    assert "第七条第二款" in smtp.messages[-1].get_body(("plain",)).get_content()


def test_a_promise_of_returns_in_a_free_text_value_is_held_back(engine: Engine, config: OutboxConfig) -> None:
    case = _file(engine)
    result = _queue(engine, case, config, template="extension_notice", reason="该产品保本保息，稳赚不赔")
    assert [v.rule_id for v in result.violations] == ["no-promised-returns"]
    assert "保本" in result.violations[0].detail
    second = _queue(engine, case, config, template="extension_notice", key="again", reason="保证收益")
    assert not second.queued
    with Session(engine) as session:
        steps = session.exec(select(Step).where(Step.case_id == case.id).order_by(col(Step.attempt))).all()
    assert [(s.name, s.attempt) for s in steps] == [("fix_wording", 1), ("fix_wording", 2)]


def test_a_queued_message_that_no_longer_passes_the_rules_is_blocked_not_sent(
    engine: Engine, smtp: SmtpSink, config: OutboxConfig
) -> None:
    case = _file(engine)
    _queue(engine, case, config)
    stricter = parse_rules(
        {
            "rules": [
                {
                    "id": "no-deadline-promises",
                    "kind": "forbid",
                    "explanation": {"en": "x"},
                    "patterns": {"zh-CN": ["最迟于"]},
                }
            ]
        }
    )
    report = drain(engine, now=Clock(), config=replace(config, rules=stricter))
    assert report.blocked == 1 and smtp.messages == []
    [row] = _rows(engine)
    assert row.status == OutboxStatus.blocked and "no-deadline-promises" in (row.last_error or "")
    assert _events(engine, case)[-1].type == "message_blocked"


def test_a_sender_that_dies_leaves_its_messages_to_come_back_after_the_lease(
    engine: Engine, smtp: SmtpSink, config: OutboxConfig
) -> None:
    case = _file(engine)
    _queue(engine, case, config)
    clock = Clock()
    with session_scope(engine) as session:  # claimed, then the process "dies" before sending
        [claimed] = claim_due(session, now=clock(), limit=10, policy=config.policy)
        stale_attempt = claimed.attempts
    assert drain(engine, now=clock, config=config).claimed == 0  # leased
    clock.advance(seconds=121)
    assert drain(engine, now=clock, config=config).sent == 1
    [row] = _rows(engine)
    assert (row.status, row.attempts) == (OutboxStatus.sent, 2)
    with session_scope(engine) as session:  # the dead sender's late result is not recorded over it
        assert (
            record_result(session, outbox_id=row.id or 0, attempt=stale_attempt, error=None, now=clock(), config=config)
            is None
        )


def test_four_senders_deliver_every_message_once_over_reused_connections(
    engine: Engine, smtp: SmtpSink, config: OutboxConfig
) -> None:
    case = _file(engine)
    for i in range(150):
        _queue(engine, case, config, key=f"ack:{i}")

    report = drain(engine, now=Clock(), config=replace(config, batch_size=10), senders=4)

    assert (report.claimed, report.sent) == (150, 150)
    ids = [int(message[OUTBOX_ID_HEADER]) for message in smtp.messages]
    assert len(ids) == 150 and sorted(set(ids)) == sorted(r.id for r in _rows(engine))
    assert smtp.connections <= 4  # one per sender, not one per message
    assert {r.status for r in _rows(engine)} == {OutboxStatus.sent}


def test_concurrent_claimers_never_take_the_same_message(engine: Engine, config: OutboxConfig) -> None:
    case = _file(engine)
    with session_scope(engine) as session:
        for i in range(120):
            enqueue(
                session,
                template="staff_reminder",
                recipient="role:supervisor",
                context={**CATALOGUE["staff_reminder"].sample, "case_number": case.number},
                idempotency_key=f"reminder:{i}",
                now=T0,
                case=case,
                config=config,
            )
    claimed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def claimer() -> None:
        try:
            start.wait()
            while True:
                with session_scope(engine) as session:
                    rows = claim_due(session, now=T0, limit=7, policy=config.policy)
                    ids = [r.id for r in rows if r.id is not None]
                    time.sleep(0.01)  # hold the rows while the others try
                if not ids:
                    return
                with lock:
                    claimed.extend(ids)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(claimed) == 120 and len(set(claimed)) == 120
    assert {r.status for r in _rows(engine)} == {OutboxStatus.sending}


def test_a_dead_message_can_be_put_back_by_hand(engine: Engine, smtp: SmtpSink, config: OutboxConfig) -> None:
    case = _file(engine, email_address=None, contact=ContactChannel.email)
    config = replace(config, customer_sms_url=None)  # no e-mail address and no SMS gateway: permanent
    queued = _queue(engine, case, config)
    report = deliver_batch(engine, now=Clock(), config=config)
    assert report.dead == 1  # at once: waiting cannot help
    [row, _alert] = _rows(engine)
    assert row.status == OutboxStatus.dead and "no SMS gateway configured" in (row.last_error or "")
    with session_scope(engine) as session:
        with pytest.raises(InvalidInput, match="only dead or blocked"):
            retry(session, outbox_id=_alert.id or 0, now=T0)
        again = retry(session, outbox_id=queued.outbox.id, now=T0, actor="wang.fang")
    assert (again.status, again.attempts) == (OutboxStatus.pending, 0)
    assert _events(engine, case)[-1].type == "message_retried"


@pytest.mark.parametrize("senders", [1, 3])
def test_a_sender_that_cannot_reach_the_database_fails_the_drain_and_the_caller_is_told(
    config: OutboxConfig, senders: int
) -> None:
    """The senders are threads: a failure in one (the database gone) ends the drain with that error for the
    caller to log and try again (the desk runner's loop, ``claimflow outbox deliver``), not a quiet empty report."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    gone = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    runner_stop = threading.Event()  # the desk runner's: a failed pass must not look like the runner stopping
    with pytest.raises(OperationalError):
        drain(gone, now=Clock(), config=config, senders=senders, stop=runner_stop)
    assert not runner_stop.is_set()  # else every later pass of the runner's loop stopped before sending anything


def test_stop_set_from_another_thread_ends_the_drain_after_the_message_in_hand(
    engine: Engine, config: OutboxConfig
) -> None:
    """``drain(stop=...)``: the desk runner stopping sets it; each sender records the message in hand, gives the
    rest of its batch back due now, and the drain returns what was done instead of going on through its batches."""
    import asyncio

    halt = threading.Event()

    class SlowSink(SmtpSink):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            answer = await super().handle_DATA(server, session, envelope)
            halt.set()  # the runner stops while the first message is in hand
            await asyncio.sleep(0.3)
            return answer

    sink = SlowSink()
    sink.start()
    try:
        slow = replace(config, customer_email_url=SecretStr(sink.url), batch_size=5)
        case = _file(engine)
        for i in range(30):
            _queue(engine, case, slow, key=f"ack:{i}")
        report = drain(engine, now=Clock(), config=slow, senders=2, max_batches=100, stop=halt)
    finally:
        sink.stop()
    rows = _rows(engine)
    sent = {r.id for r in rows if r.status == OutboxStatus.sent}
    assert 1 <= report.sent == len(sent) == len(sink.messages) <= 2  # at most the one in hand, a sender
    assert report.claimed <= 2 * 5 and report.returned == report.claimed - report.sent > 0  # no second batch
    rest = [r for r in rows if r.id not in sent]
    assert {(r.status, r.attempts) for r in rest} == {(OutboxStatus.pending, 0)}  # none left 'sending'


def test_secrets_in_channel_urls_never_reach_logs_or_the_database(
    engine: Engine, smtp: SmtpSink, config: OutboxConfig, caplog: pytest.LogCaptureFixture
) -> None:
    case = _file(engine)
    smtp.stop()
    secret_url = f"mailto://desk:TopSecret42@127.0.0.1:{smtp.port}?mode=insecure&from=desk@insurer.example"
    config = replace(config, customer_email_url=SecretStr(secret_url))
    _queue(engine, case, config)
    with caplog.at_level(logging.DEBUG):
        drain(engine, now=Clock(), config=config)
    [row] = _rows(engine)
    assert row.status == OutboxStatus.pending and row.last_error
    assert "TopSecret42" not in caplog.text and "TopSecret42" not in row.last_error
    assert "TopSecret42" not in repr(config)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        pytest.param("mailtos://user:pw@smtp.example:587", "mailtos://***@smtp.example:587", id="url-credentials"),
        pytest.param('Sending email to "zhang.san@example.com" failed', '"z********@example.com" failed', id="address"),
        pytest.param("SMS to +8613812345678 failed", "SMS to 861******5678 failed", id="phone"),
    ],
)
def test_mask_secrets(text: str, masked: str) -> None:
    assert masked in mask_secrets(text)


def test_a_customer_message_needs_a_customer_and_its_case(engine: Engine, config: OutboxConfig) -> None:
    case = _file(engine)
    context = {**CATALOGUE["acknowledgement_claim"].sample}
    with session_scope(engine) as session:
        with pytest.raises(InvalidInput, match="not a customer"):
            enqueue(
                session,
                template="acknowledgement_claim",
                recipient="role:supervisor",
                context=context,
                idempotency_key="a",
                now=T0,
                case=case,
                config=config,
            )
        with pytest.raises(InvalidInput, match="needs the case"):
            enqueue(
                session,
                template="acknowledgement_claim",
                recipient=f"customer:{case.customer_id}",
                context=context,
                idempotency_key="b",
                now=T0,
                config=config,
            )
        with pytest.raises(InvalidInput, match="not a reference"):
            enqueue(
                session,
                template="staff_reminder",
                recipient="li.wei",
                context=context,
                idempotency_key="c",
                now=T0,
                config=config,
            )


# --- many messages at once ----------------------------------------------------------------------------------


def _messages(case: Case) -> list[Message]:
    """A customer acknowledgement, a staff message, a rejection the wording rules hold back, a key given twice
    and a key queued before."""
    customer = f"customer:{case.customer_id}"
    ack = {**CATALOGUE["acknowledgement_claim"].sample, "case_number": case.number}
    rejection = {**CATALOGUE["decision"].sample, "case_number": case.number, "outcome": "rejected", "clause": ""}
    assignment = {**CATALOGUE["staff_new_assignment"].sample, "case_number": case.number, "due_at": T0}
    return [
        Message("acknowledgement_claim", customer, ack, f"ack:{case.number}", case=case),
        Message("staff_new_assignment", "department:claims-motor", assignment, f"assigned:{case.number}", case=case),
        Message("decision", customer, rejection, f"decision:{case.number}", case=case),
        Message("staff_new_assignment", "staff:li.wei", assignment, f"assigned:{case.number}", case=case),
        Message("acknowledgement_claim", customer, ack, "queued-before", case=case, language="en"),
    ]


def _enqueue_each(session: Session, messages: list[Message], config: OutboxConfig) -> list[Queued]:
    results = []
    for m in messages:
        one = enqueue(session, template=m.template, recipient=m.recipient, context=m.context, now=T0, case=m.case,
                      idempotency_key=m.idempotency_key, language=m.language, config=config)  # fmt: skip
        results.append(Queued(one.outbox.id if one.outbox else None, one.duplicate, one.violations))
    return results


def test_many_messages_at_once_write_what_one_at_a_time_writes(engine: Engine, config: OutboxConfig) -> None:
    case = _file(engine)
    before = _queue(engine, case, config, key="queued-before")
    tables = ("outbox", "event", "step")
    with Session(engine) as session:
        expected = _enqueue_each(session, _messages(case), config)
        written = table_rows(session, *tables)
        session.rollback()
        rewind_ids(session, *tables)
    with session_scope(engine) as session:
        results = enqueue_many(session, _messages(case), now=T0, config=config)
    with Session(engine) as session:
        assert table_rows(session, *tables) == written
    assert results == expected
    ack, staff, held, twice, again = results
    assert not ack.duplicate and not staff.duplicate and held.outbox_id is None
    assert [v.rule_id for v in held.violations] == ["rejection-states-reasons-and-clause"]
    assert twice == Queued(staff.outbox_id, duplicate=True)
    assert again == Queued(before.outbox.id, duplicate=True)
    assert [e.type for e in _events(engine, case)] == ["filed", "wording_check_failed"]


def test_many_messages_queued_again_write_nothing(engine: Engine, config: OutboxConfig) -> None:
    case = _file(engine)
    with session_scope(engine) as session:
        first = enqueue_many(session, _messages(case)[:2], now=T0, config=config)
    with session_scope(engine) as session:
        second = enqueue_many(session, _messages(case)[:2], now=T0 + timedelta(hours=1), config=config)
    assert [q.duplicate for q in first] == [False, False]
    assert second == [Queued(q.outbox_id, duplicate=True) for q in first]
    assert [r.created_at for r in _rows(engine)] == [T0, T0]


def test_one_wrong_message_queues_none_of_the_batch(engine: Engine, config: OutboxConfig) -> None:
    case = _file(engine)
    wrong = Message("staff_reminder", "li.wei", {}, "c")
    with pytest.raises(InvalidInput, match="not a reference"), session_scope(engine) as session:
        enqueue_many(session, [*_messages(case)[:2], wrong], now=T0, config=config)
    missing = Message("staff_reminder", "staff:li.wei", {"case_number": case.number}, "d")
    with pytest.raises(InvalidInput, match="needs step, percent"), session_scope(engine) as session:
        enqueue_many(session, [*_messages(case)[:2], missing], now=T0, config=config)
    with session_scope(engine) as session:
        assert enqueue_many(session, [], now=T0, config=config) == []
    assert _rows(engine) == []


def test_a_batch_of_staff_messages_is_rendered_once_per_shape_and_a_new_shape_still_fails(
    engine: Engine, config: OutboxConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = _file(engine)
    rendered: list[str] = []
    real = OutboxConfig.render

    def counted(self: OutboxConfig, template: str, **kwargs: Any) -> Any:
        rendered.append(template)
        return real(self, template, **kwargs)

    monkeypatch.setattr(OutboxConfig, "render", counted)
    reminder = {"case_number": case.number, "step": "review", "percent": 50, "handler_name": "li.wei", "due_at": T0,
                "case_url": "claimflow case show"}  # fmt: skip
    batch = [
        Message("staff_reminder", "staff:li.wei", {**reminder, "percent": p}, f"r{p}", case=case) for p in range(50)
    ]
    with session_scope(engine) as session:
        assert all(q.outbox_id for q in enqueue_many(session, batch, now=T0, config=config))
    assert rendered == ["staff_reminder"]  # fifty of one shape: one render
    no_due = {k: v for k, v in reminder.items() if k != "due_at"}
    with pytest.raises(InvalidInput, match="due_at"), session_scope(engine) as session:
        enqueue_many(session, [Message("staff_reminder", "staff:li.wei", no_due, "r-missing", case=case)], now=T0,
                     config=config)  # fmt: skip
    assert len(_rows(engine)) == 50


def test_a_letter_held_for_the_desk_phone_that_also_breaks_the_wording_gets_its_task_when_checked_again(
    engine: Engine, config: OutboxConfig
) -> None:
    """Held first because the desk's phone was not set (its wording never checked); once the phone is set, the
    release finds the missing clause: the handler gets the fix_wording task then, not never."""
    from dataclasses import replace

    from tasks.outbox import release_held

    case = _file(engine)
    _queue(engine, case, replace(config, desk={"phone": "", "email": "service@insurer.example"}), template="decision",
           outcome="rejected", clause="")  # fmt: skip
    assert [e.type for e in _events(engine, case)][-1] == "message_held"
    with session_scope(engine) as session:
        still = release_held(session, now=T0, config=config)
    assert [why for _, why in still.still_held] == ["held by the wording check: rejection-states-reasons-and-clause"]
    with Session(engine) as session:
        [step] = session.exec(select(Step).where(Step.case_id == case.id, Step.name == "fix_wording")).all()
    assert step.status == "open" and step.policy_rule.startswith("decision/zh-CN:")
    with session_scope(engine) as session:  # checked again: the task is not opened twice
        release_held(session, now=T0, config=config)
    with Session(engine) as session:
        assert len(session.exec(select(Step).where(Step.name == "fix_wording")).all()) == 1


def test_a_message_queued_before_the_desk_phone_was_unset_is_held_at_delivery_not_dead_lettered(
    engine: Engine, config: OutboxConfig
) -> None:
    from dataclasses import replace

    case = _file(engine)
    _queue(engine, case, config)  # queued while the phone was set
    clock = Clock()
    drain(engine, now=clock, config=replace(config, desk={"phone": "", "email": "service@insurer.example"}))
    [row] = [r for r in _rows(engine) if r.template == "acknowledgement_claim"]
    assert (row.status, row.last_error) == (
        "held",
        "the desk's CLAIMFLOW_DESK_PHONE is not set: customer messages quote it",
    )
    assert "message_held" in [e.type for e in _events(engine, case)]


def test_held_letters_are_checked_again_in_turn_so_a_stuck_one_never_hides_the_others(
    engine: Engine, config: OutboxConfig
) -> None:
    from dataclasses import replace

    from tasks.outbox import release_held

    case = _file(engine)
    nophone = replace(config, desk={"phone": "", "email": "service@insurer.example"})
    _queue(engine, case, nophone, template="decision", outcome="rejected", clause="")  # stuck: no clause
    _queue(engine, case, nophone)  # the acknowledgement: sendable once the phone is set
    with session_scope(engine) as session:
        first = release_held(session, now=T0, config=config, limit=1)
    assert [row.template for row, _ in first.still_held] == ["decision"] and first.queued == []
    with session_scope(engine) as session:
        second = release_held(session, now=T0, config=config, limit=1)
    assert [row.template for row in second.queued] == ["acknowledgement_claim"]


def test_a_held_letter_about_a_decision_to_come_is_withdrawn_once_the_case_is_decided(
    engine: Engine, config: OutboxConfig
) -> None:
    """Held for the desk's phone, the acknowledgement promises the review by a date; the claim is decided before
    the phone is set: sending the promise now would be false. It is withdrawn, kept, and the case says so; a
    held letter that is still true (the decision) is sent."""
    from dataclasses import replace

    from tasks.outbox import release_held

    case = _file(engine)
    no_phone = replace(config, desk={"phone": "", "email": "service@insurer.example"})
    _queue(engine, case, no_phone)  # the acknowledgement, held
    _queue(engine, case, no_phone, template="decision", outcome="rejected", clause="4.2")
    with session_scope(engine) as session:
        held = session.get(Case, case.id)
        held.status = "rejected"  # decided meanwhile
        session.add(held)
    with session_scope(engine) as session:
        done = release_held(session, now=T0, config=config)
    assert [r.template for r in done.withdrawn] == ["acknowledgement_claim"]
    assert [r.template for r in done.queued] == ["decision"]
    rows = {r.template: r for r in _rows(engine)}
    assert (
        rows["acknowledgement_claim"].status == "withdrawn" and "rejected" in rows["acknowledgement_claim"].last_error
    )
    assert rows["decision"].status == "pending"
    assert "message_withdrawn" in [e.type for e in _events(engine, case)]
    with session_scope(engine) as session:  # checked again: nothing changes
        again = release_held(session, now=T0, config=config)
    assert not again.withdrawn and not again.queued


def test_staff_notices_the_worklist_already_shows_leave_after_every_due_message(
    engine: Engine, config: OutboxConfig
) -> None:
    """A case filed queues its customer's acknowledgement and its handler's new-assignment notice; in a surge of
    100,000 claims they left in the order queued, so the last acknowledgement waited for the last of 200,000
    messages. The notices (``MessageSpec.later``) now go after every due message, whenever they were queued; a staff
    message that asks for something (a reminder) keeps its place."""
    case = _file(engine)

    def staff(template: str, key: str, at: datetime) -> None:
        context = {**CATALOGUE[template].sample, "case_number": case.number}
        with session_scope(engine) as session:
            enqueue(session, template=template, recipient="staff:li.wei", context=context, idempotency_key=key,
                    now=at, case=case, config=config)  # fmt: skip

    for i in range(3):
        staff("staff_new_assignment", f"assigned:{i}", T0 - timedelta(minutes=5 - i))  # queued first
    _queue(engine, case, config)
    staff("staff_reminder", "reminder", T0)
    assert [(r.template, r.priority) for r in _rows(engine)] == [("staff_new_assignment", 1)] * 3 + [
        ("acknowledgement_claim", 0),
        ("staff_reminder", 0),
    ]
    with session_scope(engine) as session:
        first = claim_due(session, now=T0, limit=2, policy=config.policy)
        then = claim_due(session, now=T0, limit=10, policy=config.policy)
        assert [r.template for r in first] == ["acknowledgement_claim", "staff_reminder"]
        assert [r.idempotency_key for r in then] == ["assigned:0", "assigned:1", "assigned:2"]


def test_a_claim_reads_the_due_rows_through_the_partial_index_in_its_own_order(engine: Engine) -> None:
    """``claim_due``'s own statement, as the database plans it: through ``ix_outbox_due`` and with no sort, so a claim
    reads about as many rows as it takes however many wait (``bench/outbox_claim.py``: 228 ms a claim through a sort
    of 100,000 waiting rows on PostgreSQL before). The index is partial: each database uses it only where it sees the
    query's condition implies the index's, which is what this checks (PostgreSQL told not to scan the table, as it
    would for a handful of rows; SQLite told which index, as it chose the other without statistics)."""
    statement = due_statement(now=T0, limit=100, dialect=engine.dialect.name)
    sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = [row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}")]
        else:
            plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    assert any("ix_outbox_due" in line for line in plan), plan
    assert not any("Sort" in line or "B-TREE" in line for line in plan), plan


def _notice(engine: Engine, config: OutboxConfig, case: Case, recipient: str, number: str, at: datetime) -> int:
    """A new-assignment notice for ``number`` to ``recipient``, queued (and due) at ``at``; its outbox id."""
    context = {**CATALOGUE["staff_new_assignment"].sample, "case_number": number,
               "case_url": f"https://desk.example/cases/{number}", "worklist_url": "https://desk.example/runs"}  # fmt: skip
    with session_scope(engine) as session:
        queued = enqueue(session, template="staff_new_assignment", recipient=recipient, context=context,
                         idempotency_key=f"assigned:{recipient}:{number}", now=at, case=case, config=config)  # fmt: skip
        assert queued.outbox.id is not None
        return queued.outbox.id


def test_a_readers_new_assignment_notices_claimed_together_leave_as_one_digest(
    engine: Engine, smtp: SmtpSink, webhook: HttpReceiver, config: OutboxConfig
) -> None:
    """In a surge a claim takes a hundred notices; a handler's share leaves as one message listing the cases in the
    order they were assigned (zh-CN, office time), the others marked folded into it. Another reader's notice, and a
    notice claimed alone, leave as they always did."""
    case = _file(engine)
    numbers = [f"CLM-2026-00010{i}" for i in range(4)]
    ids = [
        _notice(engine, config, case, "staff:li.wei", n, T0 - timedelta(minutes=10 - i)) for i, n in enumerate(numbers)
    ]
    department = _notice(engine, config, case, "department:claims-motor", "CLM-2026-000200", T0)
    _queue(engine, case, config)  # the customer's acknowledgement leaves first
    later = _notice(engine, config, case, "staff:li.wei", "CLM-2026-000300", T0 + timedelta(hours=1))

    report = deliver_batch(engine, now=Clock(), config=config, limit=10)

    assert (report.claimed, report.sent, report.folded) == (6, 2 + 1, 3)
    rows = {r.id: r for r in _rows(engine)}
    carrier = rows[ids[0]]
    assert (carrier.status, carrier.template) == (OutboxStatus.sent, "staff_new_assignments")
    assert [(rows[i].status, rows[i].folded_into) for i in ids[1:]] == [(OutboxStatus.folded, carrier.id)] * 3
    assert rows[department].status == OutboxStatus.sent and rows[department].template == "staff_new_assignment"
    assert rows[later].status == OutboxStatus.pending  # not due: not in this claim
    to_handler = [m for m in smtp.messages if m["To"] == "li.wei@insurer.example"]
    assert len(to_handler) == 1 and len(smtp.messages) == 2  # the digest and the acknowledgement
    [digest] = to_handler
    assert digest["Subject"] == "新案件分配：4 件" and digest[OUTBOX_ID_HEADER] == str(carrier.id)
    body = digest.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert [line.split("（")[0].removeprefix("- ") for line in body.splitlines() if line.startswith("- ")] == numbers
    assert (
        "期限2026年3月7日 00:00" in body and body.count("https://desk.example/runs") == 1
    )  # office time; the worklist once
    [hook] = webhook.requests
    assert hook["json"]["title"] == "新案件分配：CLM-2026-000200"


def test_more_notices_for_one_reader_than_a_digest_holds_leave_as_several(
    engine: Engine, smtp: SmtpSink, config: OutboxConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DIGEST_MAX`` cases a digest; the rest start another, and one left over leaves as a notice of its own.
    Every case reaches the handler exactly once, in order."""
    monkeypatch.setattr("tasks.outbox.DIGEST_MAX", 2)
    case = _file(engine)
    numbers = [f"CLM-2026-00020{i}" for i in range(5)]
    for i, number in enumerate(numbers):
        _notice(engine, config, case, "staff:li.wei", number, T0 - timedelta(minutes=5 - i))

    report = drain(engine, now=Clock(), config=config)

    assert (report.claimed, report.sent, report.folded) == (5, 3, 2)
    subjects = sorted(m["Subject"] for m in smtp.messages)
    assert subjects == ["新案件分配：2 件", "新案件分配：2 件", "新案件分配：CLM-2026-000204"]
    listed = [line.split("（")[0].removeprefix("- ") for m in smtp.messages
              for line in m.get_body(preferencelist=("plain",)).get_content().splitlines()  # type: ignore[union-attr]
              if line.startswith("- ")]  # fmt: skip
    assert sorted(listed) == numbers[:4]
    assert sorted(r.status for r in _rows(engine)) == sorted([OutboxStatus.sent] * 3 + [OutboxStatus.folded] * 2)


def test_senders_side_by_side_fold_only_what_they_claimed_and_every_case_arrives_once(
    engine: Engine, smtp: SmtpSink, config: OutboxConfig
) -> None:
    """Four senders, claims of 7, 60 notices for two handlers among 30 acknowledgements: each case number reaches
    its handler once (in a digest or alone), no notice is folded twice or sent and folded."""
    case = _file(engine)
    with session_scope(engine) as session:
        session.add(Staff(username="wang.fang", name="王芳", role=StaffRole.handler, email="wang.fang@insurer.example"))
    expected: dict[str, list[str]] = {"li.wei@insurer.example": [], "wang.fang@insurer.example": []}
    for i in range(60):
        handler = "li.wei" if i % 3 else "wang.fang"
        number = f"CLM-2026-{i:06d}"
        _notice(engine, config, case, f"staff:{handler}", number, T0 - timedelta(seconds=60 - i))
        expected[f"{handler}@insurer.example"].append(number)
    for i in range(30):
        _queue(engine, case, config, key=f"ack:{i}")

    report = drain(engine, now=Clock(), config=replace(config, batch_size=7), senders=4)

    got: dict[str, list[str]] = {address: [] for address in expected}
    for message in smtp.messages:
        if message["To"] in got:
            body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
            got[message["To"]] += [line.split("（")[0].removeprefix("- ") for line in body.splitlines()
                                   if line.startswith("- ")] or [message["Subject"].split("：")[1]]  # fmt: skip
    assert {a: sorted(n) for a, n in got.items()} == {a: sorted(n) for a, n in expected.items()}
    rows = _rows(engine)
    carriers = {r.id for r in rows if r.template == "staff_new_assignments"}
    assert {r.folded_into for r in rows if r.status == OutboxStatus.folded} <= carriers
    assert report.folded == sum(r.status == OutboxStatus.folded for r in rows) > 0
    assert {r.status for r in rows} == {OutboxStatus.sent, OutboxStatus.folded}


@pytest.mark.parametrize("senders", [1, 3])
def test_ctrl_c_lets_each_sender_record_what_it_sent_and_gives_the_rest_back_due_now(
    engine: Engine, config: OutboxConfig, senders: int
) -> None:
    """``claimflow outbox deliver --loop`` stopped with Ctrl-C while a message was in hand: that message is recorded
    sent, nothing is received twice, and what the senders had claimed but not sent is back in the queue, due now
    with its attempt not counted, instead of waiting out its lease as ``sending`` (and being sent again after it,
    if it had left). Before, the senders were killed with the process; CI caught one left ``sending``. One sender
    too: it ran in the calling thread, where the interrupt could land between a send and its record."""
    import asyncio
    import signal
    from collections import Counter

    class SlowSink(SmtpSink):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            answer = await super().handle_DATA(server, session, envelope)
            if len(self.messages) == 1:  # Ctrl-C while the first message is in hand
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            await asyncio.sleep(0.3)
            return answer

    sink = SlowSink()
    sink.start()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        slow = replace(config, customer_email_url=SecretStr(sink.url), batch_size=5)
        case = _file(engine)
        for i in range(30):
            _queue(engine, case, slow, key=f"ack:{i}")
        with pytest.raises(KeyboardInterrupt):
            drain(engine, now=Clock(), config=slow, senders=senders)
    finally:
        signal.signal(signal.SIGINT, previous)
        sink.stop()
    received = Counter(int(message[OUTBOX_ID_HEADER]) for message in sink.messages)
    rows = _rows(engine)
    assert received and max(received.values()) == 1
    assert {r.id for r in rows if r.status == OutboxStatus.sent} == set(received), [
        (r.id, r.status, r.attempts, r.last_error) for r in rows if r.status != OutboxStatus.pending
    ]
    rest = [r for r in rows if r.status != OutboxStatus.sent]
    assert len(rest) >= 30 - senders * 5 and {(r.status, r.attempts) for r in rest} == {(OutboxStatus.pending, 0)}
    assert all(r.next_attempt_at is not None and r.next_attempt_at <= T0 for r in rest)

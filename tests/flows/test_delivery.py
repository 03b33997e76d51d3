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


def test_the_desk_runners_delivery_loop_sends_what_is_due_without_a_flow_run(
    prefect_server: None, configured: Engine, smtp: SmtpSink
) -> None:
    """``claimflow up`` delivers from the desk runner's loop: the messages leave, and no deliver-outbox run is
    made on the server (a run every few seconds buried the case runs)."""
    import asyncio

    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from flows.delivery import DeliveryLoop

    async def runs() -> int:
        async with get_client() as client:
            found = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["deliver-outbox"])))
            return len(found)

    before = asyncio.run(runs())
    _queue_acknowledgements(configured, 3)

    async def one_pass() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(DeliveryLoop(every=0.2).loop, None, stop)
            with anyio.fail_after(30):
                while len(smtp.messages) < 3:
                    await anyio.sleep(0.1)
            stop.set()

    asyncio.run(one_pass())
    assert sorted(m["To"] for m in smtp.messages) == [f"customer{i}@example.com" for i in range(3)]
    with Session(configured) as session:
        assert {r.status for r in session.exec(select(Outbox))} == {OutboxStatus.sent}
    assert asyncio.run(runs()) == before


def test_a_day_of_claimflow_up_makes_fewer_than_2000_housekeeping_runs_each_tagged() -> None:
    """What the server's scheduler makes of the schedules ``claimflow up`` registers, over a day (Prefect's own
    schedule arithmetic): under 2,000 housekeeping runs (the watcher every minute, reconcile every 5 minutes, the
    daily report and survey), against 21,602 with every deployment scheduled as before (delivery every 5 s)."""
    import asyncio

    from flows.deployments import HOUSEKEEPING, HOUSEKEEPING_TAG, desk_deployments, runs_per_day, up_schedules

    start = datetime(2026, 12, 8, tzinfo=UTC)  # a Tuesday: the weekly report does not run
    settings = get_settings()
    pairs = desk_deployments(**up_schedules(settings))
    counts = asyncio.run(runs_per_day(pairs, start=start))
    assert counts["sla-watch"] == 1440 and counts["reconcile"] == 86400 // settings.reconcile_seconds
    assert counts["deliver-outbox"] == 0 and counts["mail-intake"] == 0  # no mailbox configured
    assert sum(counts.values()) < 2000
    before = asyncio.run(runs_per_day(desk_deployments(), start=start))
    assert sum(before.values()) > 20_000
    for flow, deployment in pairs:
        assert (HOUSEKEEPING_TAG in (deployment.tags or [])) == (flow.name in HOUSEKEEPING)


def test_a_delivery_process_of_its_own_sends_what_is_queued_until_ctrl_c(
    configured: Engine, smtp: SmtpSink, database_url: str
) -> None:
    """``claimflow outbox deliver --loop``: a process that delivers beside the desk runner (a surge): it takes what
    is queued while it runs, with several senders, and stops on Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from claimflow.priority import nice_of, session_group_nice

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "CLAIMFLOW_DATABASE_URL": database_url, "CLAIMFLOW_OUTBOX_POLL_SECONDS": "1",
           "PYTHONPATH": str(root)}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "claimflow", "outbox", "deliver", "--loop", "--senders", "3"],
                               env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        _queue_acknowledgements(configured, 12)  # while it runs
        deadline = time.monotonic() + 60
        while len(smtp.messages) < 12 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        threads = nice_of(process.pid)  # between passes: its senders start afresh each pass, from this thread
        group = session_group_nice(process.pid)  # it leads a session of its own: the session's CPU group
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "with 3 sender(s), CPU priority nice 5" in output and output.rstrip().endswith("stopped")
    # below intake (a partner waits for its 202), above the case runs (CLAIMFLOW_DELIVERY_NICE)
    assert threads and set(threads.values()) == {5} and group == 5, (threads, group)
    assert sorted(m["To"] for m in smtp.messages) == sorted(f"customer{i}@example.com" for i in range(12))
    with Session(configured) as session:
        assert {r.status for r in session.exec(select(Outbox))} == {OutboxStatus.sent}


class SlowSink(SmtpSink):
    """An SMTP server that takes half a second over each message: a stop lands while one is in hand."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        answer = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(0.5)
        return answer


def _each_sent_once_and_the_rest_back(engine: Engine, sink: SmtpSink, queued: int) -> None:
    """Every message the server took is recorded sent, none twice; the others are queued again as they were
    (attempt not counted), none left ``sending`` to wait out its lease and go a second time."""
    from collections import Counter

    from tasks.outbox import OUTBOX_ID_HEADER

    received = Counter(int(message[OUTBOX_ID_HEADER]) for message in sink.messages)
    with Session(engine) as session:
        rows = list(session.exec(select(Outbox)))
    assert len(rows) == queued and received and max(received.values()) == 1
    assert {r.id for r in rows if r.status == OutboxStatus.sent} == set(received)
    rest = [r for r in rows if r.status != OutboxStatus.sent]
    assert rest and {(r.status, r.attempts) for r in rest} == {(OutboxStatus.pending, 0)}


def test_a_delivery_process_stopped_with_sigterm_records_the_messages_in_hand(
    configured: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service manager stops ``claimflow outbox deliver --loop`` with SIGTERM: it stops as with Ctrl-C, the
    messages in hand sent and recorded, the rest of its batches given back; exit 0. Before, SIGTERM ended the
    process at once and a message in hand went again after its lease."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    sink = SlowSink()
    sink.controller.start()
    monkeypatch.setenv("CLAIMFLOW_CUSTOMER_EMAIL_URL",
                       f"mailto://127.0.0.1:{sink.port}?mode=insecure&from=desk@insurer.example")  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "CLAIMFLOW_DATABASE_URL": database_url, "CLAIMFLOW_OUTBOX_POLL_SECONDS": "1",
           "CLAIMFLOW_OUTBOX_BATCH_SIZE": "4", "PYTHONPATH": str(root)}  # fmt: skip
    _queue_acknowledgements(configured, 12)
    process = subprocess.Popen([sys.executable, "-m", "claimflow", "outbox", "deliver", "--loop", "--senders", "2"],
                               env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not sink.messages and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert sink.messages, "nothing was sent"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        sink.controller.stop()
    assert process.returncode == 0, output
    assert output.rstrip().endswith("stopped") and "Ctrl-C or SIGTERM stops" in output
    _each_sent_once_and_the_rest_back(configured, sink, 12)


def test_the_desk_runners_delivery_loop_stops_after_the_messages_in_hand(
    configured: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner stopping (``claimflow up``'s Ctrl-C, a SIGTERM) sets the loop's stop: the pass under way ends after
    the messages in hand instead of going on through its batches (the runner waits for it), and gives the rest
    back due now."""
    import asyncio
    import time

    import anyio

    from flows.delivery import DeliveryLoop

    sink = SlowSink()
    sink.controller.start()
    monkeypatch.setenv("CLAIMFLOW_CUSTOMER_EMAIL_URL",
                       f"mailto://127.0.0.1:{sink.port}?mode=insecure&from=desk@insurer.example")  # fmt: skip
    monkeypatch.setenv("CLAIMFLOW_OUTBOX_BATCH_SIZE", "4")
    monkeypatch.setenv("CLAIMFLOW_OUTBOX_SENDERS", "2")
    get_settings.cache_clear()
    _queue_acknowledgements(configured, 40)
    stopped_after = 0.0

    async def stop_while_sending() -> None:
        nonlocal stopped_after
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(DeliveryLoop(every=0.2, max_batches=20).loop, None, stop)
            with anyio.fail_after(30):
                while not sink.messages:
                    await anyio.sleep(0.05)
            stop.set()
            began = time.monotonic()
        stopped_after = time.monotonic() - began  # the task group waited for the loop

    try:
        asyncio.run(stop_while_sending())
    finally:
        sink.controller.stop()
    # the message in hand of each sender (0.5 s) and its record; going on, the 40 took 10 s
    assert stopped_after < 4, stopped_after
    _each_sent_once_and_the_rest_back(configured, sink, 40)

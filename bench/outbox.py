"""Outbox delivery benchmark: drain N queued e-mails to a local SMTP server, against plain smtplib.

    python bench/outbox.py                       # 5,000 e-mails, SQLite file in a temporary folder
    python bench/outbox.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    python bench/outbox.py --count 500 --workers 4

It starts its own SMTP server (aiosmtpd, 127.0.0.1), queues N acknowledgements through ``tasks.outbox.enqueue``
(rendering and the wording check included), drains them with the real delivery code (claim, render, apprise,
record), then sends the same N messages with smtplib over one connection. It prints messages/s for both and
counts, at the receiver, every ``X-Claimflow-Outbox-Id`` seen more than once (duplicates) or never (lost).
The PostgreSQL database must exist and be empty or disposable: the bench creates the schema and truncates
the outbox.
"""

from __future__ import annotations

import argparse
import re
import smtplib
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from pydantic import SecretStr
from sqlalchemy import text
from sqlmodel import Session, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from claimflow.db import create_db_engine, session_scope
from claimflow.migrate import upgrade
from models.delivery import DeliveryPolicy
from models.enums import CaseKind, Channel
from models.messages import CATALOGUE
from models.tables import CaseCreate, CustomerCreate, Outbox
from models.wording import load_rules
from tasks.cases import file_case
from tasks.outbox import OUTBOX_ID_HEADER, OutboxConfig, _environment, drain, enqueue, prepare

HEADER = re.compile(rb"^" + OUTBOX_ID_HEADER.encode() + rb":\s*(\d+)", re.IGNORECASE | re.MULTILINE)


class CountingSink:
    """SMTP receiver that counts messages per outbox id (apprise's and smtplib's separately)."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.seen: Counter[int] = Counter()
        self.total = 0
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        match = HEADER.search(envelope.content)
        with self.lock:
            self.total += 1
            if match:
                self.seen[int(match.group(1))] += 1
        return "250 OK"

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.total = 0


def queue(engine: Any, config: OutboxConfig, count: int, now: datetime) -> list[int]:
    customers = max(1, count // 50)
    ids: list[int] = []
    with session_scope(engine) as session:
        cases = [
            file_case(
                session,
                data=CaseCreate(
                    kind=CaseKind.claim,
                    channel=Channel.email,
                    customer=CustomerCreate(name=f"客户{i}", email=f"customer{i}@example.com"),
                ),
                actor="bench",
                now=now,
            )
            for i in range(customers)
        ]
        sample = CATALOGUE["acknowledgement_claim"].sample
        for i in range(count):
            case = cases[i % customers]
            result = enqueue(
                session,
                template="acknowledgement_claim",
                recipient=f"customer:{case.customer_id}",
                context={**sample, "case_number": case.number},
                idempotency_key=f"bench:{i}",
                now=now,
                case=case,
                config=config,
            )
            assert result.outbox is not None and result.outbox.id is not None
            ids.append(result.outbox.id)
    return ids


def smtplib_baseline(engine: Any, config: OutboxConfig, port: int) -> tuple[int, float]:
    """The same messages (rendered by the same code), sent with smtplib over one connection."""
    with Session(engine) as session:
        rows = list(session.exec(select(Outbox).order_by(Outbox.id)))  # type: ignore[arg-type]
        prepared = [prepare(session, row, config=config) for row in rows]
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for item in prepared:
            message = EmailMessage()
            message["Subject"] = item.subject  # type: ignore[union-attr]
            message["From"] = "desk@insurer.example"
            message["To"] = "customer@example.com"
            message[OUTBOX_ID_HEADER] = str(item.outbox_id)
            message.set_content(item.text)  # type: ignore[union-attr]
            message.add_alternative(item.html, subtype="html")  # type: ignore[union-attr]
            smtp.send_message(message)
    return len(prepared), time.perf_counter() - started


def run_workers(engine: Any, config: OutboxConfig, workers: int) -> None:
    threads = [
        threading.Thread(
            target=drain,
            kwargs={"engine": engine, "now": lambda: datetime.now(UTC), "config": config, "max_batches": 10_000},
        )
        for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="concurrent delivery loops (threads)")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="claimflow-bench-")
    url = args.database_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL session_replication_role = replica"))  # past the log's TRUNCATE guard
            connection.execute(text('TRUNCATE outbox, event, step, "case", customer, case_counter CASCADE'))

    sink = CountingSink()
    sink.controller.start()
    config = OutboxConfig(
        env=_environment(),
        rules=load_rules(),
        policy=DeliveryPolicy(max_attempts=3, base_seconds=1, max_seconds=5, lease_seconds=600),
        customer_email_url=SecretStr(f"mailto://127.0.0.1:{sink.port}?mode=insecure&from=desk@insurer.example"),
        batch_size=args.batch_size,
    )
    now = datetime.now(UTC)
    started = time.perf_counter()
    ids = queue(engine, config, args.count, now)
    queued_seconds = time.perf_counter() - started

    started = time.perf_counter()
    run_workers(engine, config, args.workers)
    drain_seconds = time.perf_counter() - started
    delivered = dict(sink.seen)

    sink.reset()
    baseline_count, baseline_seconds = smtplib_baseline(engine, config, sink.port)
    sink.controller.stop()

    with Session(engine) as session:
        statuses = Counter(str(r.status) for r in session.exec(select(Outbox)))
    duplicates = sum(n - 1 for n in delivered.values() if n > 1)
    lost = len(set(ids) - set(delivered))
    print(
        f"database: {engine.dialect.name}; messages: {args.count}; batch size: {args.batch_size}; "
        f"delivery workers: {args.workers}"
    )
    print(
        f"queue (render + wording check + insert): {args.count / queued_seconds:8.1f} messages/s "
        f"({queued_seconds:.2f} s)"
    )
    print(
        f"outbox delivery via apprise:             {args.count / drain_seconds:8.1f} messages/s ({drain_seconds:.2f} s)"
    )
    print(
        f"plain smtplib, one connection:           {baseline_count / baseline_seconds:8.1f} messages/s "
        f"({baseline_seconds:.2f} s)"
    )
    print(f"outbox statuses: {dict(statuses)}")
    print(f"received: {sum(delivered.values())}; sent twice: {duplicates}; never received: {lost}")
    engine.dispose()
    tmp.cleanup()
    return 0 if duplicates == 0 and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Outbox delivery benchmark: drain N queued e-mails to a local SMTP server, against plain smtplib.

    python bench/outbox.py                       # 5,000 e-mails, SQLite file in a temporary folder
    python bench/outbox.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    python bench/outbox.py --count 500 --senders 1

It starts its own SMTP server (aiosmtpd, 127.0.0.1, in a process of its own so that it does not share this
one's interpreter lock), queues N acknowledgements through ``tasks.outbox.enqueue`` (rendering and the wording
check included), drains them with the real delivery code (claim, render, apprise's message over pooled SMTP
connections, record; ``--senders`` threads, the desk's default 4), then sends the same N messages with
smtplib over one connection (the anchor), and a sample of them the way delivery sent before
``tasks.mailpool``: one ``apprise.Apprise().notify`` per message, a new connection each. It prints
messages/s for each and the ratio to the anchor, and counts, at the receiver, every ``X-Claimflow-Outbox-Id``
seen more than once (duplicates) or never (lost).
The PostgreSQL database must exist and be empty or disposable: the bench creates the schema and truncates
the outbox.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import smtplib
import socket
import sys
import tempfile
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
from tasks.mailpool import _send_with_apprise
from tasks.outbox import OUTBOX_ID_HEADER, OutboxConfig, Outgoing, _environment, drain, enqueue, prepare

HEADER = re.compile(rb"^" + OUTBOX_ID_HEADER.encode() + rb":\s*(\d+)", re.IGNORECASE | re.MULTILINE)


class _Recorder:
    def __init__(self, path: str) -> None:
        self.out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the sink process's life

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        match = HEADER.search(envelope.content)
        self.out.write(f"{match.group(1).decode() if match else '-'}\n")
        return "250 OK"


def _serve(port: int, path: str, ready: Any, stop: Any) -> None:
    controller = Controller(_Recorder(path), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class CountingSink:
    """SMTP receiver in a process of its own that records the outbox id of every message it takes."""

    def __init__(self, folder: Path, name: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.path = folder / f"{name}.received"
        self.path.write_text("")
        context = multiprocessing.get_context("spawn")
        self._ready, self._stop = context.Event(), context.Event()
        self._process = context.Process(target=_serve, args=(self.port, str(self.path), self._ready, self._stop))

    def __enter__(self) -> CountingSink:
        self._process.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._process.join(30)

    def seen(self) -> Counter[int]:
        return Counter(int(line) for line in self.path.read_text().split() if line != "-")


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


def _prepared(engine: Any, config: OutboxConfig) -> list[Outgoing]:
    with Session(engine) as session:
        rows = list(session.exec(select(Outbox).order_by(Outbox.id)))  # type: ignore[arg-type]
        prepared = [prepare(session, row, config=config) for row in rows]
    return [item for item in prepared if isinstance(item, Outgoing)]


def smtplib_baseline(prepared: list[Outgoing], port: int) -> float:
    """The same messages (rendered by the same code), sent with smtplib over one connection: the anchor."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for item in prepared:
            message = EmailMessage()
            message["Subject"] = item.subject
            message["From"] = "desk@insurer.example"
            message["To"] = "customer@example.com"
            message[OUTBOX_ID_HEADER] = str(item.outbox_id)
            message.set_content(item.text)
            message.add_alternative(item.html, subtype="html")
            smtp.send_message(message)
    return time.perf_counter() - started


def apprise_per_message(prepared: list[Outgoing]) -> float:
    """How delivery sent before tasks.mailpool: a fresh apprise.Apprise and a new connection per message."""
    started = time.perf_counter()
    for item in prepared:
        _send_with_apprise(item.urls[0], item)
    return time.perf_counter() - started


def _config(port: int, batch_size: int, senders: int) -> OutboxConfig:
    return OutboxConfig(
        env=_environment(),
        rules=load_rules(),
        policy=DeliveryPolicy(max_attempts=3, base_seconds=1, max_seconds=5, lease_seconds=600),
        desk={"phone": "95500", "email": "service@insurer.example"},
        customer_email_url=SecretStr(f"mailto://127.0.0.1:{port}?mode=insecure&from=desk@insurer.example"),
        batch_size=batch_size,
        senders=senders,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--senders", type=int, default=4, help="delivery threads (CLAIMFLOW_OUTBOX_SENDERS)")
    parser.add_argument("--old-path-sample", type=int, default=300, help="messages sent the old way")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="claimflow-bench-")
    url = args.database_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL session_replication_role = replica"))  # past the log's TRUNCATE guard
            connection.execute(text('TRUNCATE outbox, event, step, "case", customer, case_counter CASCADE'))

    folder = Path(tmp.name)
    now = datetime.now(UTC)
    with CountingSink(folder, "outbox") as sink:
        config = _config(sink.port, args.batch_size, args.senders)
        started = time.perf_counter()
        ids = queue(engine, config, args.count, now)
        queued_seconds = time.perf_counter() - started
        started = time.perf_counter()
        drain(engine, now=lambda: datetime.now(UTC), config=config, max_batches=10_000, senders=args.senders)
        drain_seconds = time.perf_counter() - started
    delivered = sink.seen()
    with CountingSink(folder, "smtplib") as sink:
        prepared = _prepared(engine, _config(sink.port, args.batch_size, 1))
        baseline_seconds = smtplib_baseline(prepared, sink.port)
    with CountingSink(folder, "apprise") as sink:
        sample = _prepared(engine, _config(sink.port, args.batch_size, 1))[: args.old_path_sample]
        old_seconds = apprise_per_message(sample)

    with Session(engine) as session:
        statuses = Counter(str(r.status) for r in session.exec(select(Outbox)))
    duplicates = sum(n - 1 for n in delivered.values() if n > 1)
    lost = len(set(ids) - set(delivered))
    anchor = len(prepared) / baseline_seconds
    project = args.count / drain_seconds
    old = len(sample) / old_seconds
    print(
        f"database: {engine.dialect.name}; messages: {args.count}; batch size: {args.batch_size}; "
        f"senders: {args.senders}; SMTP server: aiosmtpd in its own process"
    )
    print(f"queue (render + wording check + insert):        {args.count / queued_seconds:8.1f} messages/s "
          f"({queued_seconds:.2f} s)")  # fmt: skip
    print(f"anchor: plain smtplib, one connection:          {anchor:8.1f} messages/s ({baseline_seconds:.2f} s)")
    print(f"project: outbox delivery (apprise, pooled):     {project:8.1f} messages/s ({drain_seconds:.2f} s)")
    print(f"ratio project/anchor:                           {project / anchor:8.2f}")
    print(f"before: apprise.notify per message ({len(sample)} sent): {old:8.1f} messages/s "
          f"(project/before {project / old:.1f}x)")  # fmt: skip
    print(f"outbox statuses: {dict(statuses)}")
    print(f"received: {sum(delivered.values())}; sent twice: {duplicates}; never received: {lost}")
    engine.dispose()
    tmp.cleanup()
    return 0 if duplicates == 0 and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Intake webhook benchmark: N signed posts at concurrency C against the API (uvicorn) on PostgreSQL, against a
plain driver loop filing the same rows in the same run.

    python bench/intake.py                                  # 20,000 posts, concurrency 32
    python bench/intake.py --count 2000 --concurrency 16 --workers 2
    python bench/intake.py --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

It creates a throwaway database beside ``--postgres-url`` (dropped at the end), migrates it, loads the sample
desk (routing needs handlers), and starts the API as its own process (``uvicorn --factory
claimflow.web.app:create_app``) with Prefect pointed at a closed port (the runs are the reconciler's job; the
launcher gives up once and pauses). Each post is a signed claim, complaint or inquiry (in turn) with its own
``Idempotency-Key``; each answer is checked. It prints cases/s, p50/p99 latency, then files the same kind of
rows with ``tasks.intake.file_from_webhook`` in a loop (one transaction each, no HTTP) and prints that rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from claimflow.db import create_db_engine, session_scope
from claimflow.demo import sample_directory
from claimflow.migrate import upgrade
from claimflow.web.intake import sign_headers
from models.tables import Case, CaseCreate, IntakeRequest
from tasks.staff import import_directory

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("CLAIMFLOW_DESK_PHONE", "95500")  # a configured desk: acknowledgements queued, not held
SOURCE, SECRET = "bench", "bench-secret"
PATHS = ("/v1/claims", "/v1/complaints", "/v1/inquiries")
DEFAULT_POSTGRES = os.environ.get("CLAIMFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def payload(index: int, *, attachment: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer": {"name": f"Customer {index}", "phone": f"138{index:08d}", "language": "zh-CN"},
        "policy_number": f"P-{index:06d}",
        "product_line": "motor",
        "description": "Rear-ended at a traffic light",
        "incident_date": "2026-03-01",
        "amount": "1280.50",
    }
    if attachment:
        body["attachments"] = [{"filename": "photo.jpg", "content_type": "image/jpeg",
                                "content_base64": "/9j/4AAQSkZJRgABAQ=="}]  # fmt: skip
    return body


def signed(body: bytes, key: str, path: str) -> dict[str, str]:
    return {**sign_headers(SOURCE, SECRET, body, path=path, key=key), "Content-Type": "application/json"}


@contextmanager
def throwaway_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A fresh migrated database with the sample desk beside ``admin_url``; dropped afterwards."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{os.getpid()}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_db_engine(url, pool=False)
        upgrade(engine)
        with session_scope(engine) as session:
            import_directory(session, directory=sample_directory())
            session.execute(text("UPDATE staff SET capacity = 1000000"))  # thousands of open cases by design
        engine.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiProcess:
    """The API in its own process (so it can be killed), started with uvicorn's factory mode."""

    def __init__(self, database_url: str, data_dir: Path, *, port: int, workers: int = 1) -> None:
        self.port, self.workers = port, workers
        self.env = {
            **os.environ,
            "CLAIMFLOW_DATABASE_URL": database_url,
            "CLAIMFLOW_DATA_DIR": str(data_dir),
            "CLAIMFLOW_WEBHOOK_SECRETS": json.dumps({SOURCE: [SECRET]}),
            "PREFECT_API_URL": "http://127.0.0.1:9/api",
            "PYTHONPATH": str(ROOT),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "uvicorn", "--factory", "claimflow.web.app:create_app", "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", str(self.workers), "--log-level", "warning",
                   "--no-access-log"]  # fmt: skip
        self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/openapi.json", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the API did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL, no shutdown of any kind (workers too, when uvicorn runs several)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)  # its own process group: uvicorn and its workers
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def load(url: str, *, count: int, concurrency: int) -> tuple[list[float], dict[int, int], float]:
    """Post ``count`` signed cases, ``concurrency`` at a time; latencies (s), answers by status, elapsed (s)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(count))

    async def worker(client: httpx.AsyncClient) -> None:
        for index in counter:
            body = json.dumps(payload(index)).encode()
            started = time.perf_counter()
            path = PATHS[index % 3]
            response = await client.post(path, content=body, headers=signed(body, uuid.uuid4().hex, path))
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return latencies, statuses, time.perf_counter() - started


def plain_loop(database_url: str, data_dir: Path, *, count: int) -> float:
    """Cases/s of a loop filing the same rows (case, customer, event, steps, outbox, idempotency record) with
    ``file_from_webhook``, one transaction each, no HTTP, no JSON, no signature."""
    from claimflow.settings import Settings
    from models.enums import CaseKind, Channel
    from tasks.intake import AttachmentStore, body_digest, file_from_webhook
    from tasks.workflow import Desk

    settings = Settings(database_url=database_url, data_dir=data_dir)
    desk = Desk.of(settings)
    engine = create_db_engine(database_url)
    kinds = (CaseKind.claim, CaseKind.complaint, CaseKind.inquiry)
    started = time.perf_counter()
    for index in range(count):
        raw = payload(index)
        data = CaseCreate.model_validate(
            {**{k: v for k, v in raw.items() if k != "amount"}, "amount_claimed": raw["amount"],
             "kind": kinds[index % 3], "channel": Channel.webhook}
        )  # fmt: skip
        with session_scope(engine) as session:
            file_from_webhook(session, desk, source="plain", data=data, attachments=[],
                              idempotency_key=uuid.uuid4().hex, body_sha256=body_digest(json.dumps(raw).encode()),
                              store=AttachmentStore(data_dir), now=datetime.now(UTC))  # fmt: skip
    elapsed = time.perf_counter() - started
    engine.dispose()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--plain-count", type=int, default=2_000, help="filings of the plain driver loop")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()

    with throwaway_database(args.postgres_url, "claimflow_bench_intake") as url, tempfile.TemporaryDirectory() as tmp:
        api = ApiProcess(url, Path(tmp), port=free_port(), workers=args.workers)
        api.start()
        try:
            latencies, statuses, elapsed = asyncio.run(load(api.url, count=args.count, concurrency=args.concurrency))
        finally:
            api.stop()
        engine = create_db_engine(url, pool=False)
        with Session(engine) as session:
            cases = session.exec(select(func.count()).select_from(Case)).one()
            records = session.exec(select(func.count()).select_from(IntakeRequest)).one()
        engine.dispose()
        accepted = statuses.get(202, 0)
        print(f"API ({args.workers} uvicorn worker(s), concurrency {args.concurrency}, PostgreSQL): "
              f"{args.count} posts in {elapsed:.1f} s")  # fmt: skip
        print(f"  answers: {dict(sorted(statuses.items()))}; cases in the database: {cases}, "
              f"idempotency records: {records}")  # fmt: skip
        print(
            f"  {accepted / elapsed:.1f} cases/s, latency p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, mean {statistics.fmean(latencies) * 1000:.1f} ms"
        )
        rate = plain_loop(url, Path(tmp), count=args.plain_count)
        print(f"plain driver loop (file_from_webhook, one transaction each, sequential): {args.plain_count} cases, "
              f"{rate:.1f} cases/s")  # fmt: skip
        if cases != accepted:
            raise SystemExit(f"mismatch: {accepted} accepted but {cases} cases stored")


if __name__ == "__main__":
    main()

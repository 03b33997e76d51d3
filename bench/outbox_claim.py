"""What a sender's claim costs with many messages waiting: ``tasks.outbox.claim_due`` through the partial index
``ix_outbox_due`` (migration 0016), against the same claim with that index dropped (the desk before), in one run.

    python bench/outbox_claim.py                          # 100,000 waiting, 200,000 sent, PostgreSQL and SQLite
    python bench/outbox_claim.py --waiting 200000 --sent 1000000 --claims 50

A surge queues an acknowledgement and a handler's notice per case; the senders claim them a hundred at a time, the
oldest first, every acknowledgement before any notice. The bench fills a throwaway database (PostgreSQL beside
``--postgres-url``, dropped at the end; SQLite in a temporary folder) with ``--waiting`` due messages (half
acknowledgements, half notices of priority 1), a tenth of them leased to a sender, and ``--sent`` sent ones; then
times ``--claims`` claims of ``--limit`` rows, each rolled back so that every claim sees the same rows. It prints
the time a claim took (median) with the index and without it, their ratio, and the plan each used.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

from sqlalchemy import Engine, Executable, text
from sqlmodel import Session, col, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tasks.outbox
from bench.intake import DEFAULT_POSTGRES, throwaway_database
from claimflow.db import create_db_engine
from claimflow.migrate import upgrade
from models.delivery import DeliveryPolicy
from models.tables import Outbox
from tasks.outbox import claim_due
from tasks.outbox import logger as outbox_logger

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def fill(engine: Engine, *, waiting: int, sent: int) -> None:
    """``sent`` sent rows, then ``waiting`` due ones (odd ids notices of priority 1; every tenth leased, its lease
    over), in one statement each (a recursive count works on both databases)."""
    start = (NOW - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    columns = "channel, recipient, template, language, context, status, priority, attempts, next_attempt_at, " \
              "idempotency_key, created_at"  # fmt: skip
    series = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
    with engine.begin() as connection:
        if sent:
            done = (f"INSERT INTO outbox ({columns}, sent_at) {series}SELECT 'email', 'customer:1', "
                    f"'acknowledgement_claim', 'zh-CN', '{{}}', 'sent', 0, 1, '{start}', 'sent-' || i, '{start}', "
                    f"'{start}' FROM n")  # fmt: skip
            connection.execute(text(done), {"count": sent})
        connection.execute(text(f"INSERT INTO outbox ({columns}) {series}"
                                f"SELECT 'email', CASE WHEN i % 2 = 1 THEN 'staff:li.wei' ELSE 'customer:1' END,"
                                f" CASE WHEN i % 2 = 1 THEN 'staff_new_assignment' ELSE 'acknowledgement_claim' END,"
                                f" 'zh-CN', '{{}}', CASE WHEN i % 10 = 0 THEN 'sending' ELSE 'pending' END, i % 2, 0,"
                                f" '{start}', 'due-' || i, '{start}' FROM n"), {"count": waiting})  # fmt: skip
    if engine.dialect.name == "postgresql":  # autovacuum would, a while after a surge; SQLite's desk never analyses
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE outbox"))


def plan(engine: Engine, build: Callable[..., Executable], limit: int) -> str:
    """How the database reads the claim's statement (``build``): the lines that say how rows are found and
    ordered."""
    statement = build(now=NOW, limit=limit, dialect=engine.dialect.name)
    sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(explain + sql).all()
    lines = [str(row[-1]).strip().removeprefix("->  ") for row in rows]
    return " / ".join(line.split("  (cost")[0] for line in lines if any(w in line for w in KEY_NODES))


KEY_NODES = ("Scan", "Sort Key", "SEARCH", "SCAN", "B-TREE")
"""The lines of a plan that say how the rows are found and ordered."""


def statement_before(*, now: datetime, limit: int, dialect: str) -> Executable:
    """The claim's statement before ``ix_outbox_due`` (the baseline): the statuses as bound values."""
    statement = (
        select(Outbox)
        .where(col(Outbox.status).in_(["pending", "sending"]), col(Outbox.next_attempt_at) <= now)
        .order_by(col(Outbox.priority), col(Outbox.next_attempt_at), col(Outbox.id))
        .limit(limit)
    )
    return statement.with_for_update(skip_locked=True) if dialect == "postgresql" else statement


def time_claims(engine: Engine, *, claims: int, limit: int) -> list[float]:
    policy = DeliveryPolicy()
    took = []
    for _ in range(claims):
        with Session(engine) as session:
            started = time.perf_counter()
            rows = claim_due(session, now=NOW, limit=limit, policy=policy)
            took.append(time.perf_counter() - started)
            if len(rows) != limit or rows[0].priority != 0:
                raise SystemExit(f"claimed {len(rows)} rows, the first of priority {rows[0].priority if rows else '-'}")
            session.rollback()
    return took


def measure(url: str, args: argparse.Namespace, label: str) -> None:
    engine = create_db_engine(url, pool=False)
    try:
        fill(engine, waiting=args.waiting, sent=args.sent)
        time_claims(engine, claims=3, limit=args.limit)  # warm the caches
        indexed = statistics.median(time_claims(engine, claims=args.claims, limit=args.limit)) * 1000
        with_index = plan(engine, tasks.outbox.due_statement, args.limit)
        with engine.begin() as connection:
            connection.execute(text("DROP INDEX ix_outbox_due"))
        with patch.object(tasks.outbox, "due_statement", statement_before):
            time_claims(engine, claims=3, limit=args.limit)
            before = statistics.median(time_claims(engine, claims=args.claims, limit=args.limit)) * 1000
        without = plan(engine, statement_before, args.limit)
    finally:
        engine.dispose()
    print(f"{label}, {args.waiting:,} waiting, {args.sent:,} sent, claims of {args.limit}:")
    print(f"  baseline (no ix_outbox_due, the desk before): {before:8.2f} ms a claim; plan: {without}")
    print(f"  project (ix_outbox_due):                      {indexed:8.2f} ms a claim; plan: {with_index}")
    print(f"  ratio baseline/project: {before / indexed:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=100_000)
    parser.add_argument("--sent", type=int, default=200_000)
    parser.add_argument("--claims", type=int, default=30, help="claims timed each way")
    parser.add_argument("--limit", type=int, default=100, help="rows a claim takes (CLAIMFLOW_OUTBOX_BATCH_SIZE)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    logging.getLogger(outbox_logger.name).setLevel(logging.ERROR)  # each claim retakes the leased rows: a warning each
    if args.waiting < args.limit or args.claims < 1:
        parser.error("--waiting must be at least --limit, and --claims at least 1")
    with throwaway_database(args.postgres_url, "claimflow_bench_claim") as url:
        measure(url, args, "PostgreSQL")
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'desk.db'}"
            engine = create_db_engine(url, pool=False)
            upgrade(engine)
            engine.dispose()
            measure(url, args, "SQLite, the embedded default")


if __name__ == "__main__":
    main()

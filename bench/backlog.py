"""Filing cost against the backlog: the same filings into a desk with 10,000 and with 1,000,000 open cases.

    python bench/backlog.py                                 # 10,000 against 1,000,000 open cases
    python bench/backlog.py --small 10000 --large 200000 --window 100 --rounds 4
    python bench/backlog.py --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

It creates two throwaway PostgreSQL databases beside ``--postgres-url`` (dropped at the end) that differ only in
size: each is migrated, loaded with the sample desk, and given one real filing (``tasks.intake.file_from_webhook``)
whose rows (customer, case, steps, events, outbox) are then copied in SQL until the desk has the number of open
cases asked for, each copy with its own number, customer and handler (round robin), and its steps counted in each
handler's load. Then it files in alternating windows (``--window`` filings into one, then the other, ``--rounds``
times each; the machine is shared, so both see the same noise) with the webhook's filing code, one transaction
each, and prints both rates and their ratio. It also times, on each database, the query routing ran before
migration 0013 (every open step counted per handler), to show what grew with the backlog.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("CLAIMFLOW_DESK_PHONE", "95500")  # a configured desk: acknowledgements queued, not held

from bench.intake import DEFAULT_POSTGRES, payload, throwaway_database
from claimflow.db import create_db_engine, session_scope
from claimflow.settings import Settings
from models.enums import CaseKind, Channel
from models.tables import CaseCreate
from tasks.cases import lock_numbering
from tasks.intake import AttachmentStore, Posted, body_digest, file_from_webhook, file_many_from_webhook
from tasks.workflow import Desk, lock_loads

OLD_ROUTING_COUNT = (
    "SELECT assignee_id, count(*) FROM step WHERE status IN ('open', 'paused') AND assignee_id IS NOT NULL "
    "GROUP BY assignee_id"
)


def _columns(engine: Engine, table: str) -> list[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = :t AND column_name <> 'id' "
                "ORDER BY ordinal_position"
            ),
            {"t": table},
        ).scalars()
        return list(rows)


def _copy(connection: Any, engine: Engine, table: str, source: str, overrides: dict[str, str]) -> None:
    """Insert, for each row of ``source`` (a FROM clause naming the template row as ``t`` and the copy's number
    as ``g``), a copy of the template with ``overrides`` (SQL expressions) in place of those columns."""
    columns = _columns(engine, table)
    values = ", ".join(overrides.get(c, f't."{c}"') for c in columns)
    names = ", ".join(f'"{c}"' for c in columns)
    connection.execute(text(f'INSERT INTO "{table}" ({names}) SELECT {values} FROM {source}'))


def _file(engine: Engine, desk: Desk, data_dir: Path, index: int) -> None:
    raw = payload(index)
    data = CaseCreate.model_validate(
        {**{k: v for k, v in raw.items() if k != "amount"}, "amount_claimed": raw["amount"],
         "kind": (CaseKind.claim, CaseKind.complaint, CaseKind.inquiry)[index % 3], "channel": Channel.webhook}
    )  # fmt: skip
    with session_scope(engine) as session:
        file_from_webhook(session, desk, source="bench", data=data, attachments=[], idempotency_key=uuid.uuid4().hex,
                          body_sha256=body_digest(json.dumps(raw).encode()), store=AttachmentStore(data_dir),
                          now=datetime.now(UTC))  # fmt: skip


def _file_batch(engine: Engine, desk: Desk, data_dir: Path, first: int, count: int) -> None:
    """``count`` filings at once, as the API's group commit files them (``tasks.intake.file_many_from_webhook``)."""
    posts = []
    for index in range(first, first + count):
        raw = payload(index)
        data = CaseCreate.model_validate(
            {**{k: v for k, v in raw.items() if k != "amount"}, "amount_claimed": raw["amount"],
             "kind": (CaseKind.claim, CaseKind.complaint, CaseKind.inquiry)[index % 3], "channel": Channel.webhook}
        )  # fmt: skip
        posts.append(Posted("bench", data, [], uuid.uuid4().hex, body_digest(json.dumps(raw).encode())))
    with session_scope(engine) as session:
        lock_numbering(session, kinds={p.data.kind for p in posts}, year=datetime.now(UTC).year)
        lock_loads(session)
        filed = file_many_from_webhook(session, desk, posts, store=AttachmentStore(data_dir), now=datetime.now(UTC))
    assert len(filed) == count


def grow(engine: Engine, desk: Desk, data_dir: Path, open_cases: int) -> None:
    """One real filing, then ``open_cases - 1`` copies of its rows (year 2025 numbers, so today's are free)."""
    _file(engine, desk, data_dir, 0)
    copies = open_cases - 1
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL session_replication_role = replica"))  # bulk load: loads counted below
        template = connection.execute(text('SELECT id, customer_id FROM "case" ORDER BY id LIMIT 1')).one()
        handlers = connection.execute(text("SELECT id FROM staff WHERE role = 'handler' ORDER BY id")).scalars().all()
        customer0 = connection.execute(text("SELECT max(id) FROM customer")).scalar_one() + 1
        case0 = template.id + 1
        series = f"generate_series(1, {copies}) AS g"
        _copy(connection, engine, "customer", f"customer t, {series} WHERE t.id = {template.customer_id}", {})
        handler_of = f"(ARRAY{list(handlers)})[1 + (g % {len(handlers)})]"
        _copy(connection, engine, "case", f'"case" t, {series} WHERE t.id = {template.id}', {
            "number": "'CLM-2025-' || lpad(g::text, 7, '0')", "customer_id": f"{customer0} + g - 1",
            "handler_id": handler_of, "flow_run_id": "NULL"})  # fmt: skip
        assignee = f"CASE WHEN t.assignee_id IS NULL THEN NULL ELSE {handler_of} END"
        _copy(connection, engine, "step", f"step t, {series} WHERE t.case_id = {template.id}",
              {"case_id": f"{case0} + g - 1", "assignee_id": assignee})  # fmt: skip
        _copy(
            connection,
            engine,
            "event",
            f"event t, {series} WHERE t.case_id = {template.id}",
            {"case_id": f"{case0} + g - 1"},
        )
        _copy(connection, engine, "outbox", f"outbox t, {series} WHERE t.case_id = {template.id}", {
            "case_id": f"{case0} + g - 1", "idempotency_key": "t.idempotency_key || ':' || g",
            "status": "'sent'", "next_attempt_at": "NULL"})  # fmt: skip
        connection.execute(text("DELETE FROM staff_load"))
        connection.execute(text(f"INSERT INTO staff_load (staff_id, open_steps) {OLD_ROUTING_COUNT}"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def open_cases(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text('SELECT count(*) FROM "case" WHERE closed_at IS NULL')).scalar_one())


def old_routing_ms(engine: Engine, repeat: int = 5) -> float:
    with engine.connect() as connection:
        started = time.perf_counter()
        for _ in range(repeat):
            connection.execute(text(OLD_ROUTING_COUNT)).all()
        return (time.perf_counter() - started) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000, help="open cases in the small desk")
    parser.add_argument("--large", type=int, default=1_000_000, help="open cases in the large desk")
    parser.add_argument("--window", type=int, default=200, help="filings per window")
    parser.add_argument("--rounds", type=int, default=3, help="windows per desk")
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="filings in one transaction, filed at once as the API's group commit does (1: one by one)",
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()

    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        desks: dict[str, tuple[Engine, Desk]] = {}
        for name, size in (("small", args.small), ("large", args.large)):
            url = stack.enter_context(throwaway_database(args.postgres_url, f"claimflow_bench_backlog_{name}"))
            engine = create_db_engine(url)
            stack.callback(engine.dispose)
            desk = Desk.of(Settings(database_url=url, data_dir=data_dir))
            started = time.perf_counter()
            grow(engine, desk, data_dir, size)
            print(f"{name} desk: {open_cases(engine):,} open cases (built in {time.perf_counter() - started:.0f} s); "
                  f"the old routing count took {old_routing_ms(engine):.1f} ms there")  # fmt: skip
            desks[name] = (engine, desk)
        spent = {name: 0.0 for name in desks}
        index = 1
        for _ in range(args.rounds):
            for name, (engine, desk) in desks.items():
                started = time.perf_counter()
                if args.batch > 1:
                    for _ in range(0, args.window, args.batch):
                        _file_batch(engine, desk, data_dir, index, args.batch)
                        index += args.batch
                else:
                    for _ in range(args.window):
                        _file(engine, desk, data_dir, index)
                        index += 1
                spent[name] += time.perf_counter() - started
        filings = (args.window if args.batch <= 1 else -(-args.window // args.batch) * args.batch) * args.rounds
        rates = {name: filings / seconds for name, seconds in spent.items()}
        for name, (engine, _) in desks.items():
            each = spent[name] / filings * 1000
            print(f"{name}: {open_cases(engine):,} open cases, {rates[name]:.1f} cases/s "
                  f"({each:.1f} ms a filing, {filings} filings in {args.rounds} windows)")  # fmt: skip
        way = f"in batches of {args.batch}, filed at once" if args.batch > 1 else "one by one"
        print(f"ratio large/small ({way}): {rates['large'] / rates['small']:.2f} (target: within 20 %, 0.80 or more)")


if __name__ == "__main__":
    main()

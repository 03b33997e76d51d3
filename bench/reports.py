"""Quality-report benchmark: the weekly report over 1,000,000 closed cases in PostgreSQL.

    python bench/reports.py                                  # 1,000,000 cases in a throwaway database
    python bench/reports.py --cases 200000 --keep            # keep the database for a second look
    python bench/reports.py --admin-url postgresql+psycopg://postgres@127.0.0.1:5432/test

It creates a database beside the admin URL's (``claimflow_bench_reports_<pid>``), makes the schema with the
real migrations, and writes the desk in SQL (``generate_series``: no Python per row): N cases filed over two
years (70% claims, 20% complaints, 10% inquiries, 40 handlers in 4 departments), every case closed, with its
main step (about a fifth of them late), claims' payment steps, filing / end / close events (3.1 per case),
reopens, wording-check failures, escalations and survey answers. Then, in one run, it times the whole weekly
report (every table of ``flows.reports`` plus the 8-week trends for the charts, exactly the queries the flow
runs) against a plain ``SELECT count(*)`` over the case table, and drops the database (unless ``--keep``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from claimflow.db import create_db_engine
from claimflow.migrate import upgrade
from models.calendar import region_calendar
from models.reports import ReportPeriod, trend_period
from tasks.reports import ReportScope, compliance_by_week, cycle_by_week, report_tables

FILL = """
INSERT INTO department (code, name, active) SELECT 'dept' || d, 'Department ' || d, true FROM generate_series(1, 4) d;
INSERT INTO staff (username, name, role, department_id, skills, languages, active, capacity)
  SELECT 'handler' || s, 'Handler ' || s, 'handler', 1 + s % 4, '[]', '[]', true, 20 FROM generate_series(1, 40) s;
INSERT INTO customer (name, language, preferred_channel, elderly, vulnerable, created_at)
  SELECT 'Customer ' || c, 'zh-CN', 'email', false, false, TIMESTAMPTZ '2024-01-01' FROM generate_series(1, 1000) c;

INSERT INTO "case" (id, number, kind, channel, product_line, jurisdiction, currency, priority, status, outcome,
                    customer_id, handler_id, department_id, related_case_id, opened_at, closed_at, updated_at)
SELECT i, 'B-' || i,
       CASE WHEN i % 10 < 7 THEN 'claim' WHEN i % 10 < 9 THEN 'complaint' ELSE 'inquiry' END,
       'email', (ARRAY['motor', 'health', 'property', 'travel', 'life'])[1 + i % 5], 'CN', 'CNY', 'normal',
       'closed', CASE WHEN i % 10 IN (7, 8) THEN (ARRAY['upheld', 'partly_upheld', 'not_upheld'])[1 + i % 3] END,
       1 + i % 1000, 1 + i % 40, 1 + (i % 40) % 4,
       CASE WHEN i % 10 IN (7, 8) AND i > 10 THEN i - 7 END,
       TIMESTAMPTZ '2024-03-01 01:00+00' + (i * :spacing) * INTERVAL '1 second',
       TIMESTAMPTZ '2024-03-01 01:00+00' + (i * :spacing) * INTERVAL '1 second' + (2 + i % 9) * INTERVAL '1 day',
       TIMESTAMPTZ '2024-03-01 01:00+00' + (i * :spacing) * INTERVAL '1 second' + (2 + i % 9) * INTERVAL '1 day'
FROM generate_series(1, :cases) i;
SELECT setval(pg_get_serial_sequence('"case"', 'id'), :cases);

-- the main step: due 3 days after filing, done after 0-4 days and a few hours (days 3 and 4: late)
INSERT INTO step (case_id, name, attempt, status, assignee_id, started_at, due_at, completed_at, outcome,
                  paused_seconds, pauses, schedule, reminders_done, escalation_level, extensions)
SELECT c.id, CASE c.kind WHEN 'claim' THEN 'review' WHEN 'complaint' THEN 'resolution' ELSE 'answer' END, 1,
       'done', c.handler_id, c.opened_at, c.opened_at + INTERVAL '3 days',
       c.opened_at + (c.id % 5) * INTERVAL '1 day' + (c.id % 7) * INTERVAL '1 hour', 'done',
       0, '[]', '{}', 0, 0, '[]'
FROM "case" c;
-- claims' payment step: due 10 days after the review, paid 1-8 days after it
INSERT INTO step (case_id, name, attempt, status, assignee_id, started_at, due_at, completed_at, outcome,
                  paused_seconds, pauses, schedule, reminders_done, escalation_level, extensions)
SELECT c.id, 'payment', 1, 'done', c.handler_id, c.opened_at + INTERVAL '1 day', c.opened_at + INTERVAL '11 days',
       c.opened_at + (1 + c.id % 8) * INTERVAL '1 day', 'paid', 0, '[]', '{}', 0, 0, '[]'
FROM "case" c WHERE c.kind = 'claim';
INSERT INTO step (case_id, name, attempt, status, assignee_id, started_at, completed_at, outcome,
                  paused_seconds, pauses, schedule, reminders_done, escalation_level, extensions)
SELECT c.id, 'fix_wording', 1, 'done', c.handler_id, c.opened_at + INTERVAL '2 hours',
       c.opened_at + INTERVAL '5 hours', 'no_promise', 0, '[]', '{}', 0, 0, '[]'
FROM "case" c WHERE c.id % 50 = 0;

INSERT INTO event (case_id, sequence, at, actor, type, data, prev_hash, hash)
SELECT c.id, 1, c.opened_at, 'intake', 'filed', '{}', repeat('0', 64), repeat('1', 64) FROM "case" c;
INSERT INTO event (case_id, sequence, at, actor, type, data, prev_hash, hash)
SELECT c.id, 2, c.opened_at + (1 + c.id % 8) * INTERVAL '1 day', 'handler',
       CASE c.kind WHEN 'claim' THEN 'record_payment' WHEN 'complaint' THEN 'uphold' ELSE 'answer' END,
       '{}', repeat('1', 64), repeat('2', 64) FROM "case" c;
INSERT INTO event (case_id, sequence, at, actor, type, data, prev_hash, hash)
SELECT c.id, 3, c.closed_at, 'system', 'close', '{}', repeat('2', 64), repeat('3', 64) FROM "case" c;
INSERT INTO event (case_id, sequence, at, actor, type, data, prev_hash, hash)
SELECT c.id, 4, c.closed_at - INTERVAL '1 hour', 'customer', 'reopen', '{}', repeat('3', 64), repeat('4', 64)
FROM "case" c WHERE c.id % 97 = 0;

INSERT INTO escalation (step_id, case_id, level, role, reason, raised_at, decided_by_id, decision, decided_at)
SELECT s.id, s.case_id, 1, 'supervisor', 'breach', s.due_at, 1 + s.case_id % 3,
       (ARRAY['extend', 'reassign', 'take_over', 'superseded'])[1 + s.case_id % 4],
       s.due_at + (1 + s.case_id % 20) * INTERVAL '1 hour'
FROM step s WHERE s.name IN ('review', 'resolution', 'answer') AND s.completed_at > s.due_at AND s.case_id % 4 = 0;

INSERT INTO feedback (case_id, score, solved, channel, received_at)
SELECT c.id, 1 + c.id % 5, c.id % 2 = 0, 'web', c.closed_at + INTERVAL '1 day' FROM "case" c WHERE c.id % 3 = 0;
"""


def timed(label: str, work: object) -> float:
    started = time.perf_counter()
    work()  # type: ignore[operator]
    seconds = time.perf_counter() - started
    print(f"  {label:<44} {seconds:8.3f} s")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    args = parser.parse_args()

    name = f"claimflow_bench_reports_{os.getpid()}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_db_engine(url)
        upgrade(engine)
        spacing = max(1, int(2 * 365 * 86400 / args.cases))  # the cases spread over two years
        print(f"filling {args.cases:,} closed cases (one every {spacing} s from 2024-03-01) ...")
        started = time.perf_counter()
        with engine.begin() as connection:
            for statement in (s.strip() for s in FILL.split(";")):
                if statement and not all(line.startswith("--") for line in statement.splitlines()):
                    connection.execute(text(statement), {"cases": args.cases, "spacing": spacing})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
            sizes = {
                table: connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
                for table in ("case", "step", "event", "feedback", "escalation")
            }
        print(f"filled in {time.perf_counter() - started:.1f} s: " + ", ".join(f"{t} {n:,}" for t, n in sizes.items()))

        last = datetime(2024, 3, 1, 1, tzinfo=UTC).timestamp() + args.cases * spacing
        last_day = datetime.fromtimestamp(last, UTC).date()
        monday = date.fromordinal(last_day.toordinal() - last_day.weekday() - 14)  # a whole week before the end
        period = ReportPeriod(monday, date.fromordinal(monday.toordinal() + 6), "Asia/Shanghai")
        calendar = region_calendar("CN", unknown_years="weekends", timezone="Asia/Shanghai")
        now = datetime.now(UTC)
        scope = ReportScope(period, calendar, now)
        trend = ReportScope(trend_period(period, 8), calendar, now)

        print(f"weekly report for {period.label} over {sizes['case']:,} cases (PostgreSQL):")
        with Session(engine) as session:
            baseline = timed(
                'SELECT count(*) FROM "case"', lambda: session.execute(text('SELECT count(*) FROM "case"'))
            )
            per_table: dict[str, float] = {}
            started = time.perf_counter()
            for key, make in report_tables(session, scope=scope):
                per_table[key] = timed(key, make)
            per_table["trend: claim cycle by week"] = timed(
                "trend: claim cycle by week (8 weeks)", lambda: cycle_by_week(session, scope=trend)
            )
            per_table["trend: compliance by week"] = timed(
                "trend: compliance by week (8 weeks)", lambda: compliance_by_week(session, scope=trend)
            )
            total = time.perf_counter() - started
            again = timed(
                'SELECT count(*) FROM "case" (again)', lambda: session.execute(text('SELECT count(*) FROM "case"'))
            )
        print(f"whole weekly report: {total:.2f} s; SELECT count(*): {min(baseline, again) * 1000:.0f} ms "
              f"(report = {total / min(baseline, again):.0f}x count(*)); target < 10 s: "
              f"{'met' if total < 10 else 'MISSED'}")  # fmt: skip
        engine.dispose()
    finally:
        if not args.keep:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            print(f"kept database {name}")
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())

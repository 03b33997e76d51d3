"""SLA watcher benchmark: does a watcher pass cost what is due, or what is open?

    python bench/sla_watch.py                      # 1,000 due steps among 100,000 and then 1,000,000 open
    python bench/sla_watch.py --due 1000 --small 100000 --large 1000000 --repeat 7
    python bench/sla_watch.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/sla_watch.py --due 1000 --small 5000 --large 20000 --profile 30   # quick, with a profile

The script creates its own throwaway PostgreSQL database beside the one the URL names
(``claimflow_bench_<random>``), migrates it with the real migrations and drops it at the end. It loads, with
``INSERT ... SELECT generate_series``, one customer, one claim, one ``filed`` event and one open ``review``
step per case. The ``--due`` steps are loaded first and are the only ones whose ``next_check_at`` has come;
their cases carry a real hash chain. They are a fixed mix of what a pass meets:

* 50%: the 50% reminder (one event, one staff message);
* 30%: the 75% reminder and the breach (two events, two messages, a level-1 escalation);
* 20%: nobody decided the level-1 escalation (superseded; a level-2 escalation, an event, a message).

The other steps are open with their next check 12-36 hours ahead. The table grows from ``--small`` to
``--large`` open steps by adding such steps only, so both sizes hold exactly the same due steps.

At each size it measures, ``--repeat`` times after one warm-up, and prints medians:

* ``due_steps``: the watcher's query alone (rows loaded as ORM objects, locked, rolled back), with the
  ``EXPLAIN (ANALYZE, BUFFERS)`` of the exact statement it sends (it must use ``ix_step_open_next_check``);
* the full pass: ``watch_pass`` plus the commit, on the due steps. Between runs the due state is restored
  (the rows the pass wrote are deleted with triggers off for that one transaction, the steps and escalations
  put back, the touched tables vacuumed), so every run does the same work;
* a noise probe (``SELECT 1`` round trips and a fixed piece of Python), since the machine may be shared:
  the ratios 1M/100k are only meaningful if the probe did not move between the two sizes;
* with ``--profile N``: one more pass under cProfile, its ``N`` costliest entries (cumulative time, then own
  time), and each statement it sent with its time in the driver and the server.

With ``--compare ROUNDS``, at each size the pass is also run as it is (``deferred``) and with each write
waited for (``waited``: ``deferred_writes`` replaced by a block that sends each statement and waits, as the
pass did before), alternating, and each variant's medians are printed with their ratio.

Target (the issue): a full pass on 1,000 due steps in <= 200 ms at 1,000,000 open steps, and a ratio
large/small close to 1.

Figures now (2026-12-04, after ``deferred_writes``; ``python bench/sla_watch.py --compare 2``, two runs,
each followed by the same bench on the code before these changes, commit 18af77f):

==============  =================  =================  ========================================
open steps      this code          18af77f            deferred / waited (``--compare``)
==============  =================  =================  ========================================
100,000         192 / 213 ms       198 / 259 ms       207 / 228 and 194 / 208 ms (x0.91, x0.94)
1,000,000       178 / 177 ms       244 / 220 ms       162 / 203 and 161 / 209 ms (x0.80, x0.77)
==============  =================  =================  ========================================

A third run after fixes from review (a column sent once is not cast to its length; see
``claimflow.db._foldable``): 128.5 ms at 100,000 open, 188.1 ms at 1,000,000 (x1.46; the machine got busier
between the two sizes: the probe's round trips x1.76 and this process's CPU for the same work x1.76); the
``--compare`` medians 134 / 167 (x0.80) at 100,000 and 167 / 155 (x1.07) at 1,000,000.

A pass's CPU is 75-135 ms in this process and 80-110 ms in the server, as before; what changed is that the
two now overlap. The first figures at each size tend to be the slowest of a run (the machine is shared).
What the pass does, in order: four reads (the due steps, their last escalations, their cases' chain tips,
the message keys already used), the rule (about 10 us a step), the escalations inserted (their ids are
needed), the events and messages built; then, sent without waiting (psycopg's pipeline mode), the
superseded escalations and the steps' progress updated, the messages rendered and inserted, the events
chained and inserted; the commit. On the server the writes are about 20 ms each for the step update, the
events and the messages (half of each the JSON document's parse, a quarter the foreign-key checks) and
12 ms for the escalations; the rendering and chaining in this process are shorter than those, so the
block ends waiting for the server. A column with one value in every row (a time, a status, the actor) is
sent once, not in every row of the document (the messages' document went from 713 to 510 KB).

Earlier figures, before ``deferred_writes`` (PostgreSQL 15, 2 shared cores, 2026-12-03, ``python
bench/sla_watch.py``, three runs, the last two with each due step locked with its case): a pass (1,000 steps: 1,300
events, 1,300 staff messages, 500 escalations) took 476 / 294 / 466 ms at 100,000 open and 458 / 414 / 381 ms at
1,000,000 (x0.96 / x1.41 / x0.82, the noise probe moving by up to x1.35 within a run; the due query 50-70 ms at
either size). The cost follows what is due, within the machine's noise. The 200 ms target was not met. A later run
the same day (nothing in the pass changed): 313 ms at 100,000 open, 274 ms at 1,000,000 (min 225; x0.88, the probe
x1.26 / x1.14). Then JSON columns read with orjson, the events' canonical text written by orjson where it spells it
as ``json.dumps`` does, and an instant's spelling remembered: 244 ms at 100,000 open, 270 ms at 1,000,000 (min 186
/ 257; x1.11), a pass's CPU 122 / 150 ms in this process and 120 / 110 ms in the database server. The wall time is
about the sum of the two CPU times (the client and the server take turns on one connection). The same bench on the
commit before (b7430eb) and after, alternating, at 5,000 / 20,000 open: this process's CPU 185 / 175 and 164 / 141
ms before, 113 / 133 and 144 / 130 ms after; the server's 100-140 ms either way. Reaching 200 ms needed the
server's ~120 ms (inserting 4,100 rows with their indexes and foreign keys) to overlap the client's Python, which
``deferred_writes`` then did; fewer rows (one reminder digest per handler and pass) would be a change to what staff
receive and was not made.
Of run 1's 458 ms at 1,000,000, the nine statements took 199 ms in the driver and the server; in the
server alone (``auto_explain`` with triggers) the inserts of events, messages and escalations are about 37,
37 and 23 ms, a third of it the per-row foreign-key checks against ``case`` and ``step``; the step update
18-20 ms (each moved step is a new row version in five indexes). The Python side, about 260 ms, is per
step: the schedule read and the rule (about 40 us), and per event and message their rows, the event's
canonical JSON and hash (about 50 us each). Earlier figures on the same machine: 10.8 s (a statement per
row), 0.81 s (batched statements, ORM objects, a render per message).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Connection, Engine, create_engine, event, insert, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from claimflow.db import create_db_engine, session_scope
from claimflow.demo import sample_directory
from claimflow.migrate import upgrade
from models.audit import GENESIS_HASH, canonical_content, chain_hash
from models.enums import StaffRole
from models.tables import Event, Staff
from tasks.escalations import due_steps, watch_pass
from tasks.staff import import_directory

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)
RULE = "review: 3 working days (service code 3.2)"
INDEX = "ix_step_open_next_check"


# --- the throwaway database ----------------------------------------------------------------------------------


@contextmanager
def throwaway_database(server_url: str) -> Iterator[str]:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"claimflow_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    print(f"database {name} created")
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        print(f"database {name} dropped")


# --- loading -------------------------------------------------------------------------------------------------


def _iso(column: str) -> str:
    """SQL for the ISO text of a timestamptz expression, as ``Schedule.to_json`` writes it."""
    return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')"


def _schedule_sql(opened: str) -> str:
    """A review step's schedule from its opening time: due after 72 h, reminders at 50% and 75%, the
    supervisor at the deadline and the manager a day later (the shape ``Schedule.to_json`` stores)."""
    due = f"({opened}) + interval '72 hours'"
    return f"""jsonb_build_object(
        'due', {_iso(due)},
        'reminders', jsonb_build_array(
            jsonb_build_object('fraction', 0.5, 'at', {_iso(f"({opened}) + interval '36 hours'")}),
            jsonb_build_object('fraction', 0.75, 'at', {_iso(f"({opened}) + interval '54 hours'")})),
        'escalations', jsonb_build_array(
            jsonb_build_object('level', 1, 'role', 'supervisor', 'at', {_iso(due)}),
            jsonb_build_object('level', 2, 'role', 'manager', 'at', {_iso(f"{due} + interval '24 hours'")})),
        'rule', '{RULE}')"""


def _load_cases(connection: Connection, *, first: int, last: int, opened: str, handlers: list[int],
                next_check: str, reminders_done: str, escalation_level: str, events: bool) -> None:  # fmt: skip
    """Customers, cases, ``filed`` events (placeholder hashes unless ``events`` is false) and open review
    steps with ids ``first..last`` (one of each per case, the same id for all three)."""
    handler_array = "ARRAY[" + ",".join(str(h) for h in handlers) + "]"
    handler = f"({handler_array})[1 + g % {len(handlers)}]"
    params = {"first": first, "last": last, "now": NOW}
    series = "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g"
    connection.execute(
        text(f"""
        INSERT INTO customer (id, name, language, preferred_channel, elderly, vulnerable, created_at)
        SELECT g, 'Bench customer ' || g, 'zh-CN', 'email', false, false, {opened} {series}"""),
        params,
    )
    connection.execute(
        text(f"""
        INSERT INTO "case" (id, kind, channel, product_line, jurisdiction, currency, priority, number, status,
                            customer_id, handler_id, opened_at, updated_at)
        SELECT g, 'claim', 'phone', 'motor', 'CN', 'CNY', 'normal', 'CLM-2026-' || lpad(g::text, 7, '0'),
               'under_review', g, {handler}, {opened}, {opened} {series}"""),
        params,
    )
    if events:
        connection.execute(
            text(f"""
            INSERT INTO event (case_id, sequence, at, actor, type, data, prev_hash, hash)
            SELECT g, 1, {opened}, 'bench', 'filed', '{{}}'::jsonb, '{GENESIS_HASH}', md5(g::text) || md5('-' || g)
            {series}"""),
            params,
        )
    connection.execute(
        text(f"""
        INSERT INTO step (id, case_id, name, attempt, status, assignee_id, started_at, due_at, next_check_at,
                          paused_seconds, pauses, policy_rule, schedule, reminders_done, escalation_level,
                          extensions)
        SELECT g, g, 'review', 1, 'open', {handler}, {opened}, ({opened}) + interval '72 hours', {next_check},
               0, '[]'::jsonb, '{RULE}', {_schedule_sql(opened)}, {reminders_done}, {escalation_level}, '[]'::jsonb
        {series}"""),
        params,
    )


def load_due(engine: Engine, due: int) -> list[int]:
    """The due steps (ids 1..due), their cases with a real two-event hash chain, and the undecided level-1
    escalations of the 20% whose manager is due. Returns the handlers' staff ids."""
    with session_scope(engine) as session:
        import_directory(session, directory=sample_directory())
    with Session(engine) as session:
        handlers = sorted(m.id for m in session.exec(select(Staff).where(Staff.role == StaffRole.handler)) if m.id)
    # g % 10 in 0-4: the 50% reminder; 5-7: the 75% reminder and the breach; 8-9: the manager.
    # Seconds ``g * 3`` before: their next checks are spread over the last hour or so, oldest last.
    back = "(g * 3) * interval '1 second'"
    now = "CAST(:now AS timestamptz)"
    opened = (f"(CASE WHEN g % 10 < 5 THEN {now} - interval '36 hours' WHEN g % 10 < 8 THEN {now} - interval "
              f"'72 hours' ELSE {now} - interval '96 hours' END) - {back}")  # fmt: skip
    next_check = (f"CASE WHEN g % 10 < 5 THEN ({opened}) + interval '36 hours' WHEN g % 10 < 8 THEN ({opened}) "
                  f"+ interval '54 hours' ELSE ({opened}) + interval '96 hours' END")  # fmt: skip
    with engine.begin() as connection:
        _load_cases(connection, first=1, last=due, opened=opened, handlers=handlers, next_check=next_check,
                    reminders_done="CASE WHEN g % 10 < 5 THEN 0 WHEN g % 10 < 8 THEN 1 ELSE 2 END",
                    escalation_level="CASE WHEN g % 10 < 8 THEN 0 ELSE 1 END", events=False)  # fmt: skip
        connection.execute(
            text("""
            INSERT INTO escalation (step_id, case_id, level, role, reason, raised_at, decide_by)
            SELECT id, case_id, 1, 'supervisor', 'review due ' || due_at || ' passed (bench)', due_at,
                   due_at + interval '24 hours'
            FROM step WHERE id % 10 >= 8""")
        )
        cases = connection.execute(text('SELECT id, number, opened_at FROM "case" ORDER BY id')).all()
        rows: list[dict[str, Any]] = []
        for case_id, number, opened_at in cases:
            prev = GENESIS_HASH
            for sequence, (type_, data) in enumerate(
                [("filed", {"kind": "claim", "channel": "phone", "status": "received"}),
                 ("step_opened", {"step": "review", "rule": RULE})], start=1):  # fmt: skip
                content = canonical_content(case_number=number, sequence=sequence, at=opened_at, actor="bench",
                                            type=type_, data=data)  # fmt: skip
                digest = chain_hash(prev, content)
                rows.append({"case_id": case_id, "sequence": sequence, "at": opened_at, "actor": "bench",
                             "type": type_, "data": data, "prev_hash": prev, "hash": digest})  # fmt: skip
                prev = digest
        connection.execute(insert(Event.__table__), rows)  # type: ignore[attr-defined]
    return handlers


def grow(engine: Engine, *, first: int, last: int, handlers: list[int], chunk: int = 250_000) -> float:
    """Open steps ``first..last`` whose next check is 12-36 hours ahead (opened in the last 24 hours)."""
    started = time.perf_counter()
    opened = "CAST(:now AS timestamptz) - (g % 1440) * interval '1 minute'"
    for low in range(first, last + 1, chunk):
        with engine.begin() as connection:
            _load_cases(connection, first=low, last=min(low + chunk - 1, last), opened=opened, handlers=handlers,
                        next_check=f"({opened}) + interval '36 hours'", reminders_done="0",
                        escalation_level="0", events=True)  # fmt: skip
    with engine.begin() as connection:
        for table in ("customer", "case", "step"):
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                                    f'(SELECT max(id) FROM "{table}"))'))  # fmt: skip
    vacuum(engine, analyze=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # the load's dirty pages written out now, not by the checkpointer during the passes measured next
        connection.execute(text("CHECKPOINT"))
    return time.perf_counter() - started


def vacuum(engine: Engine, *, analyze: bool = False, tables: tuple[str, ...] = ()) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        names = ", ".join(f'"{t}"' for t in tables)
        connection.execute(text(f"VACUUM {'(ANALYZE) ' if analyze else ''}{names}"))


# --- the due state, kept and restored --------------------------------------------------------------------------


class DueState:
    """A snapshot of what a pass changes, taken once; ``restore`` puts it back after a pass."""

    def __init__(self, engine: Engine, due: int) -> None:
        self.engine = engine
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS bench_due_step, bench_due_escalation"))
            connection.execute(text(
                "CREATE TABLE bench_due_step AS SELECT id, reminders_done, escalation_level, next_check_at "
                "FROM step WHERE id <= :due"), {"due": due})  # fmt: skip
            connection.execute(
                text("CREATE TABLE bench_due_escalation AS SELECT id, decision, decided_at FROM escalation")
            )
        self.mark()

    def mark(self) -> None:
        """Remember the last row of each table a pass appends to (again after the tables grew)."""
        with self.engine.connect() as connection:
            self.marks = {
                table: connection.execute(text(f'SELECT coalesce(max(id), 0) FROM "{table}"')).scalar_one()
                for table in ("event", "outbox", "escalation")
            }

    def restore(self) -> None:
        with self.engine.begin() as connection:
            # this transaction only: the event table's append-only triggers (and FK triggers) do not fire
            connection.execute(text("SET LOCAL session_replication_role = replica"))
            for table in ("event", "outbox", "escalation"):
                connection.execute(text(f'DELETE FROM "{table}" WHERE id > :mark'), {"mark": self.marks[table]})
            connection.execute(
                text("""
                UPDATE step SET reminders_done = s.reminders_done, escalation_level = s.escalation_level,
                                next_check_at = s.next_check_at
                FROM bench_due_step s WHERE step.id = s.id""")
            )
            connection.execute(
                text("""
                UPDATE escalation SET decision = s.decision, decided_at = s.decided_at
                FROM bench_due_escalation s WHERE escalation.id = s.id""")
            )
        vacuum(self.engine, tables=("step", "event", "outbox", "escalation"))


# --- measuring -------------------------------------------------------------------------------------------------


def timed(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000


def median_of(runs: list[float]) -> float:
    return statistics.median(runs)


def probe(engine: Engine, repeat: int) -> dict[str, float]:
    """Noise probe: 200 ``SELECT 1`` round trips, and a fixed piece of Python (hashing, as a pass does)."""

    def round_trips() -> None:
        with engine.connect() as connection:
            for _ in range(200):
                connection.execute(text("SELECT 1")).scalar_one()

    def python() -> None:
        digest = GENESIS_HASH
        for i in range(20_000):
            digest = chain_hash(digest, str(i))

    return {
        "200 x SELECT 1": median_of([timed(round_trips) for _ in range(repeat)]),
        "python (20k hashes)": median_of([timed(python) for _ in range(repeat)]),
    }


def query_plan(engine: Engine, due: int) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the exact statement ``due_steps`` sends."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM step" in statement:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as session:
            due_steps(session, now=NOW, limit=due)
            session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = captured[0]
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            lines = [row[0] for row in cursor.fetchall()]
        connection.rollback()
    return "\n".join(lines)


def measure_query(engine: Engine, due: int, repeat: int) -> list[float]:
    def run() -> None:
        with Session(engine) as session:
            rows = due_steps(session, now=NOW, limit=due)
            assert len(rows) == due, f"{len(rows)} due steps, {due} expected"
            session.rollback()

    run()  # warm-up
    return [timed(run) for _ in range(repeat)]


def measure_pass(
    engine: Engine, state: DueState, due: int, repeat: int, cpu: dict[str, list[float]]
) -> tuple[list[float], str]:
    """The wall time of each pass; its CPU time, this process's and the database server's, into ``cpu``."""
    shapes: set[tuple[int, int, int]] = set()

    def run() -> None:
        with Session(engine, expire_on_commit=False) as session:
            report = watch_pass(session, now=NOW, limit=due)
            session.commit()
        shapes.add((report.steps_checked, len(report.reminders), len(report.escalations)))

    runs: list[float] = []
    for attempt in range(repeat + 1):
        state.restore()
        client, server = time.process_time(), backends_cpu(engine)
        elapsed = timed(run)
        if attempt:  # the first is the warm-up (templates compiled, caches filled)
            runs.append(elapsed)
            cpu["client"].append((time.process_time() - client) * 1000)
            cpu["server"].append((backends_cpu(engine) - server) * 1000)
    state.restore()
    assert len(shapes) == 1, f"the runs did different work: {shapes}"
    checked, reminders, escalations = shapes.pop()
    assert checked == due, f"{checked} steps checked, {due} expected"
    return runs, f"{checked} steps, {reminders} reminders, {escalations} escalations per pass"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def backends_cpu(engine: Engine) -> float:
    """CPU seconds used so far by the PostgreSQL backends of the bench's database (NaN where the server's
    processes cannot be read: not on this machine). Unlike the wall time, CPU time does not count the waits
    for a core that other work on a shared machine holds: it compares code across runs on a noisy machine."""
    with engine.connect() as connection:
        pids = (
            connection.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
            .scalars()
            .all()
        )
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def check_a_pass(engine: Engine, state: DueState, due: int) -> str:
    """One pass, then its effect checked: chains still verify, every due step moved on; then restored."""
    from models.audit import ChainLink, verify_chain

    with Session(engine, expire_on_commit=False) as session:
        watch_pass(session, now=NOW, limit=due)
        session.commit()
    with engine.connect() as connection:
        counts = connection.execute(text("""
            SELECT (SELECT count(*) FROM event WHERE id > :event), (SELECT count(*) FROM outbox WHERE id > :outbox),
                   (SELECT count(*) FROM escalation WHERE id > :escalation),
                   (SELECT count(*) FROM step WHERE id <= :due AND next_check_at <= :now)"""),
            {**state.marks, "due": due, "now": NOW}).one()  # fmt: skip
        broken = 0
        for case_id, number in connection.execute(text('SELECT id, number FROM "case" WHERE id <= :due'), {"due": due}):
            links = [
                ChainLink(r.sequence, r.at, r.actor, r.type, r.data, r.prev_hash, r.hash)
                for r in connection.execute(
                    text("SELECT * FROM event WHERE case_id = :c ORDER BY sequence"), {"c": case_id}
                )
            ]
            broken += verify_chain(number, links) is not None
    state.restore()
    assert counts[3] == 0 and broken == 0, f"still due: {counts[3]}, broken chains: {broken}"
    return f"one pass wrote {counts[0]} events, {counts[1]} messages, {counts[2]} escalations; chains verify"


def profile_pass(engine: Engine, state: DueState, due: int, top: int) -> str:
    """One pass (and its commit) under cProfile: its ``top`` costliest entries by cumulative time."""
    import cProfile
    import io
    import pstats

    statements: list[tuple[float, str]] = []
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(((time.perf_counter() - started.pop()) * 1000, " ".join(statement.split())[:90]))

    profiler = cProfile.Profile()
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        with Session(engine, expire_on_commit=False) as session:
            profiler.enable()
            watch_pass(session, now=NOW, limit=due)
            session.commit()
            profiler.disable()
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    state.restore()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    out.write(f"statements sent ({sum(ms for ms, _ in statements):.1f} ms in the driver and the server):\n")
    for ms, statement in statements:
        out.write(f"  {ms:7.1f} ms  {statement}\n")
    return out.getvalue().strip()


def measure(engine: Engine, state: DueState, *, due: int, repeat: int, show_plan: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"probe": probe(engine, repeat)}
    plan = query_plan(engine, due)
    if INDEX not in plan:
        raise SystemExit(f"due_steps does not use {INDEX}:\n{plan}")
    if show_plan:
        print("    " + plan.replace("\n", "\n    "))
    else:
        print("    " + "\n    ".join(line for line in plan.splitlines() if "Index" in line or "Execution" in line))
    result["query"] = measure_query(engine, due, repeat)
    result["cpu"] = {"client": [], "server": []}
    result["pass"], result["work"] = measure_pass(engine, state, due, repeat, result["cpu"])
    return result


@contextmanager
def each_write_waited_for() -> Iterator[None]:
    """The pass as it ran before ``deferred_writes``: each write waited for before the next step."""
    import tasks.escalations

    original = tasks.escalations.deferred_writes
    tasks.escalations.deferred_writes = lambda session: nullcontext()  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        tasks.escalations.deferred_writes = original


VARIANTS: dict[str, Callable[[], Any]] = {"deferred": nullcontext, "waited": each_write_waited_for}
"""``--compare``: the pass as it is, and with each write waited for."""


def compare(engine: Engine, state: DueState, *, due: int, repeat: int, rounds: int) -> None:
    """The variants' passes, alternating in rounds of ``repeat`` passes each, so the machine's load falls on
    all alike; prints each variant's medians (wall time, CPU here and in the server)."""
    runs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu: dict[str, dict[str, list[float]]] = {name: {"client": [], "server": []} for name in VARIANTS}
    for _ in range(rounds):
        for name, variant in VARIANTS.items():
            with variant():
                runs[name] += measure_pass(engine, state, due, repeat, cpu[name])[0]
    for name in VARIANTS:
        here, server = median_of(cpu[name]["client"]), median_of(cpu[name]["server"])
        print(f"    compare {name:<10} pass median {median_of(runs[name]):6.1f} ms (min {min(runs[name]):6.1f}); "
              f"CPU here {here:6.1f} ms, server {server:6.1f} ms")  # fmt: skip
    first, *others = VARIANTS
    for name in others:
        print(f"    compare {first} / {name}: x{median_of(runs[first]) / median_of(runs[name]):.2f}")


def summary(name: str, runs: list[float]) -> str:
    return f"median {median_of(runs):8.1f} ms  (min {min(runs):7.1f}, max {max(runs):7.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        default=DEFAULT_SERVER,
        help="a PostgreSQL server and database to connect to; the throwaway database is made beside it",
    )
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--plan", action="store_true", help="print the whole query plan at each size")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="at each size, profile one more pass and print its N costliest entries")  # fmt: skip
    parser.add_argument("--compare", type=int, default=0, metavar="ROUNDS",
                        help="at each size, also run the pass as it is and with each write waited for, "
                        "alternating in ROUNDS rounds of --repeat passes")  # fmt: skip
    args = parser.parse_args()
    if not 0 < args.due < args.small < args.large:
        parser.error("need 0 < due < small < large")
    if make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("this benchmark needs PostgreSQL")

    gc.freeze()  # as the desk runner does at start-up (flows/runner.py): a full collection skips the libraries
    with throwaway_database(args.database_url) as url:
        engine = create_db_engine(url)
        try:
            upgrade(engine)
            handlers = load_due(engine, args.due)
            state = DueState(engine, args.due)
            results: dict[int, dict[str, Any]] = {}
            last = args.due
            for size in (args.small, args.large):
                seconds = grow(engine, first=last + 1, last=size, handlers=handlers)
                last = size
                state.mark()
                print(f"\n{size:,} open steps ({args.due:,} due) - loaded {size - args.due:,} more in {seconds:.1f} s")
                if size == args.small:
                    print(f"    {check_a_pass(engine, state, args.due)}")
                results[size] = measure(engine, state, due=args.due, repeat=args.repeat, show_plan=args.plan)
                for key, value in results[size]["probe"].items():
                    print(f"    probe {key:<22} {value:8.1f} ms")
                print(f"    due_steps (query)          {summary('query', results[size]['query'])}")
                print(f"    watch_pass + commit        {summary('pass', results[size]['pass'])}")
                cpu = results[size]["cpu"]
                print(f"    CPU of a pass: this process median {median_of(cpu['client']):.1f} ms, the database server "
                      f"median {median_of(cpu['server']):.1f} ms")  # fmt: skip
                print(f"    ({results[size]['work']})")
                if args.compare:
                    compare(engine, state, due=args.due, repeat=args.repeat, rounds=args.compare)
                if args.profile:
                    print("    " + profile_pass(engine, state, args.due, args.profile).replace("\n", "\n    "))
        finally:
            engine.dispose()

    small, large = results[args.small], results[args.large]
    print(f"\nratio {args.large:,} / {args.small:,} open (medians, same run; 1.0 = cost follows what is due):")
    for key in small["probe"]:
        print(f"    probe {key:<22} {small['probe'][key]:8.1f} -> {large['probe'][key]:8.1f} ms   "
              f"x{large['probe'][key] / small['probe'][key]:.2f}")  # fmt: skip
    for key, label in (("query", "due_steps (query)"), ("pass", "watch_pass + commit")):
        a, b = median_of(small[key]), median_of(large[key])
        print(f"    {label:<28} {a:8.1f} -> {b:8.1f} ms   x{b / a:.2f}")
    for side in ("client", "server"):
        a, b = median_of(small["cpu"][side]), median_of(large["cpu"][side])
        label = f"CPU, {'this process' if side == 'client' else 'database server'}"
        print(f"    {label:<28} {a:8.1f} -> {b:8.1f} ms   x{b / a:.2f}")
    verdict = "met" if median_of(large["pass"]) <= 200 else "NOT met"
    print(f"target <= 200 ms for a pass at {args.large:,} open: {verdict} ({median_of(large['pass']):.1f} ms)")


if __name__ == "__main__":
    main()

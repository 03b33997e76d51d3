"""Intake webhook benchmark: N signed posts at concurrency C against the API (uvicorn) on PostgreSQL, against a
plain driver loop filing the same rows in the same run.

    python bench/intake.py                                  # 20,000 posts, concurrency 32
    python bench/intake.py --count 2000 --concurrency 16 --workers 2
    python bench/intake.py --count 4000 --concurrency 64,32 --layout thread,filer   # writer thread against filer
    python bench/intake.py --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

It creates a throwaway database beside ``--postgres-url`` (dropped at the end), migrates it, loads the sample
desk (routing needs handlers), and starts the API as its own process (``uvicorn --factory
claimflow.web.app:create_app``) with Prefect pointed at a closed port (the runs are the reconciler's job; the
launcher gives up once and pauses); with ``--layout filer`` a filing process beside it
(``python -m claimflow.web.filer``, as ``claimflow api --filer`` runs it), whose CPU is printed on its own. Each
post is a signed claim, complaint or inquiry (in turn) with its own
``Idempotency-Key``; each answer is checked. It prints cases/s, p50/p99 latency, then files the same kind of
rows with ``tasks.intake.file_from_webhook`` in a loop (one transaction each, no HTTP) and prints that rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.httpload import Outcome, Request, post_all
from claimflow.db import create_db_engine, session_scope
from claimflow.demo import sample_directory
from claimflow.migrate import upgrade
from claimflow.web.intake import sign_headers
from models.tables import Case, IntakeRequest
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

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        *,
        port: int,
        workers: int = 1,
        stack: str = "auto",
        layout: str = "thread",
    ) -> None:
        self.port, self.workers, self.layout = port, workers, layout
        self.loop, self.http = STACKS[stack]
        self.env = {
            **os.environ,
            "CLAIMFLOW_DATABASE_URL": database_url,
            "CLAIMFLOW_DATA_DIR": str(data_dir),
            "CLAIMFLOW_WEBHOOK_SECRETS": json.dumps({SOURCE: [SECRET]}),
            "PREFECT_API_URL": "http://127.0.0.1:9/api",
            "PYTHONPATH": str(ROOT),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.filer: int | None = None
        """The filing process's id (the filer layout)."""
        self.socket_dir: str | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "uvicorn", "--factory", "claimflow.web.app:create_app", "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", str(self.workers), "--log-level", "warning",
                   "--no-access-log", "--loop", self.loop, "--http", self.http]  # fmt: skip
        socket_path = None
        if self.layout == "filer":  # a filing process beside uvicorn, in its session, takes its filings
            if self.socket_dir is not None:  # started again after a kill
                shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = tempfile.mkdtemp(prefix="bench-filer-")
            socket_path = f"{self.socket_dir}/filer.sock"
            self.env.update(CLAIMFLOW_API_FILER_SOCKET=socket_path, CLAIMFLOW_API_FILER_KEY=uuid.uuid4().hex)
            filer = shlex.join([sys.executable, "-m", "claimflow.web.filer"])
            command = ["sh", "-c", f"{filer} & exec {shlex.join(command)}"]
        self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, start_new_session=True)
        while socket_path is not None and not Path(socket_path).exists():
            if self.process.poll() is not None:
                raise RuntimeError("the API did not start")
            time.sleep(0.05)
        if socket_path is not None:
            self.filer = next(pid for pid in cpu_seconds(lambda name, group, pid: group == self.process.pid)  # type: ignore[union-attr]
                              if b"claimflow.web.filer" in Path(f"/proc/{pid}/cmdline").read_bytes())  # fmt: skip
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
        """SIGKILL, no shutdown of any kind (workers too, when uvicorn runs several, and the filer)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)  # its own process group: uvicorn, its workers, the filer
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.filer is not None:  # after the API: it answers what it holds first
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.filer, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while Path(f"/proc/{self.filer}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid if self.process else self.filer, signal.SIGKILL)
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


STACKS = {
    "auto": ("auto", "auto"),  # what uvicorn picks, as 'claimflow api' and 'claimflow up' run it: uvloop and httptools
    "standard": ("uvloop", "httptools"),  # the event loop and HTTP parser in C (the project's dependencies)
    "pure": ("asyncio", "h11"),  # the pure-Python pair uvicorn falls back to without them (the desk before)
}
"""uvicorn's event loop and HTTP parser, by name (``--stack``)."""

LAYOUTS = {
    "thread": "filing in the API process's group-commit thread",
    "filer": "filing in a process of its own",
}
"""Where the filings are written, by name (``--layout``)."""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def request(index: int) -> Request:
    """The ``index``-th post: a claim, complaint or inquiry in turn, signed now, with a key of its own."""
    body = json.dumps(payload(index)).encode()
    path = PATHS[index % 3]
    return path, body, signed(body, f"{RUN}-{index}", path)


RUN = uuid.uuid4().hex  # the keys' prefix: new for every run, the same for a post sent again


def load(port: int, *, count: int, concurrency: int, first: int = 0) -> Outcome:
    """Post ``count`` signed cases (numbered from ``first``), ``concurrency`` at a time, with the light client
    (``bench/httpload.py``: httpx's own CPU made the load generator the bound at concurrency 64)."""
    return asyncio.run(post_all("127.0.0.1", port, lambda n: request(first + n), count=count, concurrency=concurrency))


TABLES_PER_CASE = ("event", "step", "outbox", "intake_request", "attachment")


def anchor(database_url: str, *, count: int, concurrency: int) -> tuple[float, int, int]:
    """The anchor: raw psycopg writing the rows one filing wrote, per case, in a transaction of its own, from
    ``concurrency`` threads, into tables made like the desk's (``LIKE ... INCLUDING ALL``: columns, defaults,
    indexes; no triggers), with the number taken from a counter row the same way. The rows are those of the first
    case the API filed, each with its own case id, number and keys. Returns cases/s, rows and statements a case."""
    import threading

    import psycopg

    conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        template = connection.execute('SELECT id, customer_id, kind FROM "case" ORDER BY id LIMIT 1').fetchone()
        assert template is not None, "the API filed nothing"
        case_id, customer_id, kind = template
        rows: dict[str, list[str]] = {}
        for table in ("customer", "case", *TABLES_PER_CASE):
            where = "id = %s" if table in ("customer", "case") else "case_id = %s"
            key = customer_id if table == "customer" else case_id
            found = connection.execute(f'SELECT row_to_json(t)::text FROM "{table}" t WHERE {where}', (key,))
            rows[table] = [row[0] for row in found]
            connection.execute(f'DROP TABLE IF EXISTS "anchor_{table}"')
            connection.execute(f'CREATE TABLE "anchor_{table}" (LIKE "{table}" INCLUDING ALL)')
        connection.execute("CREATE TABLE IF NOT EXISTS anchor_counter (LIKE case_counter INCLUDING ALL)")
        query = "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND column_name <> 'id'"
        columns = {table: [c for (c,) in connection.execute(query, (f"anchor_{table}",))] for table in rows}

    def insert(table: str, returning: bool = False) -> str:
        names = ", ".join(f'"{c}"' for c in columns[table])
        tail = " RETURNING id" if returning else ""
        return (f'INSERT INTO "anchor_{table}" ({names}) SELECT {names} '
                f'FROM json_populate_record(NULL::"anchor_{table}", %s::json){tail}')  # fmt: skip

    def changed(row: str, **values: Any) -> str:
        return json.dumps({**json.loads(row), **values})

    next_index = iter(range(count))
    lock = threading.Lock()
    statements = 0

    def worker() -> None:
        nonlocal statements
        with psycopg.connect(conninfo) as connection:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                with connection.transaction():
                    value = connection.execute(
                        "INSERT INTO anchor_counter (kind, year, last_value) VALUES (%s, 2026, 1) ON CONFLICT (kind, "
                        "year) DO UPDATE SET last_value = anchor_counter.last_value + 1 RETURNING last_value",
                        (kind,),
                    ).fetchone()[0]  # type: ignore[index]
                    customer = connection.execute(insert("customer", True), (rows["customer"][0],)).fetchone()[0]  # type: ignore[index]
                    case = connection.execute(insert("case", True), (changed(
                        rows["case"][0], number=f"A-{value:07d}", customer_id=customer),)).fetchone()[0]  # type: ignore[index]  # fmt: skip
                    done = 3
                    for table in TABLES_PER_CASE:
                        for n, row in enumerate(rows[table]):
                            extra = (
                                {"idempotency_key": f"a{index}:{n}"} if table in ("outbox", "intake_request") else {}
                            )
                            connection.execute(insert(table), (changed(row, case_id=case, **extra),))
                            done += 1
                with lock:
                    statements = done

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    per_case = 2 + sum(len(v) for v in rows.values())  # the counter row and every row written
    return count / elapsed, per_case, statements


def cpu_seconds(match: Callable[[str, int, int], bool]) -> dict[int, float]:
    """CPU time (user + system) of each live process whose command name, process group and id ``match``."""
    found: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text_ = stat.read_text()
        except OSError:
            continue
        name = text_[text_.index("(") + 1 : text_.rindex(")")]
        fields = text_[text_.rindex(")") + 2 :].split()
        pid = int(stat.parent.name)
        if match(name, int(fields[2]), pid):
            found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """The CPU the processes alive at the end spent since ``before`` (a process that ended meanwhile is not
    counted: subtracting its whole time from the total had made a side's figure negative)."""
    return sum(max(0.0, seconds - before.get(pid, 0.0)) for pid, seconds in after.items())


def serves(database: str) -> Callable[[str, int, int], bool]:
    """PostgreSQL's processes that work for ``database``: its backends and the shared ones (WAL writer,
    checkpointer, autovacuum), not another database's backends (a machine shared with other work)."""

    def match(name: str, _group: int, pid: int) -> bool:
        if name != "postgres":
            return False
        try:  # "postgres: 15/main: USER DATABASE HOST(PORT) STATE" (or "[local]") for a client's backend
            title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split(": ", 2)[-1].split()
        except OSError:
            return False
        client = len(title) >= 3 and ("(" in title[2] or title[2] == "[local]")  # over TCP, or a local socket
        return not client or title[1] == database

    return match


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    """One load against the API: answers, latencies and the CPU each side spent."""

    label: str
    count: int
    concurrency: int
    elapsed: float
    latencies: list[float]
    statuses: dict[int, int]
    cpu: dict[str, float]
    resent: int = 0
    answered: dict[int, int] = field(default_factory=dict)
    """Every answer, the warm-up's too (what the database must hold)."""

    @property
    def rate(self) -> float:
        return self.statuses.get(202, 0) / self.elapsed

    def report(self) -> None:
        p50, p99 = percentile(self.latencies, 0.5) * 1000, percentile(self.latencies, 0.99) * 1000
        print(f"project: {self.label}, concurrency {self.concurrency}: {self.rate:7.1f} cases/s "
              f"({self.count} posts in {self.elapsed:.1f} s; answers {dict(sorted(self.statuses.items()))}); "
              f"latency p50 {p50:.0f} ms, p99 {p99:.0f} ms; {self.resent} sent again on a new connection; "
              f"after {WARM_UP} warm-up posts")  # fmt: skip
        shares = ", ".join(
            f"{name} {seconds / self.elapsed * 100:.0f} % of a core ({seconds / self.count * 1000:.2f} ms a case)"
            for name, seconds in self.cpu.items()
        )
        bound = max(self.cpu, key=lambda name: self.cpu[name])
        print(f"  CPU: {shares}; the most loaded: {bound}")


def drive(api: ApiProcess, label: str, *, count: int, concurrency: int, first: int = 0) -> Run:
    """``WARM_UP`` posts, then ``count`` measured ones (numbered from ``first``: each post of a bench is its own
    policy), with the CPU each side spent on the measured ones."""
    assert api.process is not None
    group, filer = api.process.pid, api.filer  # its own session: uvicorn, its workers and the filer
    sides: dict[str, Callable[[str, int, int], bool]] = {
        "API": lambda name, pgid, pid: pgid == group and pid != filer,
        "PostgreSQL": serves(make_url(api.env["CLAIMFLOW_DATABASE_URL"]).database or ""),
    }
    if filer is not None:
        sides["filing process"] = lambda name, pgid, pid: pid == filer
    warm = load(api.port, count=WARM_UP, concurrency=min(concurrency, WARM_UP), first=first)
    before = {name: cpu_seconds(match) for name, match in sides.items()}
    mine = own_cpu()
    outcome = load(api.port, count=count, concurrency=concurrency, first=first + WARM_UP)
    cpu = {name: spent(before[name], cpu_seconds(match)) for name, match in sides.items()}
    cpu["load generator"] = own_cpu() - mine
    statuses = {code: outcome.statuses.get(code, 0) + warm.statuses.get(code, 0)
                for code in outcome.statuses.keys() | warm.statuses.keys()}  # fmt: skip
    return Run(label, count, concurrency, outcome.elapsed, outcome.latencies, outcome.statuses, cpu,
               resent=outcome.resent, answered=statuses)  # fmt: skip


WARM_UP = 32
"""Posts sent to a freshly started API before the measured ones (and not counted in them): its first batches pay
for SQLAlchemy's statement cache, psycopg's prepared statements and the first connections."""


def stored(url: str) -> tuple[int, int]:
    engine = create_db_engine(url, pool=False)
    with Session(engine) as session:
        cases = session.exec(select(func.count()).select_from(Case)).one()
        records = session.exec(select(func.count()).select_from(IntakeRequest)).one()
    engine.dispose()
    return cases, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="posts per concurrency")
    parser.add_argument("--concurrency", default="64,32", help="comma-separated; each gets its own run and anchor")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--stack", default="auto", help=f"comma-separated, each run at every concurrency: {', '.join(STACKS)}"
    )
    parser.add_argument(
        "--layout",
        default="thread",
        help="comma-separated, each run at every concurrency: thread (the group commit's writer thread in each API "
        "process), filer (a filing process of its own, claimflow.web.filer)",
    )
    parser.add_argument("--sqlite-count", type=int, default=2_000, help="posts to the embedded default (0: skip)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    stacks = args.stack.split(",")
    if unknown := [name for name in stacks if name not in STACKS]:
        parser.error(f"--stack: unknown {', '.join(unknown)} (known: {', '.join(STACKS)})")
    layouts = args.layout.split(",")
    if unknown := [name for name in layouts if name not in LAYOUTS]:
        parser.error(f"--layout: unknown {', '.join(unknown)} (known: {', '.join(LAYOUTS)})")
    variants = [(stack, layout) for stack in stacks for layout in layouts]
    accepted = posted = 0

    with throwaway_database(args.postgres_url, "claimflow_bench_intake") as url, tempfile.TemporaryDirectory() as tmp:
        for concurrency in levels:
            runs = []
            for stack, layout in variants:
                api = ApiProcess(url, Path(tmp), port=free_port(), workers=args.workers, stack=stack, layout=layout)
                api.start()
                try:
                    label = (f"API ({stack}: {api.loop}, {api.http}; {LAYOUTS[layout]}), {args.workers} worker(s), "
                             "PostgreSQL")  # fmt: skip
                    runs.append(drive(api, label, count=args.count, concurrency=concurrency, first=posted))
                    posted += WARM_UP + args.count
                finally:
                    api.stop()
                accepted += runs[-1].answered.get(202, 0)
            rate, rows, statements = anchor(url, count=args.count, concurrency=concurrency)
            print(f"anchor: raw psycopg, the same {rows} rows a case in {statements} statements and one commit, "
                  f"concurrency {concurrency}: {rate:7.1f} cases/s")  # fmt: skip
            names = ["/".join(v) if len(variants) > 1 else v[0] for v in variants]
            for name, run in zip(names, runs, strict=True):
                run.report()
                print(f"ratio project ({name})/anchor: {run.rate / rate:.2f}")
            if len(runs) > 1:
                print(f"ratio {names[-1]}/{names[0]}: {runs[-1].rate / runs[0].rate:.2f}")
        cases, records = stored(url)
        print(f"stored: {cases} cases, {records} idempotency records, for {accepted} answers 202")
        if cases != accepted:
            raise SystemExit(f"mismatch: {accepted} accepted but {cases} cases stored")
        if args.sqlite_count:
            sqlite_url = f"sqlite:///{Path(tmp) / 'desk.db'}"
            engine = create_db_engine(sqlite_url, pool=False)
            upgrade(engine)
            with session_scope(engine) as session:
                import_directory(session, directory=sample_directory())
                session.execute(text("UPDATE staff SET capacity = 1000000"))
            engine.dispose()
            answered = sent = 0
            for layout in layouts:  # the same mailbox of posts, numbered on
                api = ApiProcess(sqlite_url, Path(tmp) / "sqlite", port=free_port(), layout=layout)
                api.start()
                try:
                    run = drive(api, f"API on the embedded default (SQLite; {LAYOUTS[layout]})",
                                count=args.sqlite_count, concurrency=levels[-1], first=sent)  # fmt: skip
                finally:
                    api.stop()
                run.report()
                answered += run.answered.get(202, 0)
                sent += WARM_UP + args.sqlite_count
            if stored(sqlite_url)[0] != answered:
                raise SystemExit("mismatch on SQLite")


if __name__ == "__main__":
    main()

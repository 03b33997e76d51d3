"""Case flow legs per second: the desk runner against plain ``flow.serve()``, end to end, on PostgreSQL.

    python bench/flow_runs.py                                  # 40 inquiries, 20 in flight; serve: 10
    python bench/flow_runs.py --cases 40 --concurrency 20 --serve-cases 10 --runner-limit 10 --poll 0.2
    python bench/flow_runs.py --no-serve --no-scale-out        # the desk runner only
    python bench/flow_runs.py --compare observer+task-read+stock-server,default --rounds 2   # before / now
    python bench/flow_runs.py --server-workers 2 --compare default    # Prefect's scale-out (prefect-redis)

A *leg* is one stretch of a case's flow run: its start up to the first suspension, or a resume up to the
next suspension or the end. An inquiry has two: start -> suspended for the answer; resumed with the answer
-> answer applied, case closed, run Completed.

What the script sets up (and removes at the end, also on Ctrl-C or an error):

* two throwaway PostgreSQL databases beside ``--postgres-url``: one for the Prefect server
  (``postgresql+asyncpg``) and one for the cases (migrated with ``claimflow.migrate.upgrade``);
* a Prefect server (``prefect server start`` on a free port, ``PREFECT_HOME`` in a temporary folder) with the
  tuning ``claimflow.orchestrator.server_environment`` gives the embedded server (its ``PREFECT_SERVER_SERVICES_*``,
  ``PREFECT_SERVER_EVENTS_*`` and ``PREFECT_SERVER_DATABASE_SQLALCHEMY_*`` keys), plus any ``--server-setting``;
* the sample staff plus a generated directory: ``--signers`` supervisors who sign the answers and 40
  health handlers the inquiries are routed among, all enrolled with fresh TOTP secrets. An approval code is
  accepted once per person and time step (30 s), so the driver signs each answer with the next supervisor
  in turn, using that person's code for the current step or, once that one is used, for the next one (both
  are inside the accepted window); no code is ever reused and none is refused. A supervisor may answer any
  inquiry (the handler check applies to handlers only).

Phases (each on fresh cases, the same driver):

1. ``desk``: the desk runner in a process of its own (``flows.runner.DeskRunner``, the deployments
   registered by ``flows.deployments.register`` with every interval 0), after two warm-up cases.
2. ``desk, profiled``: the same while ``py-spy`` samples the runner and the Prefect server (no ``--no-profile``).
3. ``hold``: ``--cases`` cases started and left suspended: the runner's OS processes and threads are counted
   with none waiting and with all of them waiting; then all are resumed at once.
4. ``2 runners``: two desk runner processes (no ``--no-scale-out``).
5. ``serve``: the same flows served by plain ``serve(...)`` with its defaults (a new process per run, a
   poll every 10 s), ``--serve-cases`` cases (no ``--no-serve``).

The driver (this process) files the inquiries through ``intake``, starts their runs with
``tasks.runs.launch_case`` keeping ``--concurrency`` cases in flight, polls every ``--driver-poll`` s (0.2) for
the runs that are suspended or done, resumes every suspended run with ``prefect.flow_runs.aresume_flow_run``
and a valid answer, and launches the next case when one completes. It uses one Prefect client, and sends the
launches and the answers of a poll at once (intake and the people answering are many callers; a serial
driver paced the desk by its own round trips). An answer that reaches its run after the code's window (serve:
a 10 s poll and a new process) is refused; the run asks again and is answered again, one more leg (noted).
Times come from the server's state timestamps (suspended, completed) and the case's event log (answer
applied), not from the driver's polling.

Printed per phase: legs/s, start-to-suspended and resume-to-applied / resume-to-completed (median, p90),
and the CPU seconds per leg of each party (runner or serve, the Prefect server, the PostgreSQL backends of
the two databases, the driver) next to the machine's busy CPU, and how much of that was none of them (the
machine may be shared: compare variants within one ``--compare`` run, which alternates them).

Variants (``--compare A,B`` with ``+`` to combine; ``--runner-variant`` for the phases):

* the runner: ``task-read`` (read_case a Prefect task, as before), ``observer`` (Prefect's per-run
  suspension watcher on, as before), ``heartbeat`` and ``storage-read`` (as before), ``poll-1s`` (the desk's
  default poll), ``limit-20``;
* the server: ``stock-server`` (Prefect's defaults, none of claimflow's tuning), ``recorder-batch`` and
  ``persister-batch`` (each part of that tuning, to add to ``stock-server``), ``pool-20``;
* ``--server-workers N``: Prefect's scale-out on this machine (``PrefectServer``: N web processes, one services
  process, a Redis of the bench's own; needs ``pip install -e '.[bench]'``).

Figures (prefect 3.9.1, PostgreSQL 15, 2 cores shared by the server, the runner, PostgreSQL and the driver,
2026-12-03; 40 inquiries, 20 in flight, runner limit 10, poll 0.2 s). Each ``--compare`` run alternates its
variants over two rounds; the machine was shared with other work (``others``: cores busy outside the parties),
which moves a figure by 10-20 %: compare within a run. legs/s / server ms per leg / runner ms per leg:

| variant                                   | run A (others ~0.3)  | run B (others 0.6-1.0) |
|-------------------------------------------|----------------------|------------------------|
| ``observer+task-read+stock-server``: before | 1.54 / 526 / 197   | 1.36 / 532 / 198       |
| ``task-read+stock-server``: no watcher     | 2.32 / 379 / 111     |                        |
| ``stock-server``: + reads plain calls      | 2.88 / 290 / 92      | 2.79 / 261 / 83        |
| ``stock-server+recorder-batch``            | 2.85 / 263 / 99      | 2.64 / 264 / 98        |
| ``stock-server+persister-batch``           |                      | 2.12 / 306 / 96        |
| ``default``: + both batches (now)          | 3.78 / 208 / 82      | 2.35 / 270 / 101       |

The operators' workspace (2026-12-06, ``--compare no-workspace,default --rounds 3 --no-serve --no-scale-out
--no-profile``; the outbox delivery loop on in both): without case pages 7.52 / 8.38 / 8.08 legs/s, with them (each
changed case's artifact and tags, the worklists) 7.77 / 7.54 / 6.99: 7 % fewer legs/s on average (the bound is
15 %), about 8 ms more of the runner's CPU and 12 ms more of the server's per leg. An earlier run with the delivery
loop in ``default`` only (before it was in both) measured 8.72 / 8.83 / 8.50 against 8.14 / 7.23 / 7.68: the
delivery loop's dead-lettering (no channel configured here) cost more than the case pages.

Run C: ``default`` 3.25 / 245 / 93, ``poll-1s`` 3.26 / 233 / 89, ``no-heartbeat`` 3.43 / 239 / 91, ``limit-20``
2.87 / 264 / 101. Run D: ``default`` 3.14 / 248 / 94, ``pool-20`` 3.44 / 238 / 94. ``--server-workers 2 --compare
default``: 3.92 / 302 (web processes, services and Redis together) / 90, the machine 1.9 of 2 cores busy. The
phases (``python bench/flow_runs.py``): desk runner 3.06 legs/s (server 252, runner 93 ms/leg), 2 desk runners
2.65, plain ``serve()`` 0.29 (its runner side 4.9 s of CPU per leg): 10.7x; 0 processes and 0 threads per
waiting case. Before these changes the same phases gave 1.35 (server 523, runner 196 ms/leg), 1.24 with 2
runners, and serve() stalled (its answers were refused once their codes expired, and the driver never answered
again). The watcher and the plain reads are the clear gains; the batches are within the noise here (they
write fewer, larger transactions: the embedded SQLite default's lock is where that counts most).

Later on 2026-12-03 (``heartbeat+storage-read`` is the desk before the last two changes; ``default`` the desk
now: no flow-run heartbeats, the default result storage read once per runner). ``--compare
default,heartbeat+storage-read --rounds 3``: 5.28 / 5.27 / 5.48 legs/s against 5.17 / 4.49 / 5.12, 5.34 against
4.91 over the rounds (server 156 against 164 ms per leg, runner 62 against 67). The phases: desk runner 5.28
legs/s (server 137, runner 50 ms/leg), hold then burst 5.05, 2 desk runners 4.19, plain ``serve()`` 0.35: 15.1x.
The same host moves the same code by up to 2x within minutes (one ``--compare`` run gave the older desk 8.4
legs/s at 93 ms of server CPU per leg in two rounds and 4.1 at 199 ms in the third): compare variants within a
run. The threads counted while cases wait are the runner's worker-thread pool (database transactions run
there), which grows with load: 7 before, 8 with 40 cases waiting, 9 after they all closed.

On 2026-12-04 two desk runners lost 3-4 runs a phase: a runner that read a run as due after the other had
already run it to its suspension got Prefect's ``Pause`` from its Pending claim, which ended that runner and
crashed the runs it was executing (now ``flows.runner.claim``; the summary counts failed runs per phase).
After the fix, ``python bench/flow_runs.py``: desk runner 7.63 legs/s, profiled 7.66, hold then burst 6.66,
2 desk runners 7.22 (0 failed), plain ``serve()`` 0.37: 20.6x; 0 processes and 0.03 threads per waiting case.

Where the rest goes (server CPU per call, measured alone): each accepted state change 20-27 ms (a leg has
three: the runner's Pending claim, Running, Suspended or Completed), a resume 30 ms, creating a run 38 ms,
the engine's per-leg read of the run, of the default result storage and its PATCH 7-10 ms each, a run input
9 ms, the runner's poll (``get_scheduled_flow_runs_for_deployments``, which also marks the deployments ready)
20 ms and the driver's 10-26 ms, each poll. One ``prefect server`` process runs on one core: at about 0.8 of
it the desk runner is at 3.2-3.8 legs/s and the server is the bound (machine 1.5 of 2 cores). Its per-request
CPU is Prefect's (FastAPI, pydantic, SQLAlchemy ORM, the orchestration rules, the events pipeline);
``--server-workers 2`` spreads it over both cores, then the machine itself is full (1.9 of 2 cores).

Scale-out settings for the Prefect server (beyond the embedded default): PostgreSQL
(``PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://...``); the tuning above
(``PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE=100``, ``..._TASK_RUN_RECORDER_FLUSH_INTERVAL=1``,
``PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE=200``); ``prefect server start --workers N`` (web only)
beside one ``prefect server services start``, with Redis for events, leases and Docket
(``PREFECT_MESSAGING_BROKER=prefect_redis.messaging``, ``PREFECT_MESSAGING_CACHE=prefect_redis.messaging``,
``PREFECT_SERVER_EVENTS_CAUSAL_ORDERING=prefect_redis.ordering``,
``PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect_redis.lease_storage``,
``PREFECT_REDIS_MESSAGING_URL=redis://HOST:6379/0``, ``PREFECT_SERVER_DOCKET_URL=redis://HOST:6379/1``); on a
fresh database start one process first (N processes migrate and register block types at once and fail); and
one ``claimflow runner`` per machine with cores to spare (a second runner on these two cores adds nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DRIVER_POLL = 0.2
ANSWER = "Yes, physiotherapy is covered."
SETTLE = 3.0  # seconds to let a runner finish what follows a suspension (heartbeat threads stop within 1 s)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- processes and /proc -------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and of its children it has reaped (a served run's process, say)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_cpu(pid: int) -> float:
    return cpu_seconds(pid) + sum(cpu_seconds(p) for p in descendants(pid))


def thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


@dataclass
class Held:
    processes: int  # descendants of the process
    threads: int  # OS threads of the process

    def __str__(self) -> str:
        return f"{self.processes} child processes, {self.threads} threads"


def held(pid: int) -> Held:
    return Held(len(descendants(pid)), thread_count(pid))


class Child:
    """A process this script started, in a session of its own; stopped by its own id only."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], logdir: Path, cwd: Path = REPO) -> None:
        self.name = name
        self.logfile = logdir / f"{name}.log"
        with self.logfile.open("wb") as out:
            self.process = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # whatever is left of its own session (a served run, say)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- databases, server, staff --------------------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_databases(admin_url: str, *names: str) -> Iterator[None]:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    made = []
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
                made.append(name)
        log(f"databases {', '.join(names)} created")
        yield
    finally:
        with admin.connect() as connection:
            for name in made:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        log(f"databases {', '.join(made)} dropped")


def backend_pids(admin_url: str, names: tuple[str, ...]) -> list[int]:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            rows = connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = ANY(:names)"), {"names": list(names)}
            )
            return [int(r[0]) for r in rows]
    finally:
        admin.dispose()


def start_server(
    env: dict[str, str], port: int, logdir: Path, name: str = "prefect-server", workers: int = 1, nice: int = 0
) -> Child:
    """``prefect server start`` (through ``claimflow.prefect_server``, which lowers its CPU priority by ``nice`` as
    ``claimflow up`` does) on ``port``; returns once it answers."""
    argv = [sys.executable, "-m", "claimflow.prefect_server", "--nice", str(nice), "--host", "127.0.0.1", "--port",
            str(port)]  # fmt: skip
    if workers > 1:
        argv += ["--workers", str(workers)]  # web server only: the services run in a process of their own
    server = Child(name, argv, env=env, logdir=logdir)
    started = time.monotonic()

    def healthy() -> bool:
        if not server.alive():
            raise RuntimeError(f"the Prefect server exited:\n{server.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until("the Prefect server's /api/health", healthy, timeout=180)
    log(f"Prefect server ready on port {port} in {time.monotonic() - started:.1f} s (pid {server.pid})")
    return server


def load_staff(engine: Any, *, signers: int, handlers: int) -> dict[str, str]:
    """The sample desk plus generated supervisors (who sign) and health handlers; everyone enrolled."""
    from sqlmodel import select

    from claimflow.db import session_scope
    from claimflow.demo import sample_directory
    from claimflow.secrets import encrypt
    from claimflow.settings import get_settings
    from models.otp import new_secret
    from models.staff import StaffDirectory, StaffEntry
    from models.tables import Staff
    from tasks.staff import enroll, import_directory

    generated = [
        StaffEntry(username=f"bench.sup{i:03d}", name=f"Bench supervisor {i}", role="supervisor",
                   department="claims-health", languages=["zh-CN", "en"])
        for i in range(1, signers + 1)
    ] + [
        StaffEntry(username=f"bench.h{i:03d}", name=f"Bench handler {i}", role="handler", department="claims-health",
                   skills=["health"], languages=["zh-CN", "en"], capacity=1000)
        for i in range(1, handlers + 1)
    ]  # fmt: skip
    settings = get_settings()
    secrets: dict[str, str] = {}
    with session_scope(engine) as session:
        import_directory(session, directory=sample_directory())
        import_directory(session, directory=StaffDirectory(staff=generated))
        for member in session.exec(select(Staff)):
            secrets[member.username] = secret = new_secret()
            enroll(session, username=member.username, encrypted_secret=encrypt(settings, secret))
    return {name: secret for name, secret in secrets.items() if name.startswith("bench.sup")}


class Signers:
    """Valid, never reused approval codes from a pool of supervisors, in turn.

    A code is accepted at most once per person and time step, for the previous, current and next step
    (30 s each), and never at or before that person's last accepted step. Each person gives the code of the
    current step, or the next step's once the current one is used.
    """

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.order = deque(sorted(secrets))
        self.used: dict[str, int] = {}

    def sign(self) -> tuple[str, str]:
        from models.otp import code_at

        current = int(time.time()) // 30
        for _ in range(len(self.order)):
            who = self.order[0]
            self.order.rotate(-1)
            counter = max(self.used.get(who, -10) + 1, current)
            if counter <= current + 1:
                self.used[who] = counter
                return who, code_at(self.secrets[who], datetime.fromtimestamp(counter * 30, UTC))
        raise RuntimeError("every signer used both of their codes in this time step: raise --signers")


# --- the driver ----------------------------------------------------------------------------------------------


@dataclass
class Track:
    case_id: int
    run_id: str | None = None
    launched: datetime | None = None
    suspended: datetime | None = None  # the server's timestamp of the first Suspended state
    last_suspended: datetime | None = None  # ... of the latest one (a refused answer suspends the run again)
    suspensions: int = 0
    awaiting: bool = False  # suspended, not yet answered
    resumed: datetime | None = None  # the latest resume
    resumed_count: int = 0
    applied: datetime | None = None  # the 'answer' event in the case's log
    completed: datetime | None = None  # the server's timestamp of the Completed state
    failed: str | None = None


@dataclass
class Usage:
    """CPU seconds used by each party between two snapshots."""

    parties: dict[str, Callable[[], float]]
    start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def begin(self) -> None:
        self.start = {name: read() for name, read in self.parties.items()}

    def end(self) -> None:
        self.used = {name: read() - self.start[name] for name, read in self.parties.items()}


@dataclass
class Phase:
    name: str
    cases: int
    tracks: list[Track]
    seconds: float
    legs: int
    usage: dict[str, float]
    peak: Held | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.legs / self.seconds if self.seconds else 0.0


def _quantiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    values = sorted(values)
    p90 = values[min(len(values) - 1, round(0.9 * (len(values) - 1)))]
    return f"median {statistics.median(values):.2f} s, p90 {p90:.2f} s, max {values[-1]:.2f} s"


class Driver:
    """Files inquiries, starts their runs, answers every suspended run, and times it all."""

    def __init__(
        self, engine: Any, signers: Signers, usage_parties: dict[str, Callable[[], float]], poll: float = DRIVER_POLL
    ) -> None:
        self.engine = engine
        self.signers = signers
        self.parties = usage_parties
        self.poll = poll

    def file(self, count: int) -> list[int]:
        from claimflow.db import session_scope
        from flows.common import desk, now
        from models.enums import CaseKind, Channel
        from models.tables import CaseCreate, CustomerCreate
        from tasks.workflow import intake

        ids = []
        for i in range(count):
            data = CaseCreate(
                kind=CaseKind.inquiry, channel=Channel.email, product_line="health",
                customer=CustomerCreate(name=f"Bench customer {i}", email=f"c{i}@example.com", language="en"),
                description="Is physiotherapy covered?",
            )  # fmt: skip
            with session_scope(self.engine) as session:
                ids.append(intake(session, desk(), data=data, actor="bench", now=now()).id)
        return ids

    def _applied(self, tracks: list[Track]) -> None:
        from sqlmodel import Session, col, select

        from models.tables import Event

        waiting = {t.case_id: t for t in tracks if t.resumed and not t.applied}
        if not waiting:
            return
        with Session(self.engine) as session:
            rows = session.exec(
                select(Event.case_id, Event.at).where(col(Event.case_id).in_(list(waiting)), Event.type == "answer")
            )
            for case_id, at in rows:
                waiting[case_id].applied = at

    async def run(
        self,
        name: str,
        count: int,
        concurrency: int,
        *,
        watch: Callable[[], list[int]] = list,
        when_all_waiting: Callable[[], None] | None = None,
        timeout: float = 600,
    ) -> Phase:
        """Drive ``count`` fresh inquiries to closure, ``concurrency`` at a time. With ``when_all_waiting``,
        answer none until all of them are suspended, then call it (in a thread) and answer them all."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.context import AsyncClientContext

        final = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]
        actionable = [StateType.PAUSED, *final]
        from prefect.flow_runs import aresume_flow_run

        from tasks.runs import launch_case

        todo = deque(self.file(count))
        tracks: dict[str, Track] = {}
        flying: dict[str, Track] = {}
        done: list[Track] = []
        hold = when_all_waiting is not None
        early = polls = 0
        peak = Held(0, 0)
        usage = Usage(self.parties)
        usage.begin()
        started = time.perf_counter()
        deadline = started + timeout

        async def launch(track: Track) -> None:
            track.run_id = await launch_case(self.engine, case_id=track.case_id)

        async def resume(track: Track, answer: dict[str, str]) -> bool:
            try:
                await aresume_flow_run(uuid.UUID(track.run_id or ""), run_input=answer)
            except RuntimeError as exc:
                # Prefect sets Suspended before it stores the form's schema: a resume in between is refused
                # ("Run input schema not found"); try again at the next poll
                if "schema not found" not in str(exc):
                    raise
                return False
            return True

        # one client for the driver's calls (launch_case and aresume_flow_run find it in the context), and the
        # launches and answers of a poll sent at once: intake and the people answering are many independent
        # callers, and a serial driver would pace the desk by its own round trips
        async with AsyncClientContext.get_or_create() as context:
            client = context.client
            while todo or flying:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{name}: timed out with {len(flying)} runs in flight")
                launching = []
                while todo and len(flying) + len(launching) < concurrency:
                    launching.append(Track(todo.popleft(), launched=datetime.now(UTC)))
                await asyncio.gather(*(launch(t) for t in launching))
                for track in launching:
                    flying[track.run_id or ""] = tracks[track.run_id or ""] = track
                runs = await client.read_flow_runs(  # only the runs that wait for the driver or are done
                    flow_run_filter=FlowRunFilter(
                        id=FlowRunFilterId(any_=[uuid.UUID(r) for r in flying]),
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=actionable)),
                    ),
                    limit=len(flying),
                )
                paused = []
                for run in runs:
                    track, state = flying[str(run.id)], run.state
                    if state is None:
                        continue
                    if state.type == StateType.PAUSED and state.timestamp != track.last_suspended:
                        track.suspended = track.suspended or state.timestamp
                        track.last_suspended = state.timestamp
                        track.suspensions += 1
                        track.awaiting = True
                    if state.type == StateType.PAUSED and track.awaiting:
                        paused.append(track)
                    elif state.type == StateType.COMPLETED:
                        track.completed = state.timestamp
                    elif state.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
                        track.failed = f"{state.type.value}: {state.message}"
                if hold and len(paused) == len(flying) and not todo:
                    await asyncio.to_thread(when_all_waiting)  # type: ignore[arg-type]
                    hold = False
                if not hold and paused:
                    answers = []
                    for _ in paused:
                        who, code = self.signers.sign()
                        answers.append({"staff": who, "approval_code": code, "answer": ANSWER})
                    resumed = datetime.now(UTC)
                    results = await asyncio.gather(*(resume(t, a) for t, a in zip(paused, answers, strict=True)))
                    for track, ok in zip(paused, results, strict=True):
                        if not ok:
                            early += 1
                            continue
                        track.resumed = resumed
                        track.resumed_count += 1
                        track.awaiting = False
                self._applied(list(flying.values()))
                for run_id, track in list(flying.items()):
                    if track.completed or track.failed:
                        done.append(flying.pop(run_id))
                for pid in watch():
                    now_held = held(pid)
                    peak = Held(max(peak.processes, now_held.processes), max(peak.threads, now_held.threads))
                polls += 1
                if polls % 5 == 0:
                    self.parties["PostgreSQL (both DBs)"]()  # catch backends that come and go
                await asyncio.sleep(self.poll)
        seconds = time.perf_counter() - started
        usage.end()
        self._applied(done)
        legs = sum(t.suspensions for t in done) + sum(1 for t in done if t.completed)
        phase = Phase(name, count, done, seconds, legs, usage.used, peak)
        failed = [t for t in done if t.failed]
        if failed:
            phase.notes.append(f"{len(failed)} runs failed, e.g. {failed[0].failed}")
        if early:
            phase.notes.append(f"{early} resumes came before Prefect stored the form's schema; retried")
        if again := sum(t.suspensions - 1 for t in done if t.suspensions > 1):
            # an answer is signed when it is given and checked when the run applies it: a runner that takes
            # longer than the code's window (serve: a poll of 10 s and a new process) gets it refused; the
            # run asks again (one more leg, counted) and is answered again
            phase.notes.append(f"{again} answers were refused (approval code expired before the run applied it) "
                               "and given again; each refusal is one more leg")  # fmt: skip
        return phase


def report(phase: Phase) -> None:
    tracks = phase.tracks
    starts = [(t.suspended - t.launched).total_seconds() for t in tracks if t.suspended and t.launched]
    applied = [(t.applied - t.resumed).total_seconds() for t in tracks if t.applied and t.resumed]
    completed = [(t.completed - t.resumed).total_seconds() for t in tracks if t.completed and t.resumed]
    print(f"\n== {phase.name}: {phase.cases} inquiries, {phase.legs} legs in {phase.seconds:.1f} s "
          f"= {phase.rate:.2f} legs/s")  # fmt: skip
    print(f"   start -> suspended:   {_quantiles(starts)}")
    print(f"   resume -> applied:    {_quantiles(applied)}")
    print(f"   resume -> completed:  {_quantiles(completed)}")
    if phase.peak and (phase.peak.processes or phase.peak.threads):
        print(f"   peak of the runner side while driving: {phase.peak}")
    legs = max(phase.legs, 1)
    parts = ", ".join(f"{name} {used:.1f} s ({1000 * used / legs:.0f} ms/leg)" for name, used in phase.usage.items())
    print(f"   CPU: {parts}")
    busy = phase.usage.get("machine (all)", 0.0)
    ours = sum(used for name, used in phase.usage.items() if name != "machine (all)")
    print(f"   machine busy {busy / phase.seconds:.2f} of {os.cpu_count()} cores on average, of which "
          f"{max(busy - ours, 0.0) / phase.seconds:.2f} not the parties above (other processes: the machine may be "
          "shared)")  # fmt: skip
    for note in phase.notes:
        print(f"   NOTE: {note}")


# --- profiles ------------------------------------------------------------------------------------------------

FRAME = re.compile(r"^(?P<func>.*) \((?P<path>.*?)(?::(?P<line>\d+))?\)$")
LIBRARIES: list[tuple[str, tuple[str, ...]]] = [  # looked for from the innermost frame outwards
    ("Python import", ("<frozen importlib",)),
    ("TLS set-up: ssl.create_default_context (loads the CA bundle)", ("ssl.py",)),
    ("SQLAlchemy", ("sqlalchemy/", "sqlmodel/")),
    ("psycopg (case DB driver)", ("psycopg",)),
    ("asyncpg (Prefect DB driver)", ("asyncpg/",)),
    ("HTTP client (httpx, httpcore, h11)", ("httpx/", "httpcore/", "h11/")),
    ("HTTP server (uvicorn, starlette, fastapi)", ("uvicorn/", "starlette/", "fastapi/")),
    ("websockets", ("websockets/",)),
    ("pydantic", ("pydantic/", "pydantic_core/", "pydantic_settings/")),
    ("json, jsonschema", ("json/", "orjson", "jsonschema/", "jsonpatch", "jsonpointer", "referencing/")),
    ("logging, rich", ("logging/", "rich/")),
    ("dates (pendulum, whenever, zoneinfo)", ("pendulum/", "whenever/", "zoneinfo/", "dateutil/")),
    ("templates, crypto, otp", ("jinja2/", "cryptography/", "pyotp/", "hmac.py", "hashlib")),
    ("claimflow code", ("flows/", "tasks/", "models/", "claimflow/")),
    ("prefect server", ("prefect/server/",)),
    ("prefect events, logs", ("prefect/events/", "prefect/logging/")),
    ("prefect client, engine, other", ("prefect/",)),
    ("event loop, sockets, threads (stdlib)", ("asyncio/", "anyio/", "selectors.py", "socket.py", "sniffio/",
                                               "threading.py", "concurrent/", "queue.py")),
]  # fmt: skip
IDLE_LEAVES = ("EpollSelector.select", "Condition.wait", "Event.wait", "Thread.join", "sleep", "Lock.acquire")
RUNNER_AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("poll for due runs (get_scheduled_flow_runs_for_deployments)", ("get_scheduled_flow_runs_for_deployments",)),
    ("claim a run (propose Pending)", ("poll_once;claim",)),
    ("flow engine: run_flow_async (all of a leg)", ("run_flow_async", "run_desk_flow_async")),
    ("  flow engine set-up/teardown (initialize_run, begin_run, start)", ("initialize_run", "begin_run",
                                                                          "AsyncFlowRunEngine.start")),
    ("  flow run state changes (set_state, propose_state)", ("AsyncFlowRunEngine.set_state",)),
    ("  tasks (run_task_async, all of it)", ("run_task_async",)),
    ("    task bodies: claimflow DB transactions", ("_in_transaction",)),
    ("  suspend / read stored input", ("suspend_flow_run",)),
    ("  load the flow run's parameters, hooks, results", ("resolve_to_final_result", "load_flow_run",
                                                          "parameters_to_args_kwargs")),
    ("API log handler (flow and task run logs)", ("APILogHandler", "APILogWorker")),
    ("events worker (state events, heartbeats)", ("EventsWorker", "emit_event", "_emit_flow_run_heartbeat")),
    ("heartbeat threads", ("heartbeat_loop",)),
    ("Python import (lazy imports at first use)", ("_find_and_load",)),
    ("new Prefect clients (PrefectClient/SyncPrefectClient.__init__)", ("PrefectClient.__init__",)),
    ("  of which a blocking sync read of the server's default result storage",
     ("_read_server_default_result_storage_block_id",)),
]  # fmt: skip


def _parse(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    samples = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            match = FRAME.match(raw)
            frames.append((match["func"], match["path"]) if match else (raw, ""))
        samples.append((frames, int(count)))
    return samples


def summarise_profile(path: Path, title: str, rate: int, areas: list[tuple[str, tuple[str, ...]]] | None) -> None:
    if not path.exists() or not path.stat().st_size:
        print(f"\n-- profile {title}: no samples ({path})")
        return
    samples = _parse(path)
    idle = sum(c for frames, c in samples if frames and frames[-1][0].endswith(IDLE_LEAVES))
    samples = [(frames, c) for frames, c in samples if frames and not frames[-1][0].endswith(IDLE_LEAVES)]
    total = sum(c for _, c in samples) or 1
    print(f"\n-- profile {title}: {total} samples at {rate} Hz = {total / rate:.1f} s on CPU (py-spy; {idle} more "
          "samples waiting in select/locks left out)")  # fmt: skip
    libraries: Counter[str] = Counter()
    for frames, count in samples:
        label = "other (stdlib)"
        for _func, file in reversed(frames):
            hit = next((name for name, prefixes in LIBRARIES if file.startswith(prefixes)), None)
            if hit:
                label = hit
                break
        libraries[label] += count
    print("   self time by library (innermost frame that belongs to one):")
    for label, count in libraries.most_common():
        print(f"     {100 * count / total:5.1f} %  {label}")
    if areas:
        print("   inclusive time by part of the work:")
        for label, markers in areas:
            count = sum(c for frames, c in samples if any(m in _stack_text(frames) for m in markers))
            print(f"     {100 * count / total:5.1f} %  {label}")
    endpoints: Counter[str] = Counter()
    for frames, count in samples:
        seen = {f"{func} ({file})" for func, file in frames
                if file.startswith(("prefect/server/api/", "prefect/server/services/", "prefect/server/events/"))
                and not func.startswith("<")}  # fmt: skip
        for name in seen:
            endpoints[name] += count
    if endpoints:
        print("   top server handlers and services (inclusive):")
        for name, count in endpoints.most_common(12):
            print(f"     {100 * count / total:5.1f} %  {name}")


def py_spy() -> str | None:
    """The py-spy executable: on the PATH or beside this Python (a virtual environment's bin)."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def _stack_text(frames: list[tuple[str, str]]) -> str:
    return ";".join(func for func, _ in frames)


class Profiler:
    def __init__(self, pids: dict[str, int], outdir: Path, rate: int) -> None:
        self.rate = rate
        self.outputs = {name: outdir / f"profile-{name}.txt" for name in pids}
        self.spies = [
            subprocess.Popen(
                [py_spy() or "py-spy", "record", "--pid",
                 str(pid), "--rate", str(rate), "--nonblocking", "--format", "raw", "-o", str(self.outputs[name])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
            for name, pid in pids.items()
        ]  # fmt: skip
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> None:
        for spy in self.spies:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        for spy in self.spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()


# --- the runner and serve roles (child processes) -------------------------------------------------------------


VARIANTS = {  # the desk runner's side
    "default": "the desk as it is (flows.runner.DeskRunner, flows.case), with the background jobs claimflow up "
    "gives it: each changed case's artifact and tags published every 2 s, the worklists every minute, the outbox "
    "delivered every 5 s",
    "no-workspace": "the runner without the case pages (as before the operators' workspace): no case artifacts or "
    "tags, no worklists; the outbox still delivered every 5 s, as in default",
    "task-read": "read_case as a Prefect task again (as before: 4 more task runs per inquiry, 12 more task-run "
    "state events)",
    "observer": "Prefect's own per-run watcher for outside suspensions on (DeskRunner(observe_suspension=True), as "
    "before): a thread, a client and an events websocket per leg",
    "heartbeat": "Prefect's flow run heartbeats on in the runner (DeskRunner(heartbeats=True), as before: every "
    "180 s, one event at every leg's start)",
    "poll-1s": "the runner polls every second (the desk's default, CLAIMFLOW_RUNNER_POLL_SECONDS) instead of --poll",
    "limit-20": "the runner executes up to 20 runs at once instead of --runner-limit",
    "storage-read": "the engine reads the server's default result storage at every leg (as before; the runner pins "
    "it once at start)",
}
TUNING_PREFIXES = ("PREFECT_SERVER_SERVICES_", "PREFECT_SERVER_EVENTS_", "PREFECT_SERVER_DATABASE_SQLALCHEMY_")
SERVER_VARIANTS: dict[str, tuple[dict[str, str], str]] = {  # the Prefect server's environment
    "stock-server": ({}, "the Prefect server with Prefect's defaults, without the tuning of claimflow.orchestrator"),
    # the two parts of that tuning, to measure each on its own (stock-server+recorder-batch, ...)
    "recorder-batch": (
        {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
         "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1"},
        "task-run recorder writes up to 100 task-run events per transaction, at least every second (Prefect: 1)",
    ),
    "persister-batch": (
        {"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200"},
        "event persister writes up to 200 events per transaction (Prefect: 20), at least every 5 s as before",
    ),
    "pool-20": (
        {"PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "20"},
        "the server keeps 20 database connections (Prefect: 5, and up to 10 more opened and closed as needed)",
    ),
}  # fmt: skip


def server_tuning() -> dict[str, str]:
    """What ``claimflow.orchestrator.server_environment`` sets to tune the embedded Prefect server (not where it
    is, its database or who may call it): the bench's server runs with the same."""
    from claimflow.orchestrator import server_environment
    from claimflow.settings import get_settings

    return {k: v for k, v in server_environment(get_settings()).items() if k.startswith(TUNING_PREFIXES)}


def variant_parts(text: str) -> set[str]:
    parts = set(text.split("+"))
    known = set(VARIANTS) | set(SERVER_VARIANTS)
    if not parts <= known:
        raise SystemExit(f"unknown variant {text!r}: combine {', '.join(sorted(known))} with '+'")
    return parts


def describe_variant(text: str) -> str:
    parts = variant_parts(text)
    described = [VARIANTS[p] for p in sorted(parts) if p in VARIANTS]
    described += [SERVER_VARIANTS[p][1] for p in sorted(parts) if p in SERVER_VARIANTS]
    return "; ".join(described)


def server_variant_env(text: str) -> dict[str, str]:
    """The server environment of a variant (claimflow's tuning unless ``stock-server``, then its server parts), on
    top of the bench's base environment."""
    env: dict[str, str] = {} if "stock-server" in variant_parts(text) else server_tuning()
    for part in sorted(variant_parts(text)):
        if part in SERVER_VARIANTS:
            env.update(SERVER_VARIANTS[part][0])
    return env


def runner_role(limit: int, poll: float, ready: Path, variant: str = "default") -> None:
    parts = variant_parts(variant)

    async def main() -> None:
        from flows.deployments import UNSCHEDULED, register
        from flows.runner import DeskRunner

        if "task-read" in parts:
            from prefect import task
            from prefect.cache_policies import NO_CACHE

            import flows.case

            plain = flows.case.read_case

            @task(name="read-case", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 20])
            async def read_case(case_id: int) -> Any:
                return await plain(case_id)

            flows.case.read_case = lambda case_id, logger=None: read_case(case_id)  # type: ignore[assignment]

        flows = await register(**UNSCHEDULED)
        if "storage-read" in parts:
            import flows.runner as desk_runner

            async def unpinned(given: Any) -> Any:
                return dict(given)

            desk_runner.with_result_storage_pinned = unpinned
        from flows.delivery import DeliveryLoop
        from flows.workspace import CaseViewPublisher

        background = [DeliveryLoop().loop] + ([] if "no-workspace" in parts else [CaseViewPublisher().loop])
        runner = DeskRunner(
            flows,
            limit=20 if "limit-20" in parts else limit,
            poll_seconds=1.0 if "poll-1s" in parts else poll,
            observe_suspension="observer" in parts,
            heartbeats="heartbeat" in parts,
            background=background,
        )
        # the runner shares one Prefect client across its runs (what the former "shared-client" variant measured)
        await runner.run_until_signalled(started=lambda: ready.write_text(str(os.getpid())))

    try:
        asyncio.run(main())
    finally:
        from flows.runner import drain_prefect_clients

        drain_prefect_clients()


def serve_role() -> None:
    """Plain ``serve`` of the case deployments (same names as ``register``), with Prefect's defaults."""
    from prefect import serve

    from flows.case import CASE_FLOWS

    serve(*[f.to_deployment(name=f"{kind}-process") for kind, f in CASE_FLOWS.items()])


# --- the benchmark -------------------------------------------------------------------------------------------


def start_runners(
    count: int, args: argparse.Namespace, env: dict[str, str], logdir: Path, variant: str = "default"
) -> list[Child]:
    runners = []
    for i in range(count):
        ready = logdir / f"runner-{i}.ready"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, str(Path(__file__).resolve()), "--role", "runner", "--runner-limit",
                str(args.runner_limit), "--poll", str(args.poll), "--ready-file", str(ready),
                "--runner-variant", variant]  # fmt: skip
        runner = Child(f"runner-{i}", argv, env=env, logdir=logdir)
        runners.append(runner)

        def up(runner: Child = runner, ready: Path = ready) -> bool:
            if not runner.alive():
                raise RuntimeError(f"the desk runner exited:\n{runner.tail()}")
            return ready.exists()

        wait_until("the desk runner to register and start", up, timeout=120, every=0.2)
    return runners


class BackendCpu:
    """CPU seconds used by PostgreSQL backends of the two databases since first seen (backends come and go:
    sampled on every call, the driver calls it about once a second)."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.calls = 0

    def __call__(self) -> float:
        for pid in self.pids():  # (len(self.last): the backends seen since the start: connections opened)
            value = cpu_seconds(pid)
            if pid not in self.last:
                self.base[pid] = value if self.calls == 0 else 0.0
            self.last[pid] = max(value, self.last.get(pid, 0.0))
        self.calls += 1
        return sum(self.last[p] - self.base[p] for p in self.last)


class PrefectServer:
    """The bench's Prefect server: restarted (same database, same port) when a variant needs other settings.

    With ``workers`` > 1 (``--server-workers``): Prefect's scale-out on one machine, ``prefect server start
    --workers N`` (N web server processes) beside ``prefect server services start`` (the services: event
    persister, task-run recorder, triggers, scheduler ...), the events and the Docket queue on a Redis of the
    bench's own (``prefect-redis`` must be installed). Its CPU counts all of them.
    """

    def __init__(self, env: dict[str, str], port: int, logdir: Path, children: list[Child], workers: int = 1) -> None:
        self.env, self.port, self.logdir, self.children, self.workers = env, port, logdir, children, workers
        self.child: Child | None = None
        self.helpers: list[Child] = []  # the services process, Redis
        self.extra: dict[str, str] | None = None
        self.starts = 0
        self.redis: dict[str, str] = {}
        if workers > 1:
            redis_port = free_port()
            redis = Child("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no"], env=env, logdir=logdir)  # fmt: skip
            children.append(redis)
            self.helpers.append(redis)
            self.redis = {
                "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
                "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
                "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
                "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
                "PREFECT_REDIS_MESSAGING_URL": f"redis://127.0.0.1:{redis_port}/0",
                "PREFECT_SERVER_DOCKET_URL": f"redis://127.0.0.1:{redis_port}/1",
            }

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def cpu(self) -> float:
        return sum(tree_cpu(c.pid) for c in [self.child, *self.helpers] if c is not None)

    def ensure(self, extra: dict[str, str]) -> None:
        """Have a server running with the base environment plus ``extra``."""
        if self.child is not None and self.child.alive() and extra == self.extra:
            return
        if self.child is not None:
            for child in [self.child, *self.helpers[1:]]:
                child.stop()
                self.children.remove(child)
            del self.helpers[1:]
        name = "prefect-server" if not self.starts else f"prefect-server-{self.starts}"
        env = {**self.env, **self.redis, **extra}
        if self.workers > 1 and not self.starts:
            # on a fresh database the processes would all migrate it and register the block types at once (and
            # fail on each other's rows): one process does it first
            start_server(env, self.port, self.logdir, name=f"{name}-init").stop()
        self.child = start_server(env, self.port, self.logdir, name=name, workers=self.workers)
        self.children.append(self.child)
        if self.workers > 1:
            argv = [sys.executable, "-m", "prefect", "server", "services", "start"]
            services = Child(f"{name}-services", argv, env=env, logdir=self.logdir)
            self.children.append(services)
            self.helpers.append(services)
            log(f"Prefect server: {self.workers} web server processes, the services in one more (pid {services.pid})")
        self.extra = dict(extra)
        self.starts += 1
        if extra:
            log(f"Prefect server settings on top of the bench's: {' '.join(f'{k}={v}' for k, v in extra.items())}")


def parties(
    workers: Callable[[], list[int]], server: PrefectServer, backends: Callable[[], list[int]]
) -> dict[str, Any]:
    return {
        "runner side": lambda: sum(tree_cpu(p) for p in workers()),
        "Prefect server": server.cpu,
        "PostgreSQL (both DBs)": BackendCpu(backends),
        "driver": lambda: cpu_seconds(os.getpid()),
        "machine (all)": machine_busy,
    }


def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="claimflow-bench-flow-runs-"))
    suffix = uuid.uuid4().hex[:8]
    prefect_db, cases_db = f"claimflow_bench_prefect_{suffix}", f"claimflow_bench_cases_{suffix}"
    port = free_port()
    from sqlalchemy.engine import make_url

    admin = make_url(args.postgres_url)
    prefect_url = admin.set(drivername="postgresql+asyncpg", database=prefect_db).render_as_string(False)
    cases_url = admin.set(drivername="postgresql+psycopg", database=cases_db).render_as_string(False)
    from cryptography.fernet import Fernet

    os.environ.update({
        "PREFECT_HOME": str(workdir / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": prefect_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "CLAIMFLOW_DATA_DIR": str(workdir / "data"),
        "CLAIMFLOW_DATABASE_URL": cases_url,
        "CLAIMFLOW_SECRET_KEY": Fernet.generate_key().decode(),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    })  # fmt: skip
    for name in ("PREFECT_API_AUTH_STRING", "PREFECT_RUNNER_POLL_FREQUENCY", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"):
        os.environ.pop(name, None)  # the defaults, for the desk runner and serve alike
    env = dict(os.environ)
    children: list[Child] = []
    log(f"work folder {workdir}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    phases: list[Phase] = []

    def stop_children() -> None:
        for child in reversed(children):
            child.stop(signal.SIGINT if child.name == "serve" else signal.SIGTERM)

    def backends() -> list[int]:
        return backend_pids(args.postgres_url, (prefect_db, cases_db))

    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(throwaway_databases(args.postgres_url, prefect_db, cases_db))
            stack.callback(stop_children)  # before the databases are dropped
            from claimflow.db import get_engine
            from claimflow.migrate import upgrade
            from claimflow.settings import get_settings

            get_settings.cache_clear()
            engine = get_engine(cases_url)
            stack.callback(engine.dispose)
            upgrade(engine)
            signers = Signers(load_staff(engine, signers=args.signers, handlers=40))
            log(f"case database migrated; {len(signers.secrets)} signing supervisors and 40 handlers enrolled")
            server = PrefectServer(env, port, workdir, children, workers=args.server_workers)
            phases = asyncio.run(run_phases(args, env, workdir, engine, signers, server, backends, children))
    except KeyboardInterrupt:
        log("interrupted: cleaned up")
        return 130
    finally:
        if args.keep_logs:
            log(f"logs and profiles kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    summary(args, phases)
    return 0


async def run_phases(
    args: argparse.Namespace,
    env: dict[str, str],
    workdir: Path,
    engine: Any,
    signers: Signers,
    server: PrefectServer,
    backends: Callable[[], list[int]],
    children: list[Child],
) -> list[Phase]:
    phases: list[Phase] = []
    n, k = args.cases, args.concurrency
    settings = dict(item.split("=", 1) for item in args.server_setting)

    def make_driver(workers: Callable[[], list[int]]) -> Driver:
        return Driver(engine, signers, parties(workers, server, backends), poll=args.driver_poll)

    if args.compare:
        variants = args.compare.split(",")
        for variant in variants:
            variant_parts(variant)
        for round_ in range(1, args.rounds + 1):
            for variant in variants:
                server.ensure({**settings, **server_variant_env(variant)})
                (runner,) = start_runners(1, args, env, workdir, variant)
                children.append(runner)
                driver = make_driver(lambda r=runner: [r.pid])
                await driver.run("warm-up", 2, 2)
                phases.append(await driver.run(f"{variant} #{round_}", n, k))
                report(phases[-1])
                runner.stop()
                children.remove(runner)
        for variant in variants:
            mine = [p for p in phases if p.name.startswith(f"{variant} #")]
            legs, seconds = sum(p.legs for p in mine), sum(p.seconds for p in mine)
            cpu = sum(p.usage["runner side"] for p in mine) / max(legs, 1)
            on_server = sum(p.usage["Prefect server"] for p in mine) / max(legs, 1)
            others = sum(p.usage["machine (all)"] - sum(u for m, u in p.usage.items() if m != "machine (all)")
                         for p in mine) / seconds  # fmt: skip
            what = describe_variant(variant)
            print(f"   {variant}: {legs / seconds:.2f} legs/s over {len(mine)} rounds; runner {1000 * cpu:.0f} ms/leg, "
                  f"server {1000 * on_server:.0f} ms/leg; others {max(others, 0):.2f} cores  ({what})")  # fmt: skip
        return phases

    # 1-3: one desk runner
    server.ensure({**settings, **server_variant_env(args.runner_variant)})
    if args.runner_variant != "default":
        log(f"variant {args.runner_variant}: {describe_variant(args.runner_variant)}")
    runners = start_runners(1, args, env, workdir, args.runner_variant)
    children.extend(runners)
    runner = runners[0]
    log(f"desk runner up (pid {runner.pid}, limit {args.runner_limit}, poll {args.poll} s)")
    driver = make_driver(lambda: [runner.pid])
    before_any = held(runner.pid)
    await driver.run("warm-up", 2, 2)
    await asyncio.sleep(SETTLE)
    idle = held(runner.pid)
    log(f"runner idle: before any run {before_any}; after the warm-up {idle}")

    log(f"desk: {n} inquiries, {k} in flight")
    phases.append(await driver.run("desk runner", n, k, watch=lambda: [runner.pid]))
    report(phases[-1])

    if not args.no_profile and not py_spy():
        log("desk, profiled: skipped, py-spy is not installed (pip install -e '.[bench]')")
    elif not args.no_profile:
        log("desk, profiled: py-spy on the runner and the Prefect server")
        profiler = Profiler({"runner": runner.pid, "server": server.pid}, workdir, args.profile_rate)
        try:
            phases.append(await driver.run("desk runner, profiled", n, k))
        finally:
            profiler.stop()
        report(phases[-1])
        summarise_profile(profiler.outputs["runner"], "of the desk runner", args.profile_rate, RUNNER_AREAS)
        summarise_profile(profiler.outputs["server"], "of the Prefect server", args.profile_rate, None)

    counts: dict[str, Held] = {}

    def count_waiting() -> None:
        time.sleep(SETTLE)
        counts["waiting"] = held(runner.pid)

    log(f"hold: {n} inquiries started and left suspended, then all answered at once")
    phases.append(await driver.run("desk runner, hold then burst", n, n, when_all_waiting=count_waiting))
    await asyncio.sleep(SETTLE)
    counts["after"] = held(runner.pid)
    report(phases[-1])
    print(f"\n== held by the desk runner process (pid {runner.pid}), counted {SETTLE:.0f} s after the last change")
    print(f"   no case waiting (after the warm-up):    {idle}")
    print(f"   {n} cases waiting (all suspended):       {counts['waiting']}")
    print(f"   no case waiting (after they all closed): {counts['after']}")
    extra = counts["waiting"].threads - idle.threads, counts["waiting"].processes - idle.processes
    print(f"   per waiting case: {extra[1] / n:.2f} processes, {extra[0] / n:.2f} threads")
    phases[-1].notes.append(f"held: idle {idle}; {n} waiting {counts['waiting']}; after {counts['after']}")
    for r in runners:
        r.stop()
        children.remove(r)

    # 4: two desk runners
    if not args.no_scale_out:
        runners = start_runners(2, args, env, workdir, args.runner_variant)
        children.extend(runners)
        log(f"2 desk runners up (pids {', '.join(str(r.pid) for r in runners)})")
        driver2 = make_driver(lambda: [r.pid for r in runners])
        await driver2.run("warm-up", 4, 4)
        phases.append(await driver2.run("2 desk runners", n, k))
        report(phases[-1])
        for r in runners:
            r.stop()
            children.remove(r)

    # 5: plain serve
    if not args.no_serve:
        serve = Child("serve", [sys.executable, str(Path(__file__).resolve()), "--role", "serve"], env=env,
                      logdir=workdir)  # fmt: skip
        children.append(serve)

        def serving() -> bool:
            if not serve.alive():
                raise RuntimeError(f"serve exited:\n{serve.tail()}")
            return "being served" in serve.logfile.read_text(errors="replace")

        wait_until("serve to start", serving, timeout=120)
        log(f"serve up (pid {serve.pid}): {args.serve_cases} inquiries, {min(k, args.serve_cases)} in flight")
        driver3 = make_driver(lambda: [serve.pid])
        phases.append(
            await driver3.run("plain serve()", args.serve_cases, min(k, args.serve_cases), watch=lambda: [serve.pid])
        )
        report(phases[-1])
        serve.stop(signal.SIGINT)
        children.remove(serve)
    return phases


def summary(args: argparse.Namespace, phases: list[Phase]) -> None:
    if not phases:
        return
    by_name = {p.name: p for p in phases}
    print("\n== summary")
    # a run that failed or crashed is a desk that lost a case's leg: its phase's rate does not count
    print(f"   {'phase':34} {'cases':>5} {'legs':>5} {'seconds':>8} {'legs/s':>7} {'failed':>6}")
    for p in phases:
        failed = sum(1 for t in p.tracks if t.failed)
        print(f"   {p.name:34} {p.cases:5d} {p.legs:5d} {p.seconds:8.1f} {p.rate:7.2f} {failed:6d}")
    desk, serve = by_name.get("desk runner"), by_name.get("plain serve()")
    if desk and serve and serve.rate:
        print(f"   desk runner / serve: {desk.rate / serve.rate:.1f}x")
    if desk:
        verdict = "meets" if desk.rate >= 5 and not any(t.failed for t in desk.tracks) else "misses"
        print(f"   target >= 5 legs/s on two cores: {verdict} ({desk.rate:.2f} legs/s)")
    two = by_name.get("2 desk runners")
    if desk and two:
        print(f"   2 runners / 1 runner on this machine: {two.rate / desk.rate:.2f}x (the cores are shared with "
              "the server and PostgreSQL)")  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=40, help="inquiries per desk-runner phase (default 40)")
    parser.add_argument("--concurrency", type=int, default=20, help="cases in flight at once (default 20)")
    parser.add_argument("--serve-cases", type=int, default=10, help="inquiries for plain serve (default 10)")
    parser.add_argument("--runner-limit", type=int, default=10, help="DeskRunner limit (default 10)")
    parser.add_argument("--poll", type=float, default=0.2, help="DeskRunner poll seconds (default 0.2)")
    parser.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="Prefect web server processes (default 1); more: Prefect's scale-out with Redis (see PrefectServer)",
    )
    parser.add_argument(
        "--driver-poll", type=float, default=DRIVER_POLL, help=f"the driver's poll seconds (default {DRIVER_POLL})"
    )
    parser.add_argument("--signers", type=int, default=150, help="generated supervisors who sign answers")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="a PostgreSQL database to start from")
    parser.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-scale-out", action="store_true")
    parser.add_argument("--no-serve", action="store_true")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work folder (logs, profiles)")
    parser.add_argument(
        "--runner-variant",
        default="default",
        help="the desk runner and server as they are, or an experiment (see --compare) for the phases",
    )
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for the Prefect server (repeatable), e.g. PREFECT_SERVER_LOGGING_LEVEL=INFO "
        "to log every request",
    )
    parser.add_argument(
        "--compare",
        metavar="A,B",
        help="instead of the phases: variants A and B (combinations with '+' of: "
        f"{', '.join([*VARIANTS, *SERVER_VARIANTS])}), alternated over --rounds rounds, one runner each; the "
        "server is restarted when the server settings change",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --compare (default 2)")
    parser.add_argument("--role", choices=["main", "runner", "serve"], default="main", help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    if arguments.role == "runner":
        runner_role(arguments.runner_limit, arguments.poll, arguments.ready_file, arguments.runner_variant)
    elif arguments.role == "serve":
        serve_role()
    else:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on kill as on Ctrl-C
        sys.exit(main(arguments))

"""Case flow legs per second: the desk runner against plain ``flow.serve()``, end to end, on PostgreSQL.

    python bench/flow_runs.py                                  # 40 inquiries, 20 in flight; serve: 10
    python bench/flow_runs.py --cases 40 --concurrency 20 --serve-cases 10 --runner-limit 10 --poll 0.2
    python bench/flow_runs.py --no-serve --no-scale-out        # the desk runner only

A *leg* is one stretch of a case's flow run: its start up to the first suspension, or a resume up to the
next suspension or the end. An inquiry has two: start -> suspended for the answer; resumed with the answer
-> answer applied, case closed, run Completed.

What the script sets up (and removes at the end, also on Ctrl-C or an error):

* two throwaway PostgreSQL databases beside ``--postgres-url``: one for the Prefect server
  (``postgresql+asyncpg``) and one for the cases (migrated with ``claimflow.migrate.upgrade``);
* a Prefect server (``prefect server start`` on a free port, ``PREFECT_HOME`` in a temporary folder);
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
``tasks.runs.launch_case`` keeping ``--concurrency`` cases in flight, polls the runs' states every 0.2 s,
resumes every suspended run at once with ``prefect.flow_runs.aresume_flow_run`` and a valid answer, and
launches the next case when one completes. Times come from the server's state timestamps (suspended,
completed) and the case's event log (answer applied), not from the driver's polling.

Printed per phase: legs/s, start-to-suspended and resume-to-applied / resume-to-completed (median, p90),
and the CPU seconds per leg of each party (runner or serve, the Prefect server, the PostgreSQL backends of
the two databases, the driver) next to the machine's busy CPU (the machine may be shared).
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


def start_server(env: dict[str, str], port: int, logdir: Path) -> Child:
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = Child("prefect-server", argv, env=env, logdir=logdir)
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
    suspended: datetime | None = None  # the server's timestamp of the Suspended state
    resumed: datetime | None = None
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

    def __init__(self, engine: Any, signers: Signers, usage_parties: dict[str, Callable[[], float]]) -> None:
        self.engine = engine
        self.signers = signers
        self.parties = usage_parties

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
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.objects import StateType
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
        async with get_client() as client:
            while todo or flying:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{name}: timed out with {len(flying)} runs in flight")
                while todo and len(flying) < concurrency:
                    track = Track(todo.popleft(), launched=datetime.now(UTC))
                    track.run_id = await launch_case(self.engine, case_id=track.case_id)
                    flying[track.run_id] = tracks[track.run_id] = track
                runs = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(r) for r in flying])),
                    limit=len(flying),
                )
                paused = []
                for run in runs:
                    track, state = flying[str(run.id)], run.state
                    if state is None:
                        continue
                    if state.type == StateType.PAUSED and track.suspended is None:
                        track.suspended = state.timestamp
                    if state.type == StateType.PAUSED and track.resumed is None:
                        paused.append(track)
                    elif state.type == StateType.COMPLETED:
                        track.completed = state.timestamp
                    elif state.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
                        track.failed = f"{state.type.value}: {state.message}"
                if hold and len(paused) == len(flying) and not todo:
                    await asyncio.to_thread(when_all_waiting)  # type: ignore[arg-type]
                    hold = False
                if not hold:
                    for track in paused:
                        who, code = self.signers.sign()
                        resumed = datetime.now(UTC)
                        answer = {"staff": who, "approval_code": code, "answer": "Yes, physiotherapy is covered."}
                        try:
                            await aresume_flow_run(uuid.UUID(track.run_id or ""), run_input=answer)
                        except RuntimeError as exc:
                            # Prefect sets Suspended before it stores the form's schema: a resume in between is
                            # refused ("Run input schema not found"); try again at the next poll
                            if "schema not found" not in str(exc):
                                raise
                            early += 1
                            continue
                        track.resumed = resumed
                        track.resumed_count += 1
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
                await asyncio.sleep(DRIVER_POLL)
        seconds = time.perf_counter() - started
        usage.end()
        self._applied(done)
        legs = sum(1 for t in done if t.suspended) + sum(1 for t in done if t.completed)
        phase = Phase(name, count, done, seconds, legs, usage.used, peak)
        failed = [t for t in done if t.failed]
        if failed:
            phase.notes.append(f"{len(failed)} runs failed, e.g. {failed[0].failed}")
        if early:
            phase.notes.append(f"{early} resumes came before Prefect stored the form's schema; retried")
        if any(t.resumed_count > 1 for t in done):
            phase.notes.append("some runs suspended again (a refused answer?)")
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
    print(f"   machine busy {busy / phase.seconds:.2f} of {os.cpu_count()} cores on average")
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
    ("claim a run (propose Pending)", ("poll_once;propose_state",)),
    ("flow engine: run_flow_async (all of a leg)", ("run_flow_async",)),
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


def _stack_text(frames: list[tuple[str, str]]) -> str:
    return ";".join(func for func, _ in frames)


class Profiler:
    def __init__(self, pids: dict[str, int], outdir: Path, rate: int) -> None:
        self.rate = rate
        self.outputs = {name: outdir / f"profile-{name}.txt" for name in pids}
        self.spies = [
            subprocess.Popen(
                [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
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


VARIANTS = {
    "default": "flows.runner.DeskRunner as it is",
    "plain-read": "read_case called as a plain coroutine, not a Prefect task (5 of the 6 task runs of an inquiry "
    "are reads)",
}


def variant_parts(text: str) -> set[str]:
    parts = set(text.split("+"))
    if not parts <= set(VARIANTS):
        raise SystemExit(f"unknown runner variant {text!r}: combine {', '.join(VARIANTS)} with '+'")
    return parts


def runner_role(limit: int, poll: float, ready: Path, variant: str = "default") -> None:

    async def main() -> None:
        from flows.deployments import UNSCHEDULED, register
        from flows.runner import DeskRunner

        if "plain-read" in variant_parts(variant):
            import flows.case

            flows.case.read_case = flows.case.read_case.fn  # type: ignore[assignment]  # drive_case looks it up

        flows = await register(**UNSCHEDULED)
        runner = DeskRunner(flows, limit=limit, poll_seconds=poll)
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
        for pid in self.pids():
            value = cpu_seconds(pid)
            if pid not in self.last:
                self.base[pid] = value if self.calls == 0 else 0.0
            self.last[pid] = max(value, self.last.get(pid, 0.0))
        self.calls += 1
        return sum(self.last[p] - self.base[p] for p in self.last)


def parties(workers: Callable[[], list[int]], server: Child, backends: Callable[[], list[int]]) -> dict[str, Any]:
    return {
        "runner side": lambda: sum(tree_cpu(p) for p in workers()),
        "Prefect server": lambda: tree_cpu(server.pid),
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
            server = start_server(env, port, workdir)
            children.append(server)
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
    server: Child,
    backends: Callable[[], list[int]],
    children: list[Child],
) -> list[Phase]:
    phases: list[Phase] = []
    n, k = args.cases, args.concurrency
    if args.compare:
        variants = args.compare.split(",")
        for variant in variants:
            variant_parts(variant)
        for round_ in range(1, args.rounds + 1):
            for variant in variants:
                (runner,) = start_runners(1, args, env, workdir, variant)
                children.append(runner)
                driver = Driver(engine, signers, parties(lambda r=runner: [r.pid], server, backends))
                await driver.run("warm-up", 2, 2)
                phases.append(await driver.run(f"{variant} #{round_}", n, k))
                report(phases[-1])
                runner.stop()
                children.remove(runner)
        for variant in variants:
            mine = [p for p in phases if p.name.startswith(f"{variant} #")]
            legs, seconds = sum(p.legs for p in mine), sum(p.seconds for p in mine)
            cpu = sum(p.usage["runner side"] for p in mine) / max(legs, 1)
            server = sum(p.usage["Prefect server"] for p in mine) / max(legs, 1)
            what = "; ".join(VARIANTS[v] for v in sorted(variant_parts(variant)))
            print(f"   {variant}: {legs / seconds:.2f} legs/s over {len(mine)} rounds; runner {1000 * cpu:.0f} ms/leg, "
                  f"server {1000 * server:.0f} ms/leg  ({what})")  # fmt: skip
        return phases

    # 1-3: one desk runner
    runners = start_runners(1, args, env, workdir)
    children.extend(runners)
    runner = runners[0]
    log(f"desk runner up (pid {runner.pid}, limit {args.runner_limit}, poll {args.poll} s)")
    driver = Driver(engine, signers, parties(lambda: [runner.pid], server, backends))
    before_any = held(runner.pid)
    await driver.run("warm-up", 2, 2)
    await asyncio.sleep(SETTLE)
    idle = held(runner.pid)
    log(f"runner idle: before any run {before_any}; after the warm-up {idle}")

    log(f"desk: {n} inquiries, {k} in flight")
    phases.append(await driver.run("desk runner", n, k, watch=lambda: [runner.pid]))
    report(phases[-1])

    if not args.no_profile:
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
        runners = start_runners(2, args, env, workdir)
        children.extend(runners)
        log(f"2 desk runners up (pids {', '.join(str(r.pid) for r in runners)})")
        driver2 = Driver(engine, signers, parties(lambda: [r.pid for r in runners], server, backends))
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
        driver3 = Driver(engine, signers, parties(lambda: [serve.pid], server, backends))
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
    print(f"   {'phase':34} {'cases':>5} {'legs':>5} {'seconds':>8} {'legs/s':>7}")
    for p in phases:
        print(f"   {p.name:34} {p.cases:5d} {p.legs:5d} {p.seconds:8.1f} {p.rate:7.2f}")
    desk, serve = by_name.get("desk runner"), by_name.get("plain serve()")
    if desk and serve and serve.rate:
        print(f"   desk runner / serve: {desk.rate / serve.rate:.1f}x")
    if desk:
        verdict = "meets" if desk.rate >= 5 else "misses"
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
        help="the desk runner as it is, or an experiment (see --compare)",
    )
    parser.add_argument(
        "--compare",
        metavar="A,B",
        help="instead of the phases: desk-runner variants A and B "
        f"(of: {', '.join(VARIANTS)}), alternated over --rounds rounds, one runner each",
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

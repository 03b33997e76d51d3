"""The surge, end to end: N signed claims at once, to every acknowledgement out by SMTP and every run suspended.

    python bench/surge.py --claims 2000                      # kill -9 of the API and of the desk runner midway
    python bench/surge.py --claims 100000 --concurrency 64   # the typhoon (hours on two cores: see the README)
    python bench/surge.py --claims 500 --no-chaos
    python bench/surge.py --claims 100000 --filer            # the API as 'claimflow api --filer'

What runs, each in a process of its own, on two throwaway PostgreSQL databases beside ``--postgres-url`` (the
cases' and the Prefect server's, dropped at the end): the Prefect server (``prefect server start``, tuned as the
embedded one), the desk runner (``claimflow runner``: case runs, the outbox delivery loop, the reconciler every
30 s), the intake API (uvicorn, ``claimflow.web.app``, group commit on), and an SMTP server (aiosmtpd) that
records the outbox id of every mail it takes. The sample desk is loaded with room for every case.

The load generator (this process) posts N signed claims, ``--concurrency`` at a time, each with its own
Idempotency-Key, and retries a post that got no answer or a 503 with the same key until it is answered 202, as a
partner system would. With chaos (the default) it kills the API with SIGKILL once ``--kill-api-at`` of the claims
are answered and starts it again, and the desk runner the same at ``--kill-runner-at`` (the reconciler finds the
runs it left Running after ``CLAIMFLOW_STRANDED_RUN_MINUTES``, 1 here).

Printed: the time until every claim was answered 202, until every acknowledgement had been taken by the SMTP
server, and until every case's run was suspended at its first person's step (with the run-start rate); then the
counts that must be zero: claims answered but not stored, cases stored twice (by policy number), acknowledgements
never received or received twice, cases without a run and cases with more than one live run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.flow_runs import Child, free_port, server_tuning, start_server, throwaway_databases, wait_until
from bench.httpload import Outcome, Request, post_all
from bench.intake import DEFAULT_POSTGRES, SECRET, SOURCE, cpu_seconds, payload, signed, spent
from bench.outbox import CountingSink
from claimflow.db import create_db_engine, session_scope
from claimflow.demo import sample_directory
from claimflow.migrate import upgrade
from claimflow.settings import Settings
from tasks.staff import import_directory

REPO = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Desk:
    """The API and the desk runner as killable processes with the surge's environment."""

    def __init__(self, env: dict[str, str], workdir: Path, *, filer: bool = False) -> None:
        self.env, self.workdir, self.filer = env, workdir, filer
        self.api_port = free_port()
        self.api: Child | None = None
        self.runner: Child | None = None
        self.restarts = 0

    def start_runner(self) -> None:
        self.runner = Child(f"runner-{self.restarts}", [sys.executable, "-m", "claimflow", "runner"], env=self.env,
                            logdir=self.workdir)  # fmt: skip

    def start_api(self) -> None:
        argv = [sys.executable, "-m", "uvicorn", "--factory", "claimflow.web.app:create_app", "--host", "127.0.0.1",
                "--port", str(self.api_port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
        if self.filer:  # as the desk runs it on two cores; a kill -9 takes its session: the filing process too
            argv = [sys.executable, "-m", "claimflow", "api", "--filer", "--no-access-log", "--host", "127.0.0.1",
                    "--port", str(self.api_port)]  # fmt: skip
        self.api = Child(f"api-{self.restarts}", argv, env=self.env, logdir=self.workdir)

        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{self.api_port}/openapi.json", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until("the intake API", answers, timeout=60, every=0.2)

    def kill(self, which: str) -> None:
        child = self.api if which == "api" else self.runner
        assert child is not None
        child.stop(signal.SIGKILL, timeout=5)
        self.restarts += 1
        log(f"killed the {which} (SIGKILL); starting it again")
        self.start_api() if which == "api" else self.start_runner()

    def stop(self) -> None:
        for child in (self.api, self.runner):
            if child is not None:
                child.stop()


def claim(index: int) -> Request:
    """The ``index``-th claim, signed now, under its own key (the same on every try)."""
    body = payload(index)
    body["customer"]["email"] = f"customer{index}@example.com"  # acknowledged by e-mail
    raw = json.dumps(body).encode()
    return "/v1/claims", raw, signed(raw, f"surge-{index}", "/v1/claims")


def main() -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill cleans up: processes, databases
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-chaos", action="store_true", help="no kill -9 of the API and the runner")
    parser.add_argument(
        "--delivery-processes",
        type=int,
        default=0,
        help="extra 'claimflow outbox deliver --loop' processes beside the runner's delivery loop",
    )
    parser.add_argument("--kill-api-at", type=float, default=0.3)
    parser.add_argument("--kill-runner-at", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=7200, help="seconds to wait for each phase")
    parser.add_argument(
        "--runs-window",
        type=float,
        default=0.0,
        help="once every acknowledgement is out, wait this long for the runs and print their start "
        "rate instead of waiting for all (0: wait for all); the run counts are then not checked",
    )
    parser.add_argument(
        "--no-priorities",
        action="store_true",
        help="run the desk runner, the delivery processes and the Prefect server at the API's CPU priority "
        "(CLAIMFLOW_RUNNER_NICE, CLAIMFLOW_DELIVERY_NICE and the server's nice 0): the way it was before",
    )
    parser.add_argument(
        "--filer",
        action="store_true",
        help="the API as 'claimflow api --filer' (filing in a process of its own, killed with it) instead of "
        "uvicorn with the writer thread",
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    n = args.claims

    workdir = Path(tempfile.mkdtemp(prefix="claimflow-bench-surge-"))
    suffix = uuid.uuid4().hex[:8]
    prefect_db, cases_db = f"claimflow_surge_prefect_{suffix}", f"claimflow_surge_cases_{suffix}"
    admin = make_url(args.postgres_url)
    cases_url = admin.set(drivername="postgresql+psycopg", database=cases_db).render_as_string(False)
    port = free_port()
    with ExitStack() as stack:
        stack.enter_context(throwaway_databases(args.postgres_url, prefect_db, cases_db))
        sink = stack.enter_context(CountingSink(workdir, "surge"))
        from cryptography.fernet import Fernet

        env = {
            **os.environ,
            **server_tuning(),
            "PREFECT_HOME": str(workdir / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": admin.set(drivername="postgresql+asyncpg",
                                                                database=prefect_db).render_as_string(False),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "CLAIMFLOW_DATA_DIR": str(workdir / "data"),
            "CLAIMFLOW_DATABASE_URL": cases_url,
            "CLAIMFLOW_SECRET_KEY": Fernet.generate_key().decode(),
            "CLAIMFLOW_WEBHOOK_SECRETS": json.dumps({SOURCE: [SECRET]}),
            "CLAIMFLOW_DESK_PHONE": "95500",
            "CLAIMFLOW_CUSTOMER_EMAIL_URL": f"mailto://127.0.0.1:{sink.port}?mode=insecure&from=desk@insurer.example",
            "CLAIMFLOW_OUTBOX_POLL_SECONDS": "1",
            "CLAIMFLOW_RECONCILE_SECONDS": "30",
            "CLAIMFLOW_STRANDED_RUN_MINUTES": "1",
            "CLAIMFLOW_OUTBOX_LEASE_SECONDS": "30",  # a killed runner's claimed messages come back after 30 s
            "PYTHONPATH": str(REPO),
        }  # fmt: skip
        for name in ("PREFECT_API_AUTH_STRING",):
            env.pop(name, None)
        server_nice = 0 if args.no_priorities else Settings().prefect_server_nice
        if args.no_priorities:
            env.update(CLAIMFLOW_RUNNER_NICE="0", CLAIMFLOW_DELIVERY_NICE="0")
        engine = create_db_engine(cases_url, pool=False)
        stack.callback(engine.dispose)
        upgrade(engine)
        with session_scope(engine) as session:
            import_directory(session, directory=sample_directory())
            session.execute(text("UPDATE staff SET capacity = 10000000, email = username || '@insurer.example'"))
        server = start_server(env, port, workdir, nice=server_nice)
        stack.callback(server.stop)
        desk = Desk(env, workdir, filer=args.filer)
        stack.callback(desk.stop)
        desk.start_runner()
        delivery = [Child(f"delivery-{k}", [sys.executable, "-m", "claimflow", "outbox", "deliver", "--loop"], env=env,
                          logdir=workdir) for k in range(args.delivery_processes)]  # fmt: skip
        for child in delivery:
            stack.callback(child.stop)
        wait_until("the deployments", lambda: _count_runs(port, "/deployments/count", {}) >= 3, timeout=120)
        desk.start_api()
        log(f"surge of {n} claims at concurrency {args.concurrency}; work folder {workdir}")

        kills = [] if args.no_chaos else [(args.kill_api_at, "api"), (args.kill_runner_at, "runner")]
        pending = sorted(kills)
        chaos: list[str] = []

        def on_answered(done: int) -> None:
            while pending and done >= pending[0][0] * n:
                _, which = pending.pop(0)
                chaos.append(which)

        def cpu() -> dict[str, dict[int, float]]:
            """CPU seconds of each party's processes so far, by process (one killed meanwhile is not counted in
            the phase: its time left with it)."""
            assert desk.api is not None and desk.runner is not None
            groups = {"API": {desk.api.pid}, "desk runner": {desk.runner.pid}, "Prefect server": {server.pid},
                      "delivery processes": {child.pid for child in delivery}}  # fmt: skip
            own = os.getpgrp()  # this process (the load generator) and the SMTP sink it started
            matches: dict[str, Callable[[str, int, int], bool]] = {
                **{name: (lambda _n, pgid, _p, g=group: pgid in g) for name, group in groups.items()},
                "PostgreSQL": lambda name, _g, _p: name == "postgres",  # the cases' and the Prefect server's
                "load generator and SMTP sink": lambda _n, pgid, _p: pgid == own,
            }
            return {name: cpu_seconds(match) for name, match in matches.items()}

        def report_cpu(
            phase: str,
            before: dict[str, dict[int, float]],
            seconds: float,
            until: dict[str, dict[int, float]] | None = None,
        ) -> None:
            now = until or cpu()
            used = {name: spent(before.get(name, {}), now[name]) for name in now}
            log(
                f"CPU {phase} ({seconds:.0f} s, two cores = 200 %): "
                + ", ".join(
                    f"{name} {100 * value / seconds:.0f} %" for name, value in sorted(used.items(), key=lambda i: -i[1])
                )
            )

        cpu_at_start = cpu()
        started = time.perf_counter()

        async def surge() -> Outcome:
            poster = asyncio.create_task(post_all("127.0.0.1", desk.api_port, claim, count=n,
                                                  concurrency=args.concurrency, retries=None, again={503},
                                                  on_answered=on_answered))  # fmt: skip
            while not poster.done():
                while chaos:
                    await asyncio.to_thread(desk.kill, chaos.pop(0))
                await asyncio.sleep(0.1)
            return poster.result()

        posted = asyncio.run(surge())
        acknowledged = time.perf_counter() - started
        report_cpu("while the claims were posted", cpu_at_start, acknowledged)
        cpu_at_acknowledged = cpu()
        if posted.statuses != {202: n}:
            raise SystemExit(f"the claims were answered {posted.statuses}, not all 202")
        log(f"all {n} claims answered 202 in {acknowledged:.1f} s ({n / acknowledged:.1f} claims/s; "
            f"{posted.resent} posts sent again with their key)")  # fmt: skip

        acks = "SELECT id, status FROM outbox WHERE template = 'acknowledgement_claim'"

        def acks_sent() -> int:
            with engine.connect() as connection:
                return sum(1 for _, status in connection.execute(text(acks)) if status == "sent")

        paused = {"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}}
        done: dict[str, float] = {}
        checks = {"mailed": lambda: acks_sent() >= n, "suspended": lambda: _count_runs(port, "/flow_runs/count",
                                                                                       paused) >= n}  # fmt: skip

        snapshots: dict[str, dict[str, dict[int, float]]] = {}

        def both() -> bool:
            for name, check in checks.items():
                if name not in done and check():
                    done[name] = time.perf_counter() - started
                    snapshots[name] = cpu()
                    log(f"{name}: {done[name]:.1f} s after the surge began")
            return len(done) == len(checks)

        if args.runs_window:
            checks.pop("suspended")
            wait_until("every acknowledgement sent", both, timeout=args.timeout, every=1)
            window_end = time.perf_counter() + args.runs_window
            while time.perf_counter() < window_end:
                time.sleep(1)
            suspended_count = _count_runs(port, "/flow_runs/count", paused)
            so_far = time.perf_counter() - started
            done["suspended"] = so_far * n / max(suspended_count, 1)
            log(f"runs suspended after {so_far:.1f} s: {suspended_count} of {n} ({suspended_count / so_far:.1f}/s)")
        else:
            wait_until("every acknowledgement sent and every run suspended", both, timeout=args.timeout, every=1)
        mailed, suspended = done["mailed"], done["suspended"]
        if mailed > acknowledged:
            report_cpu("from then until every acknowledgement was out", cpu_at_acknowledged, mailed - acknowledged,
                       until=snapshots["mailed"])  # fmt: skip

        with engine.connect() as connection:
            cases = int(connection.execute(text('SELECT count(*) FROM "case"')).scalar_one())
            distinct = int(connection.execute(text('SELECT count(DISTINCT policy_number) FROM "case"')).scalar_one())
            ack_ids = [int(i) for i, _ in connection.execute(text(acks))]
            notices = connection.execute(
                text(
                    "SELECT template, status, count(*) FROM outbox WHERE template LIKE "
                    "'staff_new_assignment%' GROUP BY template, status ORDER BY 1, 2"
                )
            ).all()
        twice = cases - distinct
        live_runs = _runs_by_name(port)  # every case run not crashed or cancelled, by its case number
        without_run = cases - len(live_runs)
        many_runs = sum(1 for count in live_runs.values() if count > 1)
        seen = sink.seen()
        never = sum(1 for i in ack_ids if seen[i] == 0)
        doubled = sum(1 for i in ack_ids if seen[i] > 1)
        killed = f"kill -9 of the API at {args.kill_api_at:.0%}, of the runner at {args.kill_runner_at:.0%}"
        print(f"claims: {n}; concurrency {args.concurrency}; chaos: {'none' if args.no_chaos else killed}; "
              f"filing: {'a process of its own' if args.filer else 'the writer thread of the API'}; "
              f"delivery processes beside the runner: {args.delivery_processes}; background CPU priority: "
              f"{'as the API' if args.no_priorities else 'lowered (runner, delivery, server)'}")  # fmt: skip
        print(f"all answered 202:          {acknowledged:8.1f} s ({n / acknowledged:.1f}/s)")
        print(f"all acknowledgements out:  {mailed:8.1f} s")
        if args.runs_window:
            print(f"all runs suspended:        {suspended:8.1f} s at the rate measured ({n / suspended:.1f} runs/s; "
                  f"not waited for)")  # fmt: skip
        else:
            print(f"all runs suspended:        {suspended:8.1f} s ({n / suspended:.1f} runs/s)")
        if args.runs_window:  # the runs were not all started: cases without one are not counted
            without_run = 0
        runs = "not all started" if args.runs_window else str(without_run)
        print(f"lost: {n - cases} cases; duplicated: {twice} cases; acknowledgements never received: {never}, "
              f"received twice: {doubled} (of {len(ack_ids)}); cases without a run: {runs}, "
              f"with more than one live run: {many_runs}")  # fmt: skip
        print(
            "handlers' new-assignment notices when the bench ended (a digest lists those folded into it): "
            + (", ".join(f"{template} {status} {count}" for template, status, count in notices) or "none")
        )
        counts = (cases, twice, never, doubled, len(ack_ids), without_run, many_runs)
        return 0 if counts == (n, 0, 0, 0, n, 0, 0) else 1


def _runs_by_name(port: int) -> dict[str, int]:
    """How many runs not crashed, cancelled or failed each case has (by the run's name, the case number); the runs
    of up to five cases with more than one are printed, with their states. Runs are told apart by id: paging by
    offset while runs change state can show one run on two pages."""
    seen: dict[str, dict[str, str]] = {}
    offset = 0
    body: dict[str, Any] = {"flow_runs": {"name": {"like_": "CLM-"}, "state": {"type": {"not_any_": [
        "CRASHED", "CANCELLED", "FAILED"]}}}, "limit": 200, "sort": "ID_DESC"}  # fmt: skip
    while True:
        page = httpx.post(f"http://127.0.0.1:{port}/api/flow_runs/filter", json={**body, "offset": offset}, timeout=60)
        runs = page.json()
        if not runs:
            break
        for run in runs:
            seen.setdefault(run["name"], {})[run["id"]] = (
                f"{run['id'][:8]} {run['state_type']} since {run['state']['timestamp'][11:19]} created "
                f"{run['created'][11:19]} key {str(run.get('idempotency_key'))[-40:]}"
            )
        offset += len(runs)
    counts = {name: len(runs) for name, runs in seen.items()}
    for name in [name for name, count in counts.items() if count > 1][:5]:
        log(f"{name} has {counts[name]} live runs: " + "; ".join(seen[name].values()))
    return counts


def _count_runs(port: int, path: str, body: dict[str, Any]) -> int:
    try:
        response = httpx.post(f"http://127.0.0.1:{port}/api{path}", json=body, timeout=10)
        return int(response.json()) if response.status_code == 200 else 0
    except (httpx.HTTPError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main())

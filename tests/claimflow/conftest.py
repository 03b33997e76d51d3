"""The README's main journey, as a person plays it: ``claimflow up``, then ``claimflow demo`` and ``claimflow
decide`` from another terminal, then Ctrl-C. Real processes, a real Prefect server; the tests that play it
choose the databases (``up_journey(CLAIMFLOW_DATABASE_URL=..., ...)``) and check what each left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from claimflow.priority import nice_of, session_group_nice
from models.otp import code_at
from tests.ports import free_port

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium for a file's customer-page tests (``tests/browser.py``; skipped or failed without it)."""
    from tests.browser import chromium

    with chromium(expect_seconds=15) as launched:
        yield launched


@dataclass
class Journey:
    """A journey's environment, and what it left: what ``claimflow up`` printed, the sample cases."""

    env: dict[str, str]
    port: int = 0
    auth: tuple[str, str] = ("", "")
    log: Path = Path()
    output: str = ""
    cases: dict[str, str] = field(default_factory=dict)  # case number per kind: {"CLM": "CLM-2026-000001", ...}

    def run(self, *argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """``claimflow <argv>`` from another terminal with the same settings."""
        return subprocess.run(
            [str(BIN / "claimflow"), *argv], env=self.env, capture_output=True, text=True, timeout=timeout
        )


CLOSED_PREFECT = "http://127.0.0.1:9/api"  # nothing answers there


@pytest.fixture
def no_prefect(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No Prefect server answers, for this process and the commands it starts. The environment variable alone
    does not reach this process's Prefect client: Prefect reads its environment once, when first imported (in a
    test run, while the test files are collected), so with nothing set it started a temporary server of its own
    instead (seen in CI: about 15 s on a loaded machine, and a test timed out waiting for its launch to fail)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", CLOSED_PREFECT)
    with temporary_settings({PREFECT_API_URL: CLOSED_PREFECT}):
        yield


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):  # ended meanwhile
            continue
    return found


@contextmanager
def running_up(tmp_path: Path, **settings: str) -> Iterator[Journey]:
    """``claimflow up`` with the given ``CLAIMFLOW_*`` settings on top of a fresh data directory and free ports,
    checked as it comes up (its banner, its login) and as it stops (Ctrl-C, exit 0, nothing left listening)."""
    port = free_port()
    env = {
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "CLAIMFLOW_DATA_DIR": str(tmp_path / "data"),
        "CLAIMFLOW_PREFECT_PORT": str(port),
        "CLAIMFLOW_API_PORT": str(free_port()),
        "COLUMNS": "200",
        # every command must talk to the desk's server: none may quietly start an ephemeral one of its own
        # (which on SQLite even shares the desk's database file and seems to work)
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
        **settings,
    }
    journey = Journey(env, port=port)
    log_path = tmp_path / "up.log"
    log = log_path.open("w")
    up = subprocess.Popen([str(BIN / "claimflow"), "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "press Ctrl-C to stop" not in log_path.read_text():
            assert up.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "claimflow up did not come up"
            time.sleep(0.5)
        started = log_path.read_text()
        assert f"Prefect UI:   http://127.0.0.1:{port}" in started
        login = re.search(r"login with: (desk:\S+)\)", started).group(1)
        # the server is protected: without the auth string the API refuses (only /health answers everyone)
        runs = f"http://127.0.0.1:{port}/api/flow_runs/filter"
        assert httpx.post(runs, json={}, timeout=10).status_code == 401
        user, _, password = login.partition(":")
        assert httpx.post(runs, json={}, auth=(user, "wrong"), timeout=10).status_code == 401
        assert httpx.post(runs, json={}, auth=(user, password), timeout=10).status_code == 200
        journey.auth = (user, password)
        journey.log = log_path
        # the Prefect server yields the CPU to the intake API, which runs in up's own process and keeps its priority
        [server] = [pid for pid in children_of(up.pid)
                    if b"claimflow.prefect_server" in Path(f"/proc/{pid}/cmdline").read_bytes()]  # fmt: skip
        own = os.nice(0)
        lowered = min(own + int(settings.get("CLAIMFLOW_PREFECT_SERVER_NICE", "10")), 19)
        assert set(nice_of(server).values()) == {lowered} and session_group_nice(server) == lowered
        assert set(nice_of(up.pid).values()) == {own}
        yield journey
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        finally:
            if up.poll() is None:
                up.kill()
            log.close()
    journey.output = log_path.read_text()
    assert up.returncode == 0, journey.output[-2000:]
    assert "stopped" in journey.output
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=3)


@pytest.fixture
def up_journey(tmp_path: Path) -> Callable[..., Journey]:
    """Plays the journey with the given ``CLAIMFLOW_*`` settings on top of a fresh data directory and free
    ports, checking every step on the way; returns what it left for the test's own checks."""

    def play(**settings: str) -> Journey:
        with running_up(tmp_path, **settings) as journey:
            port, (user, password), log_path = journey.port, journey.auth, journey.log
            demo = journey.run("demo")
            assert demo.returncode == 0, demo.stdout + demo.stderr
            assert "li.wei — approves 12,000.00" in demo.stdout
            if "CLAIMFLOW_DESK_PHONE" not in settings:  # the answers were given; the letters wait for the number
                assert "customer message(s) held: the desk's phone is not set" in demo.stdout, demo.stdout
            rows = re.findall(r"│ ((CLM|CMP|INQ)-\S+) +│ \S+ +│ (\S+)", demo.stdout)
            assert {kind: status for _, kind, status in rows} == {
                "CLM": "closed",
                "CMP": "investigating",
                "INQ": "closed",
            }
            journey.cases.update({kind: number for number, kind, _ in rows})
            complaint = journey.cases["CMP"]

            # the waiting complaint's run carries the case (its artifact) and its worklist tags; no delivery runs
            api, auth = f"http://127.0.0.1:{port}/api", (user, password)

            def page() -> tuple[list[str], str]:
                [run] = httpx.post(f"{api}/flow_runs/filter", auth=auth, timeout=10,
                                   json={"flow_runs": {"name": {"any_": [complaint]}}}).json()  # fmt: skip
                found = httpx.post(f"{api}/artifacts/filter", auth=auth, timeout=10,
                                   json={"artifacts": {"key": {"any_": [f"case-{complaint.lower()}"]},
                                                       "flow_run_id": {"any_": [run["id"]]}},
                                         "sort": "CREATED_DESC"}).json()  # fmt: skip
                return run["tags"], found[0]["data"] if found else ""

            deadline = time.monotonic() + 60
            while "waiting:complaint-decision" not in page()[0]:
                assert time.monotonic() < deadline, (
                    f"the complaint's run was not tagged: {page()}\n{log_path.read_text()[-3000:]}"
                )
                time.sleep(1)
            tags, artifact = page()
            assert any(t.startswith("assignee:") for t in tags) and any(t.startswith("due:") for t in tags)
            assert artifact.startswith(f"# {complaint} · complaint · investigating")
            delivery_runs = httpx.post(f"{api}/flow_runs/filter", auth=auth, timeout=10,
                                       json={"flows": {"name": {"any_": ["deliver-outbox"]}}}).json()  # fmt: skip
            assert delivery_runs == []

            enrolled = journey.run("staff", "enroll", "chen.jing", "--force")
            secret = re.search(r"secret: ([A-Z2-7]{32})", enrolled.stdout).group(1)
            stale = code_at(secret, datetime.now(UTC) - timedelta(hours=1))
            refused = journey.run("decide", complaint, "--staff", "chen.jing", "--code", stale,
                                  "--decision", "not_uphold", "--reasons", "x")  # fmt: skip
            assert refused.returncode == 6, refused.stdout + refused.stderr  # a refused decision, as the README says
            assert "refused: the approval code is wrong or has expired" in refused.stderr + refused.stdout
            # typed in full width, as a Chinese input method gives digits: the code meant, not a crashed run
            full_width = str.maketrans("0123456789", "０１２３４５６７８９")
            deadline = time.monotonic() + 60
            while True:  # the refused attempt's run asks again under a new key a moment later
                decided = journey.run("decide", complaint, "--staff", "chen.jing",
                                      "--code", code_at(secret, datetime.now(UTC) + timedelta(seconds=30)).translate(
                                          full_width),  # valid 60-90 s from now
                                      "--decision", "partly_uphold",
                                      "--remedy", "Interest for the delay",
                                      "--reasons", "The assessor was late twice")  # fmt: skip
                if "try again shortly" not in decided.stderr or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert decided.returncode == 0, decided.stdout + decided.stderr
            assert "partly_uphold" in decided.stdout
            deadline = time.monotonic() + 60
            while "status: closed" not in journey.run("case", "show", complaint).stdout:
                assert time.monotonic() < deadline, "the complaint's run did not close it"
                time.sleep(1)
            assert "audit log intact: 3 case(s)" in journey.run("audit", "verify").stdout

            # a case filed at the terminal gets its run at once (not at the next reconcile, minutes later)
            filed = journey.run("--actor", "li.wei", "case", "new", "--kind", "inquiry", "--channel", "phone",
                                "--name", "王五", "--phone", "13900000000")  # fmt: skip
            assert filed.returncode == 0, filed.stderr
            number = filed.stdout.strip()
            journey.cases["filed at the terminal"] = number
            deadline = time.monotonic() + 30
            while not httpx.post(f"{api}/flow_runs/filter", auth=auth, timeout=10,
                                 json={"flow_runs": {"name": {"any_": [number]}}}).json():  # fmt: skip
                assert time.monotonic() < deadline, f"no run for {number}: {filed.stderr}"
                time.sleep(0.5)
            assert "reconciler" not in filed.stderr
        # the Prefect server took the whole journey without an error (on SQLite, resumes among the runner's writes
        # once met "database is locked": claimflow.prefect_server)
        server_log = (tmp_path / "data" / "logs" / "prefect-server.log").read_text()
        assert "| ERROR" not in server_log and "Traceback" not in server_log, server_log[-3000:]
        return journey

    return play

"""The embedded Prefect server on SQLite (``claimflow.prefect_server``) takes resumes while other writes go on, with
no "database is locked" in its log and no request failed; the stock ``prefect server start`` on the same work is
the control that shows the work reproduces the failure (a DEFERRED read-then-write transaction in WAL mode)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from claimflow.orchestrator import EmbeddedServer, api_url, auth_string, server_environment, server_ready
from claimflow.settings import Settings
from tests.ports import free_port

pytestmark = pytest.mark.slow

RUNS = 150  # suspended runs resumed, and as many runs created and moved meanwhile
AT_ONCE = 24


async def resumes_among_writes(url: str, auth: tuple[str, str]) -> tuple[int, int]:
    """Resume ``RUNS`` suspended runs while as many others are created and moved; (resumes accepted, failures)."""
    failures = accepted = 0
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=120) as client:

        async def post(path: str, body: Any) -> Any:
            nonlocal failures
            response = await client.post(path, json=body)
            if response.status_code >= 300:
                failures += 1
                return None
            return response.json()

        async def prepare(path: str, body: Any) -> Any:  # the set-up, not the work measured: asked until it is done
            for _ in range(20):
                response = await client.post(path, json=body)
                if response.status_code < 300:
                    return response.json()
                await asyncio.sleep(0.2)
            raise AssertionError(f"{path}: {response.status_code} {response.text[:300]}")

        flow = await prepare("/flows/", {"name": "resumed"})
        runs = [(await prepare("/flow_runs/", {"flow_id": flow["id"], "name": f"r{i}"}))["id"] for i in range(RUNS)]
        for run in runs:  # suspended, as a run waiting for a person is
            await prepare(f"/flow_runs/{run}/set_state", {"state": {"type": "RUNNING"}, "force": True})
            await prepare(f"/flow_runs/{run}/set_state", {"state": {"type": "PAUSED", "name": "Suspended",
                          "state_details": {"pause_key": "decision-1", "pause_reschedule": False}}, "force": True})  # fmt: skip
        turns = asyncio.Semaphore(AT_ONCE)

        async def resume(run: str) -> None:
            nonlocal accepted
            async with turns:
                result = await post(f"/flow_runs/{run}/resume", {})
                accepted += bool(result and result.get("status") == "ACCEPT")

        async def write(i: int) -> None:
            async with turns:
                created = await post("/flow_runs/", {"flow_id": flow["id"], "name": f"w{i}"})
                if created is not None:
                    await post(f"/flow_runs/{created['id']}/set_state", {"state": {"type": "PENDING"}})

        await asyncio.gather(*(resume(run) for run in runs), *(write(i) for i in range(RUNS)))
    return accepted, failures


def play(tmp_path: Path, *, stock: bool) -> tuple[int, int, int]:
    """The work against a fresh server on SQLite: (resumes accepted, failed requests, "database is locked" in its
    log)."""
    settings = Settings(data_dir=tmp_path, prefect_port=free_port())
    log = tmp_path / "server.log"
    url, auth = api_url(settings), auth_string(settings)
    user, _, password = auth.partition(":")
    if stock:
        with log.open("ab") as handle:
            process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                        "--port", str(settings.prefect_port)],
                                       env={**os.environ, **server_environment(settings)}, stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while not server_ready(url, auth):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        try:
            accepted, failures = asyncio.run(resumes_among_writes(url, (user, password)))
        finally:
            os.killpg(process.pid, 15)
            process.wait(timeout=30)
    else:
        server = EmbeddedServer(settings, log=log)
        server.start()
        try:
            accepted, failures = asyncio.run(resumes_among_writes(url, (user, password)))
        finally:
            server.stop()
    return accepted, failures, log.read_text().count("database is locked")


def test_resumes_among_other_writes_never_meet_a_locked_database(tmp_path: Path) -> None:
    accepted, failures, locked = play(tmp_path / "desk", stock=False)
    assert (accepted, failures, locked) == (RUNS, 0, 0)
    # the control: the same work on the stock server meets the lock (else this test would prove nothing)
    _, stock_failures, stock_locked = play(tmp_path / "stock", stock=True)
    assert stock_locked > 0 and stock_failures > 0, (stock_locked, stock_failures)

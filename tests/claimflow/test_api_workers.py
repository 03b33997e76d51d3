"""``claimflow api --workers N``: several API processes on one port, each with its own group commit, file every post
once and number without gaps; on SQLite the option is refused with the reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from claimflow.web.intake import sign_headers
from models.tables import Case
from tests.claimflow.test_api import claim
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(database_url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CLAIMFLOW_DATABASE_URL": database_url,
        "CLAIMFLOW_DATA_DIR": str(data_dir),
        "CLAIMFLOW_WEBHOOK_SECRETS": json.dumps({"partner": ["partner-secret"]}),
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # no Prefect: the reconciler would start the runs
        "PYTHONPATH": str(ROOT),
    }


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: its parent and its command line (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
            found[int(entry.name)] = (parent, command)
    return found


def start_api(arguments: list[str], *, env: dict[str, str]) -> subprocess.Popen[str]:
    """``claimflow api ARGUMENTS`` in a session of its own (its output piped), once it answers on its port."""
    port = arguments[arguments.index("--port") + 1]
    server = subprocess.Popen([sys.executable, "-m", "claimflow", "api", *arguments], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            os.killpg(server.pid, signal.SIGKILL)
            raise AssertionError(f"the API did not start: {server.communicate()[0][-2000:]}")
        time.sleep(0.3)


def _post(port: int, n: int) -> httpx.Response:
    body = json.dumps(claim(policy_number=f"P-{n:06d}")).encode()
    headers = {**sign_headers("partner", "partner-secret", body, path="/v1/claims", key=f"workers-{n}"),
               "Content-Type": "application/json"}  # fmt: skip
    return httpx.post(f"http://127.0.0.1:{port}/v1/claims", content=body, headers=headers, timeout=60)


def test_two_api_processes_on_one_port_file_every_post_once_without_gaps(
    world: Any, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        result = subprocess.run([sys.executable, "-m", "claimflow", "api", "--workers", "2", "--port",
                                 str(free_port())], env=_env(database_url, tmp_path), cwd=ROOT, capture_output=True,
                                text=True, timeout=120)  # fmt: skip
        assert result.returncode != 0
        assert "--workers above 1 needs PostgreSQL" in result.stdout + result.stderr
        return
    port = free_port()
    server = start_api(["--workers", "2", "--no-access-log", "--port", str(port)], env=_env(database_url, tmp_path))
    try:
        processes = _processes()
        workers = [pid for pid, (parent, command) in processes.items() if parent == server.pid
                   and "spawn_main" in command]  # fmt: skip
        assert len(workers) == 2, f"uvicorn started two worker processes: {processes.get(server.pid)}"
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda n: _post(port, n), range(60)))
        again = _post(port, 7)  # the same key and body, perhaps at the other process: the same case
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert [a.status_code for a in answers] == [202] * 60, output[-2000:]
    # --no-access-log: uvicorn's own lines are there, the 61 request lines are not (the filings are in the database)
    assert "Application startup complete" in output and '"POST /v1/claims HTTP/1.1" 202' not in output
    assert again.status_code == 202 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["case_number"] == answers[7].json()["case_number"]
    with Session(engine) as session:
        numbers = list(session.exec(select(Case.number).order_by(col(Case.number))))
    assert sorted(a.json()["case_number"] for a in answers) == numbers
    assert [int(n.rsplit("-", 1)[1]) for n in numbers] == list(range(1, 61))  # gapless across the two processes
    time.sleep(0.5)
    assert not [pid for pid in workers if pid in _processes()], "the workers stopped with the API"

"""The README's main command, as a person runs it: ``claimflow up``, then ``claimflow demo`` and
``claimflow decide`` from another terminal, then Ctrl-C. Real processes, a real Prefect server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from models.otp import code_at

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(env: dict[str, str], *argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "claimflow"), *argv], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_up_runs_the_desk_the_demo_plays_it_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "CLAIMFLOW_DATA_DIR": str(tmp_path / "data"),
        "CLAIMFLOW_PREFECT_PORT": str(port),
        "CLAIMFLOW_API_PORT": str(_free_port()),
        "COLUMNS": "200",
    }
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen([str(BIN / "claimflow"), "up"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 150
        while "press Ctrl-C to stop" not in (tmp_path / "up.log").read_text():
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "claimflow up did not come up"
            time.sleep(0.5)
        started = (tmp_path / "up.log").read_text()
        assert f"Prefect UI:   http://127.0.0.1:{port}" in started
        login = re.search(r"login with: (desk:\S+)\)", started).group(1)
        # the server is protected: without the auth string the API refuses (only /health answers everyone)
        runs = f"http://127.0.0.1:{port}/api/flow_runs/filter"
        assert httpx.post(runs, json={}, timeout=10).status_code == 401
        user, _, password = login.partition(":")
        assert httpx.post(runs, json={}, auth=(user, "wrong"), timeout=10).status_code == 401
        assert httpx.post(runs, json={}, auth=(user, password), timeout=10).status_code == 200

        demo = _run(env, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "li.wei — approves 12,000.00" in demo.stdout
        rows = {m.group(2): m.group(3) for m in re.finditer(r"│ ((CLM|CMP|INQ)-\S+) +│ \S+ +│ (\S+)", demo.stdout)}
        assert rows == {"CLM": "closed", "CMP": "investigating", "INQ": "closed"}
        complaint = re.search(r"CMP-\d{4}-\d{6}", demo.stdout).group(0)

        enrolled = _run(env, "staff", "enroll", "chen.jing", "--force")
        secret = re.search(r"secret: ([A-Z2-7]{32})", enrolled.stdout).group(1)
        decided = _run(env, "decide", complaint, "--staff", "chen.jing", "--code", code_at(secret, datetime.now(UTC)),
                       "--decision", "partly_uphold", "--remedy", "Interest for the delay",
                       "--reasons", "The assessor was late twice")  # fmt: skip
        assert decided.returncode == 0, decided.stdout + decided.stderr
        assert "partly_uphold" in decided.stdout
        deadline = time.monotonic() + 60
        while "status: closed" not in _run(env, "case", "show", complaint).stdout:
            assert time.monotonic() < deadline, "the complaint's run did not close it"
            time.sleep(1)
        assert "audit log intact: 3 case(s)" in _run(env, "audit", "verify").stdout
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        finally:
            if up.poll() is None:
                up.kill()
            log.close()
    assert up.returncode == 0, (tmp_path / "up.log").read_text()[-2000:]
    assert "stopped" in (tmp_path / "up.log").read_text()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=3)

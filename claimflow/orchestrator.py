"""Where the desk's Prefect server is, how to reach it, and ``claimflow up`` (server + desk runner).

The embedded default: a Prefect server on SQLite in ``<data dir>/prefect`` at http://127.0.0.1:4200,
protected by Prefect's basic-auth setting (``server.api.auth_string``). The UI asks for the auth string
on first load; clients send it with ``PREFECT_API_AUTH_STRING``. The string is ``CLAIMFLOW_PREFECT_AUTH``
or, where that is not set, one made on first use in ``<data dir>/prefect-auth`` (mode 0600).

With ``CLAIMFLOW_PREFECT_DATABASE_URL`` (``postgresql+asyncpg://...``) the same server keeps its state in
PostgreSQL instead: the setup for volume, since the SQLite-backed server answers "database is locked" under
concurrent load.

Every ``claimflow`` command that talks to Prefect applies ``prefect_environment`` before Prefect is
imported, unless ``PREFECT_API_URL`` is already set (a server of your own: then its settings are used).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from claimflow.settings import Settings
from models.errors import ClaimflowError, InvalidInput


class OrchestratorUnavailable(ClaimflowError):
    exit_code = 7


def auth_string(settings: Settings) -> str:
    """The Prefect basic-auth string ``desk:<token>`` in force (made on first use)."""
    if settings.prefect_auth is not None:
        return settings.prefect_auth.get_secret_value()
    path = settings.data_dir / "prefect-auth"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = f"desk:{secrets.token_urlsafe(18)}"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value)
    return value


def api_url(settings: Settings) -> str:
    return f"http://{settings.prefect_host}:{settings.prefect_port}/api"


# the drivers the Prefect server runs on (its database layer is async only)
PREFECT_DATABASE_DRIVERS = ("postgresql+asyncpg", "sqlite+aiosqlite")


def prefect_database_url(settings: Settings) -> str | None:
    """The URL of the Prefect server's own database, or None for Prefect's default (SQLite in its home).

    Raises:
        InvalidInput: the URL does not parse or names a driver the Prefect server cannot use (the message
            never shows the password).
    """
    if settings.prefect_database_url is None:
        return None
    value = settings.prefect_database_url.get_secret_value()
    try:
        url = make_url(value)
    except ArgumentError:
        raise InvalidInput(
            "CLAIMFLOW_PREFECT_DATABASE_URL is not a SQLAlchemy URL; expected "
            "postgresql+asyncpg://user:password@host:5432/name"
        ) from None
    if url.drivername not in PREFECT_DATABASE_DRIVERS:
        raise InvalidInput(
            f"CLAIMFLOW_PREFECT_DATABASE_URL {url.render_as_string(hide_password=True)} uses the driver "
            f"{url.drivername!r}; the Prefect server needs {' or '.join(PREFECT_DATABASE_DRIVERS)}, e.g. "
            "postgresql+asyncpg://user:password@host:5432/name"
        )
    return value


def server_environment(settings: Settings) -> dict[str, str]:
    """The environment of the embedded Prefect server process."""
    url = api_url(settings)
    database = prefect_database_url(settings)
    return {
        "PREFECT_HOME": str(settings.data_dir / "prefect"),
        "PREFECT_API_URL": url,
        "PREFECT_UI_API_URL": url,
        "PREFECT_SERVER_API_HOST": settings.prefect_host,
        "PREFECT_SERVER_API_PORT": str(settings.prefect_port),
        "PREFECT_SERVER_API_AUTH_STRING": auth_string(settings),
        "PREFECT_API_AUTH_STRING": auth_string(settings),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        **({"PREFECT_SERVER_DATABASE_CONNECTION_URL": database} if database else {}),
        # fewer, larger write transactions for task runs and events (the SQLite default's lock is where that counts
        # most; on PostgreSQL up to a fifth of the server's CPU per case leg, within the noise of a shared machine:
        # bench/flow_runs.py, variants stock-server, recorder-batch, persister-batch). The task-run recorder writes
        # each task-run event in a transaction of its own by default: up to 100 per transaction, at least every
        # second (a task run shows in the UI up to a second later). The event persister writes 20 events per
        # transaction by default: up to 200, at least every 5 s as before (automations read the event stream,
        # not these rows)
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
        "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
        # Prefect's own vacuum removes finished runs after the retention period, with their logs and artifacts:
        # the Runs page keeps a month of the desk, not every housekeeping pass since it started
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(settings.run_retention_days * 86400),
    }


def prefect_environment(settings: Settings) -> None:
    """Point this process's Prefect client at the desk's server (call before importing Prefect)."""
    if os.environ.get("PREFECT_API_URL"):
        return
    os.environ["PREFECT_API_URL"] = api_url(settings)
    os.environ["PREFECT_API_AUTH_STRING"] = auth_string(settings)
    os.environ.setdefault("PREFECT_HOME", str(settings.data_dir / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def server_ready(url: str, auth: str | None, *, timeout: float = 2.0) -> bool:
    user, _, password = (auth or "").partition(":")
    try:
        response = httpx.get(f"{url}/health", auth=(user, password) if auth else None, timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


class EmbeddedServer:
    """``prefect server start`` as a child process (``claimflow.prefect_server``: its SQLite writes immediate),
    stopped with the desk."""

    def __init__(self, settings: Settings, *, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 120) -> None:
        url, auth = api_url(self.settings), auth_string(self.settings)
        if server_ready(url, auth):
            raise OrchestratorUnavailable(
                f"a Prefect server already answers at {url}: stop it, or set CLAIMFLOW_PREFECT_PORT to another port"
            )
        env = {**os.environ, **server_environment(self.settings)}
        Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [sys.executable, "-m", "claimflow.prefect_server", "--nice", str(self.settings.prefect_server_nice),
                 "--host", self.settings.prefect_host, "--port", str(self.settings.prefect_port)],
                env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OrchestratorUnavailable(f"the Prefect server stopped while starting; see {self.log}")
            if server_ready(url, auth):
                return
            time.sleep(0.5)
        self.stop()
        raise OrchestratorUnavailable(f"the Prefect server did not answer within {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

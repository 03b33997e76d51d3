"""``claimflow api``: the intake webhook API on its own, and the thread that ``claimflow up`` serves it from."""

from __future__ import annotations

import contextvars
import os
import threading
import time
from typing import Annotated, Any

import typer

from claimflow.console import out
from claimflow.settings import Settings, get_settings
from models.errors import InvalidInput


def _check_schema(settings: Settings) -> None:
    from claimflow.db import check_reachable, get_engine
    from claimflow.migrate import require_current_schema

    engine = get_engine(settings.resolved_database_url)
    check_reachable(engine)
    require_current_schema(engine)


def _describe(settings: Settings, host: str, port: int) -> None:
    sources = ", ".join(sorted(settings.webhook_secrets)) or "none: set CLAIMFLOW_WEBHOOK_SECRETS, every post is 401"
    out.print(
        f"intake API:   http://{host}:{port}/v1/claims|complaints|inquiries  (OpenAPI: http://{host}:{port}/docs)"
    )
    out.print(f"sources:      {sources}")
    out.print(f"customers:    http://{host}:{port}/claim, /complaint (online forms), /standards (service standards); "
              "each customer message links its case's status page")  # fmt: skip


def api(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default CLAIMFLOW_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default CLAIMFLOW_API_PORT).")] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, max=32, help="API processes sharing the port (PostgreSQL; each groups its own filings)."),
    ] = 1,
    filer: Annotated[
        bool,
        typer.Option(
            "--filer/--no-filer",
            help="Write the filings in a process of its own (claimflow.web.filer): the API's processes only speak "
            "HTTP, so on two cores HTTP and filing each have one (the fastest intake).",
        ),
    ] = False,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="A line per request (uvicorn's access log). At surge rates (1,000 posts a second) it is most of "
            "the log: the filings themselves are in the database and the audit log either way.",
        ),
    ] = True,
) -> None:
    """Serve the intake webhook API (signed POSTs of claims, complaints and inquiries; OpenAPI at /docs).

    New cases' flow runs are started on the desk's Prefect server (PREFECT_API_URL, else the one 'claimflow up'
    runs); when it does not answer, the reconciler of 'claimflow up' starts them later.
    """
    import uvicorn

    from claimflow.orchestrator import prefect_environment
    from claimflow.web.app import create_app

    settings = get_settings()
    prefect_environment(settings)
    _check_schema(settings)
    host, port = host or settings.api_host, port or settings.api_port
    if workers > 1 and not settings.resolved_database_url.startswith("postgresql"):
        raise InvalidInput("--workers above 1 needs PostgreSQL (CLAIMFLOW_DATABASE_URL): SQLite takes one writer at a "
                           "time, so more API processes only wait for each other")  # fmt: skip
    _describe(settings, host, port)
    filing = None
    if filer:
        from claimflow.web.filer import FilerProcess

        filing = FilerProcess(settings, on_event=lambda text: out.print(f"[yellow]{text}[/yellow]"))
        filing.start()
        settings = filing.settings
        os.environ.update(filing.environment)  # for the worker processes, which read their settings again
        out.print(f"filing:       in a process of its own (pid {filing.process.pid if filing.process else '?'})")
    try:
        if workers == 1:
            uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=access_log)
            return
        out.print(f"workers:      {workers} processes")
        # each worker builds its app from the environment (the settings above, and Prefect's as just set)
        uvicorn.run("claimflow.web.app:create_app", factory=True, workers=workers, host=host, port=port,
                    log_level="info", access_log=access_log)  # fmt: skip
    finally:
        if filing is not None:
            filing.stop()  # after the API's processes: what it holds is written and answered first


class ApiThread:
    """The API served by uvicorn in a daemon thread (for ``claimflow up``, whose main thread runs the desk)."""

    def __init__(self, settings: Settings | None = None, *, host: str | None = None, port: int | None = None) -> None:
        self.settings = settings or get_settings()
        self.host = host or self.settings.api_host
        self.port = port or self.settings.api_port
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # uvicorn raises (or exits) when it cannot bind: start() reports it
            self.error = exc

    def start(self, *, timeout: float = 30) -> None:
        """Start serving; returns once the port is bound (raises if it is not within ``timeout``)."""
        import uvicorn

        from claimflow.web.app import create_app

        config = uvicorn.Config(create_app(self.settings), host=self.host, port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        context = contextvars.copy_context()  # the caller's settings contexts (Prefect's among them) hold there too
        self.thread = threading.Thread(target=lambda: context.run(self._run), name="claimflow-api", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                # uvicorn exits (SystemExit 3) when it cannot bind: the port is taken or not allowed
                bound = self.error is None or isinstance(self.error, SystemExit)
                reason = " (is the port in use? set CLAIMFLOW_API_PORT)" if bound else f": {self.error}"
                raise InvalidInput(f"the intake API could not listen on {self.host}:{self.port}{reason}")
            time.sleep(0.05)
        _describe(self.settings, self.host, self.port)

    def stop(self, *, timeout: float = 15) -> None:
        """Let requests in flight finish, then stop."""
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=timeout)

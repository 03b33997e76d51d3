"""The desk's web app: one FastAPI app for the signed intake API (``claimflow.web.intake``), the feedback API and
the customers' survey page (``claimflow.web.feedback``) and the public pages (``claimflow.web.pages``).

``claimflow up`` serves it at ``CLAIMFLOW_API_PORT`` (8000); ``claimflow api`` serves it alone;
``uvicorn --factory claimflow.web.app:create_app`` too. Its API's reference is at ``/docs`` (Swagger UI) and
``/redoc``, served with their scripts from this app (``fastapi-offline``): they need no internet.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine
from starlette.responses import HTMLResponse

from claimflow.db import get_engine
from claimflow.migrate import require_current_schema
from claimflow.settings import Settings, get_settings
from claimflow.web import intake as intake_api
from claimflow.web.feedback import FEEDBACK_TAG, FeedbackIn, add_feedback_routes
from claimflow.web.filer import RemoteCommit
from claimflow.web.forms import add_form_routes
from claimflow.web.http import STATIC, Problem, install_problem_handlers
from claimflow.web.intake import (
    INTAKE_TAG,
    MAX_SOURCE_LENGTH,
    CaseSubmission,
    Intake,
    Launcher,
    add_intake_routes,
)
from claimflow.web.pages import add_page_routes, add_status_routes
from models.errors import InvalidInput
from tasks.workflow import Desk


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    launch: bool = True,
) -> FastAPI:
    """The webhook app on ``engine`` (default: the settings' database); ``launch=False`` leaves every run to
    the reconciler."""

    settings = settings or get_settings()
    for source in settings.webhook_secrets:
        if not source or len(source) > MAX_SOURCE_LENGTH:
            raise InvalidInput(f"webhook source name {source!r}: 1 to {MAX_SOURCE_LENGTH} characters")
    engine = engine or get_engine(settings.resolved_database_url)
    intake = Intake(settings, engine, Desk.of(settings), clock or (lambda: datetime.now(UTC)))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(require_current_schema, engine)  # however it is served: uvicorn --factory too
        if launch:
            intake.launcher = Launcher(engine, timeout=settings.api_launch_timeout_seconds)
            intake.launcher.start()
        if settings.api_filer_socket and settings.api_filer_key is not None:  # claimflow.web.filer
            key = settings.api_filer_key.get_secret_value().encode()
            intake.committer = RemoteCommit(settings.api_filer_socket, key)
            await anyio.to_thread.run_sync(intake.committer.start)
        elif settings.api_group_commit_max > 1:
            intake.committer = intake.group_commit()
            intake.committer.start()
            if intake.launcher is not None:
                intake.launcher.yield_to = lambda: intake.committer is not None and intake.committer.busy
        app.state.intake = intake
        first_to_freeze = settings.api_freeze_heap and gc.get_freeze_count() == 0
        if settings.api_freeze_heap:
            freeze_startup_heap()
        try:
            yield
        finally:
            if first_to_freeze:  # collectable again (an app started and stopped in a process that goes on: the
                gc.unfreeze()  # tests); never what another part froze first (the desk runner in 'claimflow up')
            if intake.committer is not None:
                await anyio.to_thread.run_sync(intake.committer.stop)  # what is waiting is written first
            if intake.launcher is not None:
                await intake.launcher.stop()

    # FastAPIOffline: a FastAPI app whose /docs and /redoc load Swagger UI and ReDoc from the package, not from a
    # CDN (FastAPI's own pages load them from cdn.jsdelivr.net: blank on an insurer's closed network)
    app = FastAPIOffline(
        title="claimflow intake",
        version="1",
        summary="File claims, complaints and inquiries; ask for their status.",
        description=intake_api.__doc__,
        lifespan=lifespan,
        redoc_url=None,  # below, with a policy that keeps it on the desk
    )
    add_redoc_route(app)
    app.state.intake = intake
    install_problem_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_intake_routes(app, intake)
    add_feedback_routes(app, intake)
    add_page_routes(app, intake)
    add_status_routes(app, intake)
    add_form_routes(app, intake)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=[{"name": INTAKE_TAG, "description": "File claims, complaints and inquiries (signed), and ask "
                       "for the status of a case the same source filed."},
                      {"name": FEEDBACK_TAG, "description": "Record a customer's feedback about a case, given "
                       "through another channel (a call, a letter)."}],
            )  # fmt: skip
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (CaseSubmission, Problem, FeedbackIn):
                generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(generated.pop("$defs", {}))
                components[model.__name__] = generated
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


OFFLINE_STATIC = "/static-offline-docs"
"""Where ``FastAPIOffline`` serves Swagger UI's and ReDoc's scripts from its package."""
REDOC_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
"""ReDoc's page: its script asks cdn.redoc.ly for the Redocly badge of its menu as it draws it (a request leaving
the desk each time someone reads the reference, and one a closed network refuses); the page may load only from
the desk. Its styles are inline (styled-components), its search runs in a worker made from a blob."""


def add_redoc_route(app: FastAPI) -> None:
    """``/redoc``, as ``FastAPIOffline`` serves it (its script from this app), with ``REDOC_HEADERS``."""

    @app.get("/redoc", include_in_schema=False)
    async def redoc_html(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{OFFLINE_STATIC}/redoc.standalone.js", with_google_fonts=False,
                              redoc_favicon_url=f"{root}{OFFLINE_STATIC}/favicon.png")  # fmt: skip
        page.headers.update(REDOC_HEADERS)
        return page


def freeze_startup_heap() -> None:
    """Collect once, then keep what start-up made (the modules, Prefect's client, SQLAlchemy's mappers: about
    200,000 objects) out of the cycle collector's later passes (``gc.freeze``).

    A full collection walked them all, 110 to 190 ms with the GIL held, every request in flight and the group
    commit's thread stalled: that was the intake's tail latency. Measured with ``gc.callbacks`` in the API during
    ``bench/intake.py --count 3000 --concurrency 32``: 5 full collections took 731 ms in all (the longest 190 ms),
    p99 305 ms; frozen, 6 took 44 ms (the longest 11.5 ms), p99 173 ms.

    Objects are still freed when their last reference goes; only cycles among these start-up objects are no longer
    collected, a fixed amount. ``CLAIMFLOW_API_FREEZE_HEAP=false`` turns it off.
    """
    gc.collect()
    gc.freeze()

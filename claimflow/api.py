"""The intake webhook API: claims, complaints and inquiries posted by signed sources.

Every request names its source and signs itself:

- ``X-Claimflow-Source``: the source's name, a key of ``CLAIMFLOW_WEBHOOK_SECRETS``;
- ``X-Claimflow-Timestamp``: Unix seconds; more than ``CLAIMFLOW_WEBHOOK_TOLERANCE_SECONDS`` (5 minutes) away
  from the server's clock is refused as a replay;
- ``X-Claimflow-Signature``: hex HMAC-SHA256 of ``timestamp + "." + raw body`` with one of the source's
  secrets (two are valid while one is rotated). A GET has no body: it signs ``timestamp + "." + path`` (the
  path as sent, without the query: ``/v1/cases/CLM-2026-000001``), so a signature reads one case only.

A POST may carry ``Idempotency-Key``: the same key and body get the same answer again (``Idempotent-Replayed:
true``), the same key with another body is 409. ``202 Accepted`` comes only after the case, its first event,
its acknowledgement in the outbox, its attachments and the idempotency record are committed together. The
case's flow run is started after the answer, by a small background launcher; if Prefect does not answer,
the reconciler deployment starts the run later.

Errors are RFC 9457 ``application/problem+json``: 400 malformed, 401 signature, 404 unknown case, 409
idempotency conflict, 413 too large, 415 not JSON, 422 invalid field (``errors`` names each), 503 database
unavailable. Logs carry sources, case numbers and counts, never personal data.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from claimflow.db import get_engine, session_scope
from claimflow.settings import Settings, get_settings
from models.enums import CaseKind, Channel
from models.errors import InvalidInput, NotFound
from models.signing import SignatureRejected, SignedRequest, verify
from models.tables import CaseCreate, CustomerCreate
from tasks.intake import (
    Answer,
    AttachmentStore,
    IdempotencyConflict,
    IncomingAttachment,
    body_digest,
    case_status,
    file_from_webhook,
    stored_answer,
)
from tasks.workflow import Desk

logger = logging.getLogger("claimflow.api")

PROBLEM_JSON = "application/problem+json"
KINDS = {"claims": CaseKind.claim, "complaints": CaseKind.complaint, "inquiries": CaseKind.inquiry}
MAX_SOURCE_LENGTH = 48  # the actor "webhook:<source>" fits the event's 64 characters
IDEMPOTENCY_KEY_LENGTH = 200


# --- what a source sends and gets back ----------------------------------------------------------------------


class AttachmentIn(BaseModel):
    """A document, its bytes as base64 (standard alphabet, padded)."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255, examples=["police-report.pdf"])
    content_type: str = Field(
        default="application/octet-stream", max_length=100, pattern=r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$"
    )
    content_base64: str = Field(description="The file's bytes, base64; size limits apply to the decoded bytes.")
    document_type: str | None = Field(default=None, max_length=64, examples=["police_report"])


class CaseSubmission(BaseModel):
    """A claim, complaint or inquiry as a source posts it (the kind comes from the path)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer": {
                        "name": "张三",
                        "phone": "13812345678",
                        "language": "zh-CN",
                        "preferred_channel": "sms",
                    },
                    "policy_number": "P-778899",
                    "product_line": "motor",
                    "description": "Rear-ended at a traffic light",
                    "incident_date": "2026-03-01",
                    "amount": "12800.50",
                    "attachments": [
                        {"filename": "photo.jpg", "content_type": "image/jpeg", "content_base64": "/9j/4AAQSkZJRg=="}
                    ],
                }
            ]
        },
    )

    customer: CustomerCreate
    policy_number: str | None = Field(default=None, max_length=64)
    product_line: str | None = Field(default=None, max_length=64, pattern=r"^[a-z0-9_-]+$")
    jurisdiction: str = Field(default="CN", max_length=16, pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
    description: str | None = Field(default=None, max_length=20000)
    incident_date: date | None = None
    amount: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=2)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    related_case_number: str | None = Field(default=None, max_length=32, examples=["CLM-2026-000001"])
    attachments: list[AttachmentIn] = Field(default_factory=list)


class Accepted(BaseModel):
    """The answer to an accepted filing (also replayed for a repeated Idempotency-Key)."""

    case_number: str
    kind: str
    status: str
    status_url: str
    received_at: datetime
    attachments: int


class OpenStep(BaseModel):
    name: str
    status: str
    due_at: datetime | None


class CaseStatus(BaseModel):
    """What a source may see of a case it filed: no personal data."""

    case_number: str
    kind: str
    status: str
    outcome: str | None
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    open_steps: list[OpenStep]


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


# --- problems -----------------------------------------------------------------------------------------------


class ApiProblem(Exception):
    """An answer other than success, raised anywhere in a request and turned into problem+json."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.errors, self.headers = errors, headers


def problem_response(problem: ApiProblem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:claimflow:problem:{problem.slug}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors:
        body["errors"] = problem.errors
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers)


class SeenSignatures:
    """The signatures of requests without an Idempotency-Key seen in the last window, per process: the same signed
    request sent again (captured and replayed within the timestamp's tolerance) is refused instead of filing a new
    case each time. Several API processes each keep their own; a request with a key is made safe by its key."""

    def __init__(self) -> None:
        self.until: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def refuse_if_seen(self, signature: str, *, now: datetime, window: timedelta) -> None:
        with self._lock:
            if len(self.until) > 10_000:
                self.until = {s: t for s, t in self.until.items() if t > now}
            if self.until.get(signature, now) > now:
                raise SignatureRejected("this signature was used before: a request is accepted once (send an "
                                        "Idempotency-Key to retry safely)")  # fmt: skip
            self.until[signature] = now + window


class Outage:
    """One log line per request refused because the case database is unavailable, with a running count, instead of
    a traceback each (a two-minute outage under load was 2,340 lines of them). The count starts again once a
    request succeeds after the outage."""

    def __init__(self) -> None:
        self.refused = 0
        self.since: datetime | None = None
        self._lock = threading.Lock()

    def refuse(self, where: str, error: BaseException) -> None:
        with self._lock:
            if self.since is None:
                self.since = datetime.now(UTC)
            self.refused += 1
            count, since = self.refused, self.since
        kind = type(getattr(error, "orig", None) or error).__name__
        logger.warning("%s: the case database is unavailable (%s); %d request(s) refused since %s", where, kind,
                       count, f"{since:%H:%M:%S} UTC")  # fmt: skip

    def over(self) -> None:
        if self.since is not None:
            with self._lock:
                if self.since is not None:
                    logger.warning("the case database answers again after %d refused request(s)", self.refused)
                self.refused, self.since = 0, None


OUTAGE = Outage()


def malformed(detail: str) -> ApiProblem:
    return ApiProblem(400, "malformed", "Malformed request", detail)


def too_large(detail: str) -> ApiProblem:
    return ApiProblem(413, "too-large", "Content too large", detail)


def invalid(errors: list[dict[str, str]]) -> ApiProblem:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return ApiProblem(422, "invalid-field", "Invalid field", detail, errors=errors)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def validation_errors(exc: ValidationError, *, prefix: tuple[Any, ...] = ()) -> list[dict[str, str]]:
    """Each failing field of a pydantic error as ``{"field": "customer.phone", "message": ...}``."""
    return [
        {"field": _location((*prefix, *item.get("loc", ()))), "message": str(item.get("msg", "invalid"))}
        for item in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


# --- checks on the raw request ------------------------------------------------------------------------------


def _unstorable_strings(value: Any, loc: tuple[Any, ...] = ()) -> list[dict[str, str]]:
    """Strings a database cannot store: NUL characters (PostgreSQL text) and lone surrogates (not UTF-8)."""
    found: list[dict[str, str]] = []
    if isinstance(value, str):
        if "\x00" in value:
            found.append({"field": _location(loc), "message": "must not contain NUL characters"})
        else:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                found.append({"field": _location(loc), "message": "is not valid Unicode (lone surrogate)"})
    elif isinstance(value, dict):
        for key, item in value.items():
            found += _unstorable_strings(key, loc) + _unstorable_strings(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _unstorable_strings(item, (*loc, index))
    return found


def check_idempotency_key(key: str | None) -> None:
    """An ``Idempotency-Key`` header, when given, is 1 to ``IDEMPOTENCY_KEY_LENGTH`` printable ASCII characters
    (400 otherwise: a longer key was cut short, and two keys with the same start were one)."""
    if key is not None and not (0 < len(key) <= IDEMPOTENCY_KEY_LENGTH and key.isascii() and key.isprintable()):
        raise malformed(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LENGTH} printable ASCII characters")


def json_object(body: bytes) -> dict[str, Any]:
    """A POST body as a JSON object every database can store, or the problem that says what is wrong with it: not
    JSON, nested too deeply, an integer of more digits than Python converts (its ``ValueError`` was a 500), not an
    object (400 or 422), or a string holding NUL or a lone surrogate (422, naming the field)."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise malformed(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise malformed("the body nests too deeply") from None
    except ValueError as exc:  # int() refusing thousands of digits (sys.set_int_max_str_digits)
        raise malformed(f"the body holds a number that cannot be read: {str(exc)[:120]}") from None
    if not isinstance(raw, dict):
        raise invalid([{"field": "body", "message": "must be a JSON object"}])
    unstorable = _unstorable_strings(raw)
    if unstorable:
        raise invalid(unstorable)
    return raw


def is_json(content_type: str | None) -> bool:
    """``application/json`` or any ``application/*+json``, with or without parameters."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise malformed("Content-Length is not a number")
        if int(declared) > limit:
            raise too_large(f"the body is {int(declared)} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_attachments(items: list[AttachmentIn], settings: Settings) -> list[IncomingAttachment]:
    """Decode base64 and enforce the count, per-file and total limits (413) and the encoding (422)."""
    if len(items) > settings.api_attachments_max_count:
        raise too_large(f"{len(items)} attachments; at most {settings.api_attachments_max_count} are accepted")
    decoded: list[IncomingAttachment] = []
    total = 0
    for index, item in enumerate(items):
        field = f"attachments[{index}].content_base64"
        if len(item.content_base64) // 4 * 3 > settings.api_attachment_max_bytes + 3:
            raise too_large(f"{field}: larger than {settings.api_attachment_max_bytes} bytes")
        try:
            content = base64.b64decode(item.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise invalid([{"field": field, "message": "is not valid base64"}]) from None
        if len(content) > settings.api_attachment_max_bytes:
            raise too_large(f"{field}: {len(content)} bytes; at most {settings.api_attachment_max_bytes} per file")
        total += len(content)
        if total > settings.api_attachments_max_total_bytes:
            raise too_large(f"attachments: more than {settings.api_attachments_max_total_bytes} bytes in all")
        decoded.append(IncomingAttachment(item.filename, item.content_type, content, item.document_type))
    return decoded


def to_case(kind: CaseKind, submission: CaseSubmission) -> CaseCreate:
    fields = submission.model_dump(exclude={"attachments", "amount", "customer"})
    try:
        return CaseCreate.model_validate(
            {
                **fields,
                "kind": kind,
                "channel": Channel.webhook,
                "amount_claimed": submission.amount,
                "customer": submission.customer,
            }
        )
    except ValidationError as exc:
        raise invalid(validation_errors(exc)) from None


# --- launching runs after the commit ------------------------------------------------------------------------


class Launcher:
    """Starts new cases' flow runs after their answer has gone, a few at a time, each within a timeout.

    When Prefect does not answer, launching pauses for ``backoff`` seconds (the cases stay without a run and
    the reconciler starts them), so a dead server costs the API one timeout, not one per request.
    """

    def __init__(self, engine: Engine, *, timeout: float, workers: int = 4, backoff: float = 30.0) -> None:
        self.engine, self.timeout, self.workers, self.backoff = engine, timeout, workers, backoff
        self.queue: asyncio.Queue[int] = asyncio.Queue(maxsize=10_000)
        self.paused_until = 0.0
        self.started = self.failed = self.skipped = self.pending = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def submit(self, case_id: int) -> None:
        try:
            self.queue.put_nowait(case_id)
        except asyncio.QueueFull:
            self.skipped += 1  # the reconciler starts it
            return
        self.pending += 1

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being launched."""
        return self.pending == 0

    async def _work(self) -> None:
        while True:
            case_id = await self.queue.get()
            try:
                await self._launch(case_id)
            finally:
                self.pending -= 1

    async def _launch(self, case_id: int) -> None:
        if time.monotonic() < self.paused_until:
            self.skipped += 1
            return
        from tasks.runs import launch_case

        try:
            async with asyncio.timeout(self.timeout):
                await launch_case(self.engine, case_id=case_id)
        except Exception as exc:  # Prefect down or slow: the reconciler starts the run
            self.failed += 1
            self.paused_until = time.monotonic() + self.backoff
            logger.warning(
                "case id %s: flow run not started (%s); the reconciler will start it", case_id, type(exc).__name__
            )
            return
        self.started += 1
        try:
            from flows.delivery import announce_queued

            announce_queued()
        except Exception as exc:  # best effort: the delivery schedule picks the message up anyway
            logger.info("outbox announcement not sent (%s)", type(exc).__name__)


# --- the app ------------------------------------------------------------------------------------------------


@dataclass
class Intake:
    """What the endpoints share: settings, engine, desk rules, clock and launcher."""

    settings: Settings
    engine: Engine
    desk: Desk
    clock: Callable[[], datetime]
    launcher: Launcher | None = None
    replays: SeenSignatures = field(default_factory=lambda: SeenSignatures())

    def secrets(self, source: str | None) -> list[str]:
        if not source:
            return []
        return [s.get_secret_value() for s in self.settings.webhook_secrets.get(source, [])]

    def authenticate(self, request: Request, *, body: bytes, v1_body: bytes | None = None) -> str:
        """The verified source of a request; 401 otherwise.

        A version 2 signature covers the method, the path as sent, the source, the Idempotency-Key and ``body``; a
        version 1 signature (until ``CLAIMFLOW_WEBHOOK_V1_UNTIL``) the timestamp and ``v1_body`` (default ``body``;
        a GET signs its path). A signature seen before within the tolerance is refused as a replay when the request
        has no Idempotency-Key (with one, a retry gets the first answer again and the key cannot be changed)."""
        source = request.headers.get("x-claimflow-source")
        key = request.headers.get("idempotency-key")
        signature = request.headers.get("x-claimflow-signature")
        now = self.clock()
        tolerance = timedelta(seconds=self.settings.webhook_tolerance_seconds)
        try:
            if not source:
                raise SignatureRejected("X-Claimflow-Source is missing")
            raw_path = request.scope.get("raw_path") or request.url.path.encode("utf-8")
            until = self.settings.webhook_v1_until
            verify(
                self.secrets(source),
                timestamp=request.headers.get("x-claimflow-timestamp"),
                signature=signature,
                body=body if v1_body is None else v1_body,
                now=now,
                tolerance=tolerance,
                request=SignedRequest(request.method, raw_path.decode("latin-1"), source, key or "", body),
                accept_v1=until is not None and now.date() <= until,
            )
            if key is None and signature is not None:
                self.replays.refuse_if_seen(f"{source} {signature.strip().lower()}", now=now, window=tolerance * 2)
        except SignatureRejected as exc:
            raise ApiProblem(
                401,
                "unauthenticated",
                "Signature refused",
                str(exc),
                headers={"WWW-Authenticate": 'Claimflow-HMAC-SHA256 realm="claimflow"'},
            ) from None
        assert source is not None
        return source

    def file(
        self, *, source: str, data: CaseCreate, attachments: list[IncomingAttachment], key: str | None, digest: str
    ) -> Answer:
        """File in one transaction; replay the stored answer for a known key (also after losing a race)."""
        for _ in range(3):
            store = AttachmentStore(self.settings.data_dir)
            try:
                with session_scope(self.engine) as session:
                    answer = None
                    if key is not None:
                        answer = stored_answer(session, source=source, idempotency_key=key, body_sha256=digest)
                    if answer is None:
                        answer = file_from_webhook(
                            session,
                            self.desk,
                            source=source,
                            data=data,
                            attachments=attachments,
                            idempotency_key=key,
                            body_sha256=digest,
                            store=store,
                            now=self.clock(),
                        )
            except IntegrityError:
                store.discard()
                if key is None:
                    raise
                continue  # a twin with the same key committed first: the next pass replays its answer
            except OperationalError:  # the connection lost, perhaps after COMMIT: keep what was committed
                store.discard_uncommitted(self.engine)
                raise
            except BaseException:
                store.discard()
                raise
            store.keep()
            return answer
        raise RuntimeError("the idempotency record could neither be written nor read")

    def status(self, *, source: str, number: str) -> dict[str, Any]:
        with Session(self.engine) as session:
            return case_status(session, number=number, source=source)


def _problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    meaning = {
        400: "Malformed request or headers",
        401: "Missing or wrong signature, unknown source, stale timestamp",
        404: "No such case filed by this source",
        409: "Idempotency-Key reused with another body",
        413: "Body or attachment too large",
        415: "Body is not JSON",
        422: "A field is invalid (errors names it)",
        503: "Database unavailable; retry with the same Idempotency-Key",
    }
    return {
        code: {
            "description": meaning[code],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in codes
    }


_SOURCE = Annotated[str | None, Header(alias="X-Claimflow-Source", description="The source's name.")]
_TIMESTAMP = Annotated[str | None, Header(alias="X-Claimflow-Timestamp", description="Unix seconds.")]
_SIGNATURE = Annotated[
    str | None,
    Header(alias="X-Claimflow-Signature", description='Hex HMAC-SHA256 of timestamp + "." + raw body (GET: path).'),
]
_KEY = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Same key and body: same answer; same key, other body: 409. 1 to 200 printable ASCII characters.",
        # documented here, checked by check_idempotency_key (a 400 that says what is wrong, as for the feedback)
        json_schema_extra={"minLength": 1, "maxLength": IDEMPOTENCY_KEY_LENGTH},
    ),
]


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
        if launch:
            intake.launcher = Launcher(engine, timeout=settings.api_launch_timeout_seconds)
            intake.launcher.start()
        app.state.intake = intake
        try:
            yield
        finally:
            if intake.launcher is not None:
                await intake.launcher.stop()

    app = FastAPI(
        title="claimflow intake",
        version="1",
        summary="File claims, complaints and inquiries; ask for their status.",
        description=__doc__,
        lifespan=lifespan,
    )
    app.state.intake = intake

    @app.exception_handler(ApiProblem)
    async def _problem(_request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        return problem_response(
            ApiProblem(
                exc.status_code,
                title.lower().replace(" ", "-"),
                title,
                str(exc.detail),
                headers=getattr(exc, "headers", None),
            )
        )

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected %s in the intake API", type(exc).__name__, exc_info=exc)
        return problem_response(
            ApiProblem(
                500,
                "internal",
                "Internal error",
                "the request could not be handled; nothing was filed unless a 202 was answered",
            )
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _location(e.get("loc", ())), "message": str(e.get("msg", "invalid"))} for e in exc.errors()]
        return problem_response(invalid(errors))

    async def submit(kind: CaseKind, request: Request) -> JSONResponse:
        body = await read_body(request, settings.api_max_body_bytes)
        source = intake.authenticate(request, body=body)
        if not is_json(request.headers.get("content-type")):
            raise ApiProblem(
                415, "unsupported-media-type", "Unsupported media type", "send the case as application/json"
            )
        key = request.headers.get("idempotency-key")
        check_idempotency_key(key)
        raw = json_object(body)
        try:
            submission = CaseSubmission.model_validate(raw)
        except ValidationError as exc:
            raise invalid(validation_errors(exc)) from None
        data = to_case(kind, submission)
        attachments = decode_attachments(submission.attachments, settings)
        try:
            answer = await run_in_threadpool(
                intake.file, source=source, data=data, attachments=attachments, key=key, digest=body_digest(body)
            )
        except IdempotencyConflict as exc:
            raise ApiProblem(409, "idempotency-conflict", "Idempotency conflict", str(exc)) from None
        except NotFound as exc:
            raise invalid([{"field": "related_case_number", "message": str(exc)}]) from None
        except InvalidInput as exc:
            raise invalid([{"field": "body", "message": str(exc)}]) from None
        except OperationalError as exc:
            OUTAGE.refuse(f"webhook {source}", exc)
            raise ApiProblem(
                503,
                "unavailable",
                "Service unavailable",
                "the case database cannot be reached; retry with the same Idempotency-Key",
                headers={"Retry-After": "5"},
            ) from None
        OUTAGE.over()
        if not answer.replayed and answer.case_id is not None and intake.launcher is not None:
            intake.launcher.submit(answer.case_id)  # after the commit, never inside it
        headers = {"Location": answer.body.get("status_url", "")}
        if answer.replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)

    post_doc: dict[str, Any] = {
        "status_code": 202,
        "response_model": Accepted,
        "responses": _problem_responses(400, 401, 409, 413, 415, 422, 503),
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CaseSubmission"}}},
            }
        },
    }

    def endpoint_for(kind: CaseKind) -> Callable[..., Any]:
        async def endpoint(
            request: Request,
            _source: _SOURCE = None,
            _timestamp: _TIMESTAMP = None,
            _signature: _SIGNATURE = None,
            _key: _KEY = None,
        ) -> JSONResponse:
            return await submit(kind, request)

        endpoint.__doc__ = f"File a {kind.value}. Answers 202 with the case number once it is committed."
        return endpoint

    for path, kind in KINDS.items():
        app.add_api_route(
            f"/v1/{path}",
            endpoint_for(kind),
            methods=["POST"],
            name=f"file_{kind.value}",
            summary=f"File a {kind.value}",
            **post_doc,
        )

    @app.get(
        "/v1/cases/{number}",
        response_model=CaseStatus,
        responses=_problem_responses(400, 401, 404, 503),
        summary="Status of a case this source filed",
    )
    async def get_status(
        number: str,
        request: Request,
        _source: _SOURCE = None,
        _timestamp: _TIMESTAMP = None,
        _signature: _SIGNATURE = None,
    ) -> JSONResponse:
        """The case's state and open steps with their due times; no personal data. Sign ``timestamp + "." +
        path``."""
        raw_path = request.scope.get("raw_path") or request.url.path.encode("utf-8")
        source = intake.authenticate(request, body=b"", v1_body=raw_path)  # v1 signed the path exactly as sent
        try:
            found = await run_in_threadpool(intake.status, source=source, number=number)
        except NotFound as exc:
            raise ApiProblem(404, "not-found", "Not found", str(exc)) from None
        except OperationalError:
            raise ApiProblem(
                503,
                "unavailable",
                "Service unavailable",
                "the case database cannot be reached",
                headers={"Retry-After": "5"},
            ) from None
        return JSONResponse(found)

    from claimflow.feedback_api import add_feedback_routes  # it builds on this module

    add_feedback_routes(app, intake)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            from claimflow.feedback_api import FeedbackIn  # it builds on this module

            for model in (CaseSubmission, Problem, FeedbackIn):
                generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(generated.pop("$defs", {}))
                components[model.__name__] = generated
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def sign_headers(
    source: str,
    secret: str,
    body: bytes,
    *,
    now: datetime | None = None,
    method: str = "POST",
    path: str | None = None,
    key: str | None = None,
) -> dict[str, str]:
    """The headers that sign a request for ``source`` (for clients, tests and the benchmark): version 2 when the
    ``path`` is given (with the method and the Idempotency-Key, which it then sets too), else version 1 (``body``:
    the raw body, or for a GET the path)."""
    from models.signing import sign, sign_v2

    timestamp = str(int((now or datetime.now(UTC)).timestamp()))
    if path is None:
        signature = sign(secret, timestamp, body)
    else:
        signature = sign_v2(secret, timestamp, SignedRequest(method, path, source, key or "", body))
    headers = {"X-Claimflow-Source": source, "X-Claimflow-Timestamp": timestamp, "X-Claimflow-Signature": signature}
    if path is not None and key is not None:
        headers["Idempotency-Key"] = key
    return headers

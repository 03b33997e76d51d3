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
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from claimflow.db import session_scope
from claimflow.settings import Settings
from claimflow.web.groupcommit import Filing, GroupCommit

if TYPE_CHECKING:
    from claimflow.web.filer import RemoteCommit
from claimflow.web.http import (
    IDEMPOTENCY_KEY_LENGTH,
    OUTAGE,
    ApiProblem,
    check_idempotency_key,
    invalid,
    is_json,
    json_object,
    problem_responses,
    read_body,
    too_large,
    validation_errors,
)
from models.enums import CaseKind, Channel
from models.errors import InvalidInput, NotFound
from models.signing import SignatureRejected, SignedRequest, verify
from models.tables import CaseCreate, CustomerCreate
from tasks.cases import lock_numbering
from tasks.intake import (
    Answer,
    AttachmentStore,
    IdempotencyConflict,
    IncomingAttachment,
    Posted,
    body_digest,
    case_status,
    file_from_webhook,
    file_many_from_webhook,
    stored_answer,
)
from tasks.workflow import Desk, lock_loads

logger = logging.getLogger("claimflow.api")

KINDS = {"claims": CaseKind.claim, "complaints": CaseKind.complaint, "inquiries": CaseKind.inquiry}
MAX_SOURCE_LENGTH = 48  # the actor "webhook:<source>" fits the event's 64 characters


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


YIELD_SECONDS = 0.05


class Launcher:
    """Starts new cases' flow runs after their answer has gone, a few at a time, each within a timeout.

    When Prefect does not answer, launching pauses for ``backoff`` seconds (the cases stay without a run and
    the reconciler starts them), so a dead server costs the API one timeout, not one per request.

    Filing comes first: while ``yield_to`` says filings are waiting or being written (the group commit is busy),
    no run is started from here. In a surge of 3,000 claims the launches (each a few calls to the Prefect server,
    which then shares the two cores with the API) halved the filings a second: 86 against 147 claims/s
    (``bench/surge.py``). A case's deadline, acknowledgement and worklist entry are committed with it and do not
    wait for its run; the runs of a surge are started once it ebbs, or by the reconciler, a page each pass.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        timeout: float,
        workers: int = 4,
        backoff: float = 30.0,
        yield_to: Callable[[], bool] | None = None,
    ) -> None:
        self.engine, self.timeout, self.workers, self.backoff = engine, timeout, workers, backoff
        self.yield_to = yield_to
        self.in_flight = 0
        self.queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue(maxsize=10_000)
        self.paused_until = 0.0
        self.started = self.failed = self.skipped = self.pending = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        # Prefect's client is loaded now, as the API starts: loaded by the first launch, on the event loop, it held
        # every request for one to two seconds (the first filings after a start: p99 1.9 s, 0.9 s with it loaded here)
        with kept_loggers("uvicorn", "uvicorn.error", "uvicorn.access"):
            import flows.delivery  # noqa: F401
            import tasks.answers
            import tasks.runs  # noqa: F401

        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def submit(self, case_id: int, *, job: str = "launch") -> None:
        """After the commit: ``launch`` a new case's run, or ``wake`` a case's run that waits on a form the case
        has moved past (``tasks.answers.wake_case``: the customer's last missing document)."""
        try:
            self.queue.put_nowait((job, case_id))
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
            job, case_id = await self.queue.get()
            while self.yield_to is not None and self.yield_to():
                await asyncio.sleep(YIELD_SECONDS)  # filings first: their runs are started once none wait
            self.in_flight += 1
            try:
                await (self._wake(case_id) if job == "wake" else self._launch(case_id))
            finally:
                self.in_flight -= 1
                self.pending -= 1

    async def _wake(self, case_id: int) -> None:
        from tasks.answers import wake_case

        try:
            async with asyncio.timeout(self.timeout):
                await wake_case(self.engine, case_id=case_id)
        except Exception as exc:  # Prefect down or slow: the reconciler's next pass wakes the run
            logger.warning("case id %s: its run was not woken (%s); the reconciler will", case_id, type(exc).__name__)

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


@contextmanager
def kept_loggers(*names: str) -> Iterator[None]:
    """Put the named loggers' level, handlers and propagation back as they were after the block: Prefect's logging
    set-up, when first imported, set uvicorn's loggers to WARNING and took their handlers, so an operator running
    'claimflow api' never saw "Application startup complete" nor where it listens."""
    kept = {name: (lg.level, list(lg.handlers), lg.propagate) for name in names if (lg := logging.getLogger(name))}
    try:
        yield
    finally:
        for name, (level, handlers, propagate) in kept.items():
            restored = logging.getLogger(name)
            restored.setLevel(level)
            restored.handlers[:] = handlers
            restored.propagate = propagate


# --- the app ------------------------------------------------------------------------------------------------


@dataclass
class Intake:
    """What the endpoints share: settings, engine, desk rules, clock and launcher."""

    settings: Settings
    engine: Engine
    desk: Desk
    clock: Callable[[], datetime]
    launcher: Launcher | None = None
    committer: GroupCommit | RemoteCommit | None = None
    """Where filings go: the group commit's writer thread here, or the filing process (``claimflow.web.filer``)."""
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

    def group_commit(self) -> GroupCommit:
        """The writer that files this desk's filings in batches (started by the caller)."""
        return GroupCommit(
            self.engine,
            self.file_one,
            data_dir=self.settings.data_dir,
            max_batch=self.settings.api_group_commit_max,
            prepare=self.prepare_batch,
            file_many=self.file_many,
        )

    def prepare_batch(self, session: Session, batch: list[Filing]) -> None:
        """The locks a batch of filings takes first, in a fixed order: the number counters of its kinds, then the
        people's load rows (``tasks.cases.lock_numbering``, ``tasks.workflow.lock_loads``)."""
        lock_numbering(session, kinds={f.data.kind for f in batch}, year=self.clock().year)
        lock_loads(session)

    def file_one(self, session: Session, filing: Filing, store: AttachmentStore) -> Answer:
        """File ``filing`` in ``session`` (the caller commits), or replay the answer stored under its key."""
        answer = None
        if filing.key is not None:
            answer = stored_answer(session, source=filing.source, idempotency_key=filing.key, body_sha256=filing.digest)
        if answer is None:
            answer = file_from_webhook(
                session,
                self.desk,
                source=filing.source,
                data=filing.data,
                attachments=filing.attachments,
                idempotency_key=filing.key,
                body_sha256=filing.digest,
                store=store,
                now=self.clock(),
            )
        return answer

    def file_many(self, session: Session, batch: list[Filing], store: AttachmentStore) -> dict[int, Answer]:
        """File at once the filings of ``batch`` that can be (``tasks.intake.file_many_from_webhook``); the caller
        commits. The others are for ``file_one``."""
        posts = [Posted(f.source, f.data, f.attachments, f.key, f.digest) for f in batch]
        return file_many_from_webhook(session, self.desk, posts, store=store, now=self.clock())

    async def file_async(
        self, *, source: str, data: CaseCreate, attachments: list[IncomingAttachment], key: str | None, digest: str
    ) -> Answer:
        """File through the group commit when it runs (``claimflow.web.groupcommit``), else in a transaction of its
        own on a worker thread."""
        if self.committer is not None and self.committer.running:
            return await self.committer.file(Filing(source, data, attachments, key, digest))
        return await run_in_threadpool(self.file, source=source, data=data, attachments=attachments, key=key,
                                       digest=digest)  # fmt: skip

    def file(
        self, *, source: str, data: CaseCreate, attachments: list[IncomingAttachment], key: str | None, digest: str
    ) -> Answer:
        """File in one transaction; replay the stored answer for a known key (also after losing a race)."""
        filing = Filing(source, data, attachments, key, digest)
        for _ in range(3):
            store = AttachmentStore(self.settings.data_dir)
            try:
                with session_scope(self.engine) as session:
                    answer = self.file_one(session, filing, store)
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


def _header(name: str, description: str, *, required: bool = True, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description,
            "schema": {"type": "string", **schema}}  # fmt: skip


SIGNED_HEADERS = [
    _header("X-Claimflow-Source", "The source's name."),
    _header("X-Claimflow-Timestamp", "Unix seconds."),
    _header("X-Claimflow-Signature", 'Hex HMAC-SHA256 of timestamp + "." + raw body (GET: path).'),
]
"""The signature's headers, for the OpenAPI document only. They are read from the request by ``Intake.authenticate``
(a 401 that says what is missing): declared as FastAPI ``Header`` parameters, FastAPI resolved and validated each of
them on every request, a fifth of the event loop's time under load (``bench/intake.py`` profiled with py-spy)."""

IDEMPOTENCY_HEADER = _header(
    "Idempotency-Key",
    "Same key and body: same answer; same key, other body: 409. 1 to 200 printable ASCII characters.",
    required=False,
    minLength=1,
    maxLength=IDEMPOTENCY_KEY_LENGTH,
)  # checked by check_idempotency_key (a 400 that says what is wrong, as for the feedback)


INTAKE_TAG = "Cases"
"""The reference's group for filing and status (Swagger UI called the operations without one "default")."""


def add_intake_routes(app: FastAPI, intake: Intake) -> None:
    """``POST /v1/claims``, ``/v1/complaints``, ``/v1/inquiries`` and ``GET /v1/cases/{number}``."""
    settings = intake.settings

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
            answer = await intake.file_async(
                source=source, data=data, attachments=attachments, key=key, digest=body_digest(body)
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
        "responses": problem_responses(400, 401, 409, 413, 415, 422, 503),
        "openapi_extra": {
            "parameters": [*SIGNED_HEADERS, IDEMPOTENCY_HEADER],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CaseSubmission"}}},
            },
        },
    }

    a_kind = {CaseKind.claim: "a claim", CaseKind.complaint: "a complaint", CaseKind.inquiry: "an inquiry"}

    def endpoint_for(kind: CaseKind) -> Callable[..., Any]:
        async def endpoint(request: Request) -> JSONResponse:
            return await submit(kind, request)

        endpoint.__doc__ = f"File {a_kind[kind]}. Answers 202 with the case number once it is committed."
        return endpoint

    for path, kind in KINDS.items():
        app.add_api_route(
            f"/v1/{path}",
            endpoint_for(kind),
            methods=["POST"],
            name=f"file_{kind.value}",
            summary=f"File {a_kind[kind]}",
            tags=[INTAKE_TAG],
            **post_doc,
        )

    @app.get(
        "/v1/cases/{number}",
        response_model=CaseStatus,
        responses=problem_responses(400, 401, 404, 503),
        summary="Status of a case this source filed",
        tags=[INTAKE_TAG],
        openapi_extra={"parameters": SIGNED_HEADERS},
    )
    async def get_status(number: str, request: Request) -> JSONResponse:
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

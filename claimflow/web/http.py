"""What every endpoint of the web app shares: RFC 9457 problems (``application/problem+json``), checks on the raw
request (its size, JSON, strings a database cannot store, the Idempotency-Key), the outage log and the handlers that
turn any error into a problem, never a traceback."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from jinja2 import Environment
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.survey import Refusal

logger = logging.getLogger("claimflow.api")

PROBLEM_JSON = "application/problem+json"
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                           "frame-ancestors 'none'; base-uri 'none'"}  # fmt: skip
"""Every HTML page: never cached or framed, no referrer leaking a signed link, no script, forms post back only."""
IDEMPOTENCY_KEY_LENGTH = 200
REFUSAL_STATUS = {Refusal.forged: 403, Refusal.unknown: 404, Refusal.expired: 410, Refusal.used: 410,
                  Refusal.revoked: 410}  # fmt: skip
"""The HTTP status of a page whose link does not open (``models.survey.Refusal``)."""


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


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
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


def install_problem_handlers(app: FastAPI) -> None:
    """Every error answered as a problem: raised ``ApiProblem``, 404/405, invalid request fields, and a bug (logged
    with its traceback, answered 500 without one)."""

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


@cache
def pages() -> Environment:
    """The Jinja environment of the web pages (``templates/`` here): autoescaped, strict, the messages' filters."""
    from models.messages import make_environment

    return make_environment(TEMPLATES)

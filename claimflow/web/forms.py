"""The online claim and complaint forms: ``GET``/``POST /claim`` and ``/complaint`` (no login, no script).

A post is filed through the webhook's intake (``Intake.file``: routing, deadlines, the acknowledgement, one
transaction) as the source ``online-form``, idempotent on the form's token: a double tap, or the same form sent
again, gets the case it filed, not a second one. The answer shows the case number and the link to its status
page at once. Abuse limits: the body's size (``CLAIMFLOW_FORM_MAX_BYTES``), each field's length, and the filings per
client address and hour (``CLAIMFLOW_FORM_FILINGS_PER_HOUR``), each refused with a page that says which.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from claimflow.web.http import OUTAGE, PAGE_HEADERS, ApiProblem, pages, read_body
from claimflow.web.intake import Intake
from models.errors import InvalidInput, NotFound
from models.survey import LANGUAGES, page_language
from models.tables import Case
from models.webforms import KINDS, LIMITS, TOKEN, read_form, words_for
from tasks.intake import IdempotencyConflict
from tasks.status import status_url

SOURCE = "online-form"


class FilingRate:
    """Filings per client address in the last hour, per process (a replay is not a filing)."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self.seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self.seen.setdefault(address, deque())
        while times and times[0] <= now - 3600:
            times.popleft()
        return times

    def allowed(self, address: str) -> bool:
        with self._lock:
            if len(self.seen) > 50_000:
                self.seen = {a: t for a, t in self.seen.items() if t and t[-1] > time.monotonic() - 3600}
            return len(self._recent(address, time.monotonic())) < self.per_hour

    def count(self, address: str) -> None:
        with self._lock:
            self._recent(address, time.monotonic()).append(time.monotonic())


def add_form_routes(app: FastAPI, intake: Intake) -> None:
    settings = intake.settings
    rate = FilingRate(settings.form_filings_per_hour)

    def page(kind: str, language: str, large: bool, *, status_code: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("values", {})
        values.setdefault("problems", {})
        words = words_for(language)
        words["title"] = words[f"title_{kind}"]
        html = pages().get_template("webform.html.j2").render(
            kind=kind, lang=language, other_lang=next(c for c in LANGUAGES if c != language), large=large,
            t=words, limits=LIMITS, phone=settings.desk_phone or settings.desk_email,
            limit=settings.form_max_bytes, **values,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)

    def refused(kind: str, language: str, large: bool, reason: str, status_code: int) -> HTMLResponse:
        return page(kind, language, large, state="refused", reason=reason, status_code=status_code)

    def show(kind: str, lang: str | None, large: str | None) -> HTMLResponse:
        language = page_language(lang, settings.default_language)
        return page(kind, language, large == "1", state="form", token=secrets.token_urlsafe(24))

    async def post(kind: str, request: Request) -> HTMLResponse:
        language, large = page_language(request.query_params.get("lang"), settings.default_language), False
        try:
            body = await read_body(request, settings.form_max_bytes)
        except ApiProblem:
            return refused(kind, language, large, "too_big", 413)
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=40)
        except (UnicodeDecodeError, ValueError):
            fields = {}
        language = page_language((fields.get("lang") or [""])[0] or None, settings.default_language)
        large = (fields.get("large") or [""])[0] == "1"
        token = (fields.get("form_token") or [""])[0]
        result = read_form(kind, fields, language=language, today=intake.clock().date())
        if not TOKEN.match(token):  # not a form we gave out: the same form again, with a token of ours
            result.problems.setdefault("form", "")
            token = secrets.token_urlsafe(24)
        if result.case is None or result.problems:
            return page(kind, language, large, state="form", token=token, values=result.values,
                        problems=result.problems, status_code=422)  # fmt: skip
        address = request.client.host if request.client else "-"
        if not rate.allowed(address):
            return refused(kind, language, large, "too_many", 429)
        digest = hashlib.sha256(json.dumps(result.values, sort_keys=True).encode()).hexdigest()
        try:
            answer = await intake.file_async(source=SOURCE, data=result.case, attachments=[], key=token, digest=digest)
        except IdempotencyConflict:
            return refused(kind, language, large, "conflict", 409)
        except (NotFound, InvalidInput):
            problems = {"related_case_number": words_for(language)["bad_value"]}
            return page(kind, language, large, state="form", token=token, values=result.values, problems=problems,
                        status_code=422)  # fmt: skip
        except OperationalError as exc:
            OUTAGE.refuse(f"online {kind} form", exc)
            return refused(kind, language, large, "unavailable", 503)
        OUTAGE.over()
        number = str(answer.body.get("case_number", ""))
        if not answer.replayed:
            rate.count(address)
            if answer.case_id is not None and intake.launcher is not None:
                intake.launcher.submit(answer.case_id)  # after the commit, as for the webhook
        with Session(intake.engine) as session:
            case_id = session.exec(select(Case.id).where(Case.number == number)).one()
        assert case_id is not None
        link = status_url(settings, case_id=case_id, now=intake.clock())
        return page(kind, language, large, state="done", number=number, replayed=answer.replayed,
                    status_link=link[link.index("/status/"):], status_code=200 if answer.replayed else 201)  # fmt: skip

    def routes_for(kind: str) -> None:
        def get_form(lang: str | None = Query(None, max_length=10),
                     large: str | None = Query(None, max_length=2)) -> HTMLResponse:  # fmt: skip
            return show(kind, lang, large)

        async def post_form(request: Request) -> HTMLResponse:
            return await post(kind, request)

        app.add_api_route(f"/{kind}", get_form, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
        app.add_api_route(f"/{kind}", post_form, methods=["POST"], response_class=HTMLResponse,
                          include_in_schema=False)  # fmt: skip

    for kind in KINDS:
        routes_for(kind)

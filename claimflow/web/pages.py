"""The public pages of the desk: ``/standards``, the published service standards (no login), and
``/status/<token>``, a customer's own case from the signed link in their messages (``tasks.status``).

The page is built by ``models.standards`` from the rules the desk runs on (its ``Desk``: the house pack and the
regulators' packs per jurisdiction), the document lists and the settings, in zh-CN or en (``?lang=``, default the
desk's language) and in large text (``?large=1``). It needs no JavaScript and no cookie.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from claimflow.db import session_scope
from claimflow.web.http import PAGE_HEADERS, REFUSAL_STATUS, pages
from claimflow.web.intake import Intake
from models.routing import DEFAULT_DOCUMENTS, DOCUMENTS
from models.standards import LANGUAGES, build
from models.status import PAGE_TEXT as STATUS_TEXT
from models.survey import LinkRefused, page_language
from tasks.status import Uploaded, UploadRefused, open_status, upload_document


def add_page_routes(app: FastAPI, intake: Intake) -> None:
    @app.get("/standards", response_class=HTMLResponse, include_in_schema=False)
    def standards(lang: str | None = Query(None, max_length=10),
                  large: str | None = Query(None, max_length=2)) -> HTMLResponse:  # fmt: skip
        settings, rules = intake.settings, intake.desk.rules
        language = page_language(lang, settings.default_language)
        content = build(
            house=rules.house, regulators=rules.regulators, outside_bodies=settings.outside_bodies,
            documents=DOCUMENTS, default_documents=DEFAULT_DOCUMENTS,
            second_approval=settings.second_approval_threshold, phone=settings.desk_phone, email=settings.desk_email,
            language=language,
        )  # fmt: skip
        other = next(code for code in LANGUAGES if code != language)
        html = (
            pages()
            .get_template("standards.html.j2")
            .render(lang=language, other_lang=other, large=large == "1", t=content.text, s=content)
        )
        headers = {**PAGE_HEADERS, "Cache-Control": "public, max-age=300"}  # the same for everyone; no token in it
        return HTMLResponse(html, headers=headers)


def size_words(size: int) -> str:
    """``10 MB``, ``512 KB``."""
    return f"{size / 1_048_576:g} MB" if size >= 1_048_576 else f"{size // 1024} KB"


def add_status_routes(app: FastAPI, intake: Intake) -> None:
    settings = intake.settings
    limit = settings.api_attachment_max_bytes

    def render(token: str, lang: str | None, large: bool, *, sent: bool = False, upload_problem: str | None = None,
               status_code: int = 200) -> HTMLResponse:  # fmt: skip
        """The customer's own case, from the signed link in their messages; a link that does not open says why,
        with the desk's phone."""
        language = page_language(lang, settings.default_language)  # a link that does not open: no customer known
        values: dict[str, Any] = {"page": None, "reason": None}
        try:
            with Session(intake.engine) as session:
                values["page"] = found = open_status(session, settings, token, asked=lang, now=intake.clock())
            language = found.language
        except LinkRefused as refused:
            values["reason"], status_code = refused.reason.value, REFUSAL_STATUS.get(refused.reason, 403)
        html = pages().get_template("status.html.j2").render(
            lang=language, other_lang=next(c for c in LANGUAGES if c != language), large=large,
            t=STATUS_TEXT[language], phone=settings.desk_phone or settings.desk_email, email=settings.desk_email,
            tz=settings.office_timezone, token=token, sent=sent, upload_problem=upload_problem,
            limit=size_words(limit), **values,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)

    @app.get("/status/{token}", response_class=HTMLResponse, include_in_schema=False)
    def case_status_page(token: str, lang: str | None = Query(None, max_length=10),
                         large: str | None = Query(None, max_length=2),
                         sent: str | None = Query(None, max_length=2)) -> HTMLResponse:  # fmt: skip
        return render(token, lang, large == "1", sent=sent == "1")

    @app.post("/status/{token}/documents", response_class=HTMLResponse, include_in_schema=False)
    async def send_document(token: str, request: Request, lang: str | None = Query(None, max_length=10),
                            large: str | None = Query(None, max_length=2)) -> Response:  # fmt: skip
        """A missing document sent from the page (``tasks.status.upload_document``); then back to the page."""
        big = large == "1"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + 65_536:  # refused before a byte of it is read
            return render(token, lang, big, upload_problem="too_big", status_code=413)
        try:
            form = await request.form(max_files=1, max_fields=4)
        except Exception:  # a malformed or oversized multipart body
            return render(token, lang, big, upload_problem="empty", status_code=400)
        upload, document = form.get("file"), form.get("document")
        if not isinstance(upload, UploadFile) or not isinstance(document, str):
            return render(token, lang, big, upload_problem="empty", status_code=422)
        data = await upload.read(limit + 1)
        await form.close()
        try:
            uploaded = await run_in_threadpool(store_upload, token, document, upload.filename or "", data)
        except UploadRefused as refused:
            code = {"too_big": 413, "wrong_type": 415}.get(refused.reason, 422)
            return render(token, lang, big, upload_problem=refused.reason, status_code=code)
        except LinkRefused:
            return render(token, lang, big)  # the page says why the link does not open
        if uploaded.restarted and intake.launcher is not None:  # the run still waits on the documents form
            intake.launcher.submit(uploaded.case_id, job="wake")
        query = urlencode({"lang": lang or "", "large": "1" if big else "0", "sent": "1"})
        return RedirectResponse(f"/status/{token}?{query}", status_code=303, headers=PAGE_HEADERS)

    def store_upload(token: str, document: str, filename: str, data: bytes) -> Uploaded:
        with session_scope(intake.engine) as session:
            return upload_document(session, intake.desk, token=token, document_type=document, filename=filename,
                                   data=data, now=intake.clock())  # fmt: skip

"""The public pages of the desk: ``/standards``, the published service standards (no login), and
``/status/<token>``, a customer's own case from the signed link in their messages (``tasks.status``).

The page is built by ``models.standards`` from the rules the desk runs on (its ``Desk``: the house pack and the
regulators' packs per jurisdiction), the document lists and the settings, in zh-CN or en (``?lang=``, default the
desk's language) and in large text (``?large=1``). It needs no JavaScript and no cookie.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from claimflow.web.http import PAGE_HEADERS, REFUSAL_STATUS, pages
from claimflow.web.intake import Intake
from models.routing import DEFAULT_DOCUMENTS, DOCUMENTS
from models.standards import LANGUAGES, build
from models.status import PAGE_TEXT as STATUS_TEXT
from models.survey import LinkRefused, page_language
from tasks.status import open_status


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


def add_status_routes(app: FastAPI, intake: Intake) -> None:
    @app.get("/status/{token}", response_class=HTMLResponse, include_in_schema=False)
    def case_status_page(token: str, lang: str | None = Query(None, max_length=10),
                         large: str | None = Query(None, max_length=2)) -> HTMLResponse:  # fmt: skip
        """The customer's own case, from the signed link in their messages; a link that does not open says why,
        with the desk's phone."""
        settings = intake.settings
        language = page_language(lang, settings.default_language)  # a link that does not open: no customer known
        values: dict[str, Any] = {"page": None, "reason": None}
        status_code = 200
        try:
            with Session(intake.engine) as session:
                values["page"] = found = open_status(session, settings, token, asked=lang, now=intake.clock())
            language = found.language
        except LinkRefused as refused:
            values["reason"], status_code = refused.reason.value, REFUSAL_STATUS.get(refused.reason, 403)
        html = pages().get_template("status.html.j2").render(
            lang=language, other_lang=next(c for c in LANGUAGES if c != language), large=large == "1",
            t=STATUS_TEXT[language], phone=settings.desk_phone or settings.desk_email, email=settings.desk_email,
            tz=settings.office_timezone, **values,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)

"""The public pages of the desk: ``/standards``, the published service standards (no login).

The page is built by ``models.standards`` from the rules the desk runs on (its ``Desk``: the house pack and the
regulators' packs per jurisdiction), the document lists and the settings, in zh-CN or en (``?lang=``, default the
desk's language) and in large text (``?large=1``). It needs no JavaScript and no cookie.
"""

from __future__ import annotations

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse

from claimflow.web.http import PAGE_HEADERS, pages
from claimflow.web.intake import Intake
from models.routing import DEFAULT_DOCUMENTS, DOCUMENTS
from models.standards import LANGUAGES, build
from models.survey import page_language


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

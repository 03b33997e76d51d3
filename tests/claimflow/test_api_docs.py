"""The API's reference pages (``/docs``, Swagger UI; ``/redoc``) in a real browser on a network with nothing but
the desk: their scripts and styles come from the app itself, and they show the intake's operations."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from claimflow.settings import Settings
from claimflow.web.app import create_app
from tests.browser import serving


@pytest.fixture(autouse=True)
def migrated() -> None:
    from claimflow.db import get_engine
    from claimflow.migrate import upgrade

    upgrade(get_engine(Settings().resolved_database_url))


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        # Swagger UI: the operations under their groups, and the signature headers each one needs
        ("/docs", ["Cases", "Feedback", "/v1/claims", "/v1/complaints", "/v1/inquiries", "/v1/cases/{number}"]),
        # ReDoc: the operations' groups in its menu (each group opened below shows its operations' summaries)
        ("/redoc", ["Cases", "Feedback"]),
    ],
)
def test_the_api_reference_works_without_the_internet(browser: Any, path: str, shown: list[str]) -> None:
    from playwright.sync_api import expect

    asked: list[str] = []
    with serving(create_app(Settings(), launch=False)) as address:
        context = browser.new_context()
        desk = urlsplit(address).netloc

        def only_the_desk(route: Any) -> None:  # a closed network: anything else is refused, and noted
            asked.append(route.request.url)
            if urlsplit(route.request.url).netloc == desk:
                route.continue_()
            else:
                route.abort()

        context.route("**/*", only_the_desk)
        page = context.new_page()
        refused: list[str] = []  # what the page's own policy blocked: it must block only what leaves the desk
        page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text
                else None)  # fmt: skip
        page.goto(f"{address}{path}")
        for text in shown:
            expect(page.get_by_text(text, exact=True).first).to_be_visible()
        if path == "/docs":
            page.get_by_text("/v1/claims", exact=True).first.click()  # open the operation
            expect(page.get_by_text("X-Claimflow-Signature").first).to_be_visible()
            expect(page.get_by_text("default", exact=True)).to_have_count(0)  # no operation left ungrouped
        else:
            page.get_by_role("menuitem").get_by_text("Cases", exact=True).click()
            for summary in (
                "File a claim",
                "File a complaint",
                "File an inquiry",
                "Status of a case this source filed",
            ):
                expect(page.get_by_role("menuitem").get_by_text(summary, exact=True)).to_be_visible()
            # ReDoc's search runs in a worker its script makes from a blob: the policy lets it run
            page.get_by_placeholder("Search...").fill("complaint")
            expect(page.locator("[role=search] li, .search-result, [data-role='search:result']").first).to_be_visible()
        context.close()
    assert all("cdn.redoc.ly" in text for text in refused), refused
    # FastAPI's own pages ask cdn.jsdelivr.net for their script and style (nothing shows without them); ReDoc's
    # script asked cdn.redoc.ly for the Redocly badge of its menu: the page's policy now keeps it on the desk
    elsewhere = [url for url in asked if urlsplit(url).netloc != desk]
    assert not elsewhere, elsewhere
    assert any("/static-offline-docs/" in url for url in asked)

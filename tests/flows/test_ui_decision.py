"""A supervisor decides an escalation in the Prefect UI, in a real browser.

Everything is real: the desk's embedded Prefect server as ``claimflow up`` starts it (UI on, basic auth,
SQLite; the test harness's server runs with the UI turned off), Debian's headless chromium driven by
Playwright, the desk runner executing the runs in this process, and the case database (SQLite). The supervisor
logs in to the UI, finds the suspended escalation run in the runs list by the case number, reads the form,
lets the case's own handler try first (refused: the run's log says why and the run asks again), then decides
with their own name and approval code; the case moves on.

Needs ``apt-get install chromium`` (``/usr/bin/chromium``, or ``CLAIMFLOW_TEST_CHROMIUM``) and
``pip install playwright`` (its own browser download is not used). Without them the test is skipped, unless
``CLAIMFLOW_REQUIRE_BROWSER=1`` (as in CI), where that is a failure.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.schemas.objects import StateType
from sqlmodel import Session, select

from claimflow.orchestrator import api_url, auth_string
from claimflow.settings import get_settings
from flows.watch import sla_watch
from models.caseview import CHOICES, form_words
from models.forms import choice_words, field_words, parameter_words
from models.tables import Escalation
from tasks.runs import launch_case
from tests.browser import chromium
from tests.flows.conftest import aside, desk_prefect_server, run_log_levels

pytestmark = pytest.mark.slow

UI_SECONDS = 30  # any one thing the page is expected to show
APPLIED_SECONDS = 90  # from "Resume" pressed to the decision applied by the desk runner


@dataclass
class UIServer:
    url: str
    login: str  # the basic-auth string the UI asks for on first load


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIServer]:
    """The desk's own embedded Prefect server (as ``claimflow up`` starts it: UI on, basic auth, SQLite) on a
    free port and a throwaway data directory; this process's Prefect client and the desk runner talk to it."""
    with desk_prefect_server(tmp_path_factory.mktemp("desk-prefect"), login="desk:supervisor-ui-test") as server:
        yield UIServer(url=api_url(server.settings).removesuffix("/api"), login=auth_string(server.settings))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless chromium under Playwright (Playwright's own browser download is not used)."""
    with chromium(expect_seconds=UI_SECONDS) as launched:
        yield launched


@pytest.fixture
def page(browser: Any, ui_server: UIServer, tmp_path: Path) -> Iterator[Any]:
    """A fresh browser profile on the UI; its last screenshot and console are kept in ``tmp_path``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=ui_server.url)
    context.set_default_timeout(UI_SECONDS * 1000)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    yield page
    try:
        page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
        (tmp_path / "console.txt").write_text("\n".join(console))
    finally:
        context.close()


@pytest.fixture
def ui_live(ui_server: UIServer, database_url: str, monkeypatch: pytest.MonkeyPatch, desk_world: type) -> Iterator[Any]:
    """``live`` from the flows conftest, but on the desk's embedded server: the desk, its staff, the runner."""
    from tests.flows.conftest import live_desk

    with live_desk(database_url, monkeypatch, desk_world) as world:
        yield world


def run_log(run_id: str) -> list[str]:
    """The messages of a run's log as the server has them (what its page shows)."""
    return [message for message, _ in aside(run_log_levels, run_id)]


def label(field: str, language: str) -> str:
    """The label the UI gives a field of the escalation form in the desk's language."""
    return field_words("escalation", field, language)[0]


def open_resume_form(page: Any, language: str) -> Any:
    """On a suspended run's page: the first "Open menu" (the run's actions) > Resume; the form's dialog."""
    page.get_by_role("button", name="Open menu").first.click()
    page.get_by_role("menuitem", name="Resume").click()
    form = page.get_by_role("dialog", name="Resume Flow Run")
    form.get_by_role("textbox", name=label("staff", language)).wait_for()
    return form


def fill_and_resume(
    page: Any, form: Any, *, language: str, staff: str, code: str, decision: str, reason: str
) -> list[str]:
    """Fill the escalation form as a person does (``decision`` is the choice's code; the form offers its word)
    and press Resume until the UI confirms it (a person presses again after an error toast: the embedded server
    is on SQLite and may answer 503 "database is locked" when busy); returns the error toasts seen on the way."""
    from playwright.sync_api import expect

    word = choice_words("escalation", language)[decision]
    form.get_by_role("textbox", name=label("staff", language)).fill(staff)
    form.get_by_role("textbox", name=label("approval_code", language)).fill(code)
    select = form.get_by_role("button", name=f"Select {label('decision', language)}")
    select.click()
    page.get_by_role("listbox").get_by_role("option", name=word, exact=True).click()
    expect(select).to_contain_text(word)
    form.get_by_role("textbox", name=f"{label('reason', language)} (Optional)").fill(reason)
    resumed = page.get_by_text("Flow run resumed")
    failed = page.locator("[data-sonner-toast][data-type=error]")
    errors: list[str] = []
    for _ in range(3):
        form.get_by_role("button", name="Resume", exact=True).click()
        expect(resumed.or_(failed).first).to_be_visible()
        if not failed.count():
            break
        errors.append(failed.first.inner_text())
        expect(failed).to_have_count(0)  # the toast goes after a few seconds; the form keeps what was typed
    expect(resumed.first).to_be_visible()
    expect(form).to_be_hidden()
    if errors:  # seen on a busy machine: 503 "database is locked" from the SQLite-backed server
        warnings.warn(f"the UI refused Resume {len(errors)} time(s) before taking it: {errors}", stacklevel=2)
    return errors


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the browser part is the same on both
def test_a_supervisor_decides_a_suspended_escalation_in_the_prefect_ui(page, ui_server, ui_live, kit, tmp_path) -> None:
    from playwright.sync_api import expect

    world = ui_live
    case = world.file(product_line="motor")
    aside(lambda: asyncio.run(launch_case(world.engine, case_id=case.id)))
    handler = kit.handler_of(world, case)
    due = world.step(case, "review").due_at
    aside(lambda: asyncio.run(sla_watch(now=due + timedelta(minutes=1))))
    with Session(world.engine) as session:
        escalation = session.exec(select(Escalation).where(Escalation.case_id == case.id)).one()
    run_id = escalation.flow_run_id
    assert run_id
    kit.wait_for("the escalation run to suspend", lambda: aside(kit.run_state, run_id) == StateType.PAUSED)

    # the supervisor opens the UI, which asks for the desk's login first
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/v2/"))
    page.get_by_role("textbox", name="admin:pass").fill(ui_server.login)
    page.get_by_role("button", name="Login").click()

    # goes to the runs and looks the case up by its number
    page.get_by_role("link", name="Runs", exact=True).click()
    page.get_by_role("textbox", name="Search by flow run name").fill(case.number)
    # the UI writes the search into the address after a pause; a click before that lands on the run page and the
    # late write then takes the browser back to the list, so wait for the address to carry the search
    expect(page).to_have_url(re.compile(rf"flow-run-search={case.number}"))
    page.get_by_role("link", name=f"{case.number}-escalation-1", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/v2/runs/flow-run/{run_id}"))
    expect(page.get_by_text("Suspended", exact=True).first).to_be_visible()

    # the form tells what is to be decided and by whom
    language = world.desk.settings.default_language
    words = form_words(language)
    form = open_resume_form(page, language)
    expect(form.get_by_text(f"Provide input to resume {case.number}-escalation-1")).to_be_visible()
    expect(form.get_by_text(case.number, exact=True)).to_be_visible()  # the description, in bold
    expect(form.get_by_text(words["escalation"])).to_be_visible()  # who may decide, in the desk's language
    expect(form.get_by_text(words["due_was"] + ":")).to_contain_text(f"({world.desk.settings.office_timezone})")
    for code, word in choice_words("escalation", language).items():  # each choice as the select offers it
        expect(form.get_by_text(word, exact=True).first).to_be_visible()
        expect(form.get_by_text(CHOICES["escalation"][language][code], exact=False).first).to_be_visible()
    page.screenshot(path=str(tmp_path / "form.png"))

    # the case's own handler tries to decide it: refused, and the run asks again
    fill_and_resume(
        page,
        form,
        language=language,
        staff=handler,
        code=world.live_code(handler, lasting=True),
        decision="extend",
        reason="More time",
    )
    kit.wait_for("the refusal", lambda: "decision_refused" in kit.events(world, case), timeout=APPLIED_SECONDS)
    kit.wait_for(
        "the run to ask again", lambda: aside(kit.run_state, run_id) == StateType.PAUSED, timeout=APPLIED_SECONDS
    )
    assert world.step(case, "review").due_at == due
    kit.wait_for("the refusal in the run's log", lambda: any("decision refused" in m for m in run_log(run_id)))
    page.reload()
    expect(page.get_by_text("Suspended", exact=True).first).to_be_visible()
    expect(page.get_by_text(f"{case.number}: escalation decision refused")).to_be_visible()  # the page says why
    refusal = aside(kit.state_message, run_id)  # and the run's own state says it first, not only the artifact
    assert refusal and refusal.startswith(f"{case.number} level 1: decision refused: "), refusal
    page.screenshot(path=str(tmp_path / "refused.png"))

    # the supervisor decides with their own name and code
    form = open_resume_form(page, language)
    errors = fill_and_resume(
        page,
        form,
        language=language,
        staff="zhao.min",
        code=world.live_code("zhao.min", lasting=True),
        decision="extend",
        reason="Waiting for the assessor's report",
    )
    page.screenshot(path=str(tmp_path / "resumed.png"))

    # the case moves on
    kit.wait_for("the extension", lambda: "escalation_decided" in kit.events(world, case), timeout=APPLIED_SECONDS)
    kit.wait_for(
        "the run to finish", lambda: aside(kit.run_state, run_id) == StateType.COMPLETED, timeout=APPLIED_SECONDS
    )
    assert world.step(case, "review").due_at > due
    log = kit.events(world, case)
    assert log.count("decision_refused") == 1 and log.count("escalation_decided") == 1, (log, errors)
    with Session(world.engine) as session:
        decided = session.exec(select(Escalation).where(Escalation.case_id == case.id)).one()
        assert decided.decision == "extend"
    page.reload()
    expect(page.get_by_text("Completed", exact=True).first).to_be_visible()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_handlers_worklist_link_shows_their_waiting_cases_and_each_case_page_shows_the_case(
    page, ui_server, ui_live, kit, tmp_path
) -> None:
    """``claimflow staff links``: a handler's "waiting for me" link opens the Runs page filtered to exactly the runs
    that wait for them (another handler's case is not there); the case's run page has the case as its artifact."""
    from playwright.sync_api import expect

    from flows.workspace import CaseViewPublisher
    from models.caseview import staff_links

    world = ui_live
    first, second = world.file(product_line="motor"), world.file(product_line="motor")
    runs = {c.number: aside(lambda c=c: asyncio.run(launch_case(world.engine, case_id=c.id))) for c in (first, second)}
    for run_id in runs.values():
        kit.wait_for("the case run to suspend", lambda r=run_id: aside(kit.run_state, r) == StateType.PAUSED)
    mine, theirs = kit.handler_of(world, first), kit.handler_of(world, second)
    assert mine != theirs  # routed to the least-loaded handler: one each

    async def publish() -> int:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return (await CaseViewPublisher(every=1, language="en").publish_changed(client)).cases

    assert aside(lambda: asyncio.run(publish())) == 2
    [link] = [url for lbl, url in staff_links(ui_server.url, username=mine, team=None, role="handler")
                       if lbl == "my cases waiting for me"]  # fmt: skip

    page.goto(link)  # a bookmark: the UI asks for the desk's login first, then shows the filtered runs
    login, listed = (
        page.get_by_role("textbox", name="admin:pass"),
        page.get_by_role("link", name=first.number, exact=True),
    )
    expect(login.or_(listed).first).to_be_visible()
    if login.is_visible():
        login.fill(ui_server.login)
        page.get_by_role("button", name="Login").click()
        page.goto(link)
    expect(listed).to_be_visible()
    expect(page.get_by_role("link", name=second.number, exact=True)).to_have_count(0)
    page.screenshot(path=str(tmp_path / "worklist.png"), full_page=True)

    # the case's run page: the case itself, as its artifact
    page.get_by_role("link", name=first.number, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/runs/flow-run/{runs[first.number]}"))
    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text(f"case-{first.number.lower()}").first.click()
    expect(page.get_by_text(f"{first.number} · claim · under_review").first).to_be_visible()
    expect(page.get_by_text(f"who may decide: {mine} (the handler)").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "case-artifact.png"), full_page=True)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_supervisor_reassigns_a_handlers_cases_from_the_deployments_page(
    page, ui_server, ui_live, kit, tmp_path
) -> None:
    """Leave or illness: the supervisor opens the ``reassign-cases`` deployment, Run > Custom run, fills in the form
    (whose cases, to whom, themselves, their code, why) and submits; the desk runner moves the cases."""
    from playwright.sync_api import expect

    world = ui_live
    case = world.file(product_line="motor")
    handler = kit.handler_of(world, case)
    target = "wang.fang" if handler != "wang.fang" else "li.wei"

    page.goto("/deployments")  # the UI asks for the desk's login first
    login, listed = (
        page.get_by_role("textbox", name="admin:pass"),
        page.get_by_role("link", name="reassign-cases", exact=True).first,
    )
    expect(login.or_(listed).first).to_be_visible()
    if login.is_visible():
        login.fill(ui_server.login)
        page.get_by_role("button", name="Login").click()
        page.goto("/deployments")
    listed.click()
    page.screenshot(path=str(tmp_path / "deployment.png"), full_page=True)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run", exact=True).click()
    page.screenshot(path=str(tmp_path / "custom-run.png"), full_page=True)
    language = world.desk.settings.default_language
    names = ("from_staff", "to_staff", "by", "approval_code", "reason", "case_number")
    shown = parameter_words({name: {} for name in names}, language, "reassign-cases")  # in the desk's language

    def field(name: str) -> Any:  # the parameter's box: the first text area after its title
        title = shown[name]["title"]
        return page.locator(f"xpath=//*[starts-with(normalize-space(text()), '{title}')]/following::textarea[1]")

    expect(page.get_by_text(shown["by"]["description"])).to_be_visible()
    field("from_staff").fill(handler)
    field("to_staff").fill(target)
    field("by").fill("zhao.min")
    field("approval_code").fill(world.live_code("zhao.min", lasting=True))
    field("reason").fill("On leave until Monday")
    page.screenshot(path=str(tmp_path / "filled.png"), full_page=True)
    page.get_by_role("button", name="Submit").click()
    kit.wait_for("the case to move", lambda: kit.handler_of(world, case) == target, timeout=APPLIED_SECONDS)
    assert "reassigned" in kit.events(world, case)
    page.screenshot(path=str(tmp_path / "submitted.png"), full_page=True)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_supervisor_extends_a_breached_step_from_the_breached_list(
    page, ui_server, ui_live, kit, tmp_path, monkeypatch
) -> None:
    """The supervisor's bookmark: the ``desk-breached`` artifact lists the undecided escalation with a link to its
    run; from there, Resume, extend; the step's deadline moves and the customer is told."""
    from playwright.sync_api import expect

    from flows.workspace import CaseViewPublisher
    from tests.flows.test_workspace import _worklists

    world = ui_live
    case = world.file(product_line="motor")
    aside(lambda: asyncio.run(launch_case(world.engine, case_id=case.id)))
    due = world.step(case, "review").due_at
    aside(lambda: asyncio.run(sla_watch(now=due + timedelta(minutes=1))))
    with Session(world.engine) as session:
        escalation = session.exec(select(Escalation).where(Escalation.case_id == case.id)).one()
    run_id = escalation.flow_run_id
    kit.wait_for("the escalation run to suspend", lambda: aside(kit.run_state, run_id) == StateType.PAUSED)
    language = world.desk.settings.default_language
    monkeypatch.setenv("CLAIMFLOW_UI_URL", ui_server.url)  # the address staff reach the UI at: the links' base
    get_settings.cache_clear()
    assert aside(_worklists, CaseViewPublisher(every=1, language=language)) >= 1

    page.goto("/artifacts/key/desk-breached")  # where the supervisors' bookmark points
    login = page.get_by_role("textbox", name="admin:pass")
    listed = page.get_by_text("desk-breached").first
    expect(login.or_(listed).first).to_be_visible()
    if login.is_visible():
        login.fill(ui_server.login)
        page.get_by_role("button", name="Login").click()
        page.goto("/artifacts/key/desk-breached")
    page.screenshot(path=str(tmp_path / "breached-key.png"), full_page=True)
    page.locator("a", has_text=re.compile(r"^[0-9a-f]{8}$")).first.click()  # the newest version
    link = page.get_by_role("link", name=f"{case.number}-escalation-1", exact=True)
    expect(link).to_be_visible()
    page.screenshot(path=str(tmp_path / "breached.png"), full_page=True)
    href = link.get_attribute("href") or ""
    assert href.endswith(f"/runs/flow-run/{run_id}"), href
    page.goto(href)  # the link opens the run (in a new tab: the same address)
    page.screenshot(path=str(tmp_path / "escalation-run.png"), full_page=True)
    # the older UI, where the desk's links lead, shows Resume as a button and the form in the desk's language
    page.get_by_role("button", name="Resume").first.click()
    expect(page.get_by_role("dialog").get_by_text(form_words(language)["escalation"])).to_be_visible()
    page.screenshot(path=str(tmp_path / "resume-form.png"), full_page=True)
    # deciding there: its select of choices does not open under Playwright here, so the same run's form is filled in
    # the newer UI (the same schema, the same words)
    page.goto(f"/v2/runs/flow-run/{run_id}")
    form = open_resume_form(page, language)
    fill_and_resume(page, form, language=language, staff="zhao.min", code=world.live_code("zhao.min", lasting=True),
                    decision="extend", reason="Waiting for the assessor's report")  # fmt: skip
    kit.wait_for("the extension", lambda: "escalation_decided" in kit.events(world, case), timeout=APPLIED_SECONDS)
    assert world.step(case, "review").due_at > due
    assert "extension_notice" in world.outbox()  # the customer is told the new date


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_handler_decides_in_the_ui_the_desks_links_open(page, ui_server, ui_live, kit, tmp_path) -> None:
    """The links the desk sends (``/runs?flow-run-search=CLM-...``) open the UI where Resume is a button on the run's
    page: the handler opens it, fills the form in the desk's language (the choice by its word) and submits; the run
    takes the decision and asks for what comes next."""
    from playwright.sync_api import expect

    world = ui_live
    language = world.desk.settings.default_language
    case = world.file(product_line="motor")
    run_id = aside(lambda: asyncio.run(launch_case(world.engine, case_id=case.id)))
    kit.wait_for("the case run to suspend", lambda: aside(kit.run_state, run_id) == StateType.PAUSED)
    handler = kit.handler_of(world, case)

    link = f"{ui_server.url}/runs?flow-run-search={case.number}"  # as the staff messages link a case
    page.goto(link)
    # this file's tests share one Prefect server, each with a fresh desk: earlier tests' cases had this number too
    login = page.get_by_role("textbox", name="admin:pass")
    listed = page.get_by_role("link", name=case.number, exact=True).and_(page.locator(f"a[href*='{run_id}']"))
    expect(login.or_(listed).first).to_be_visible()
    if login.is_visible():
        login.fill(ui_server.login)
        page.get_by_role("button", name="Login").click()
        page.goto(link)
    listed.click()
    expect(page).to_have_url(re.compile(rf"/runs/flow-run/{run_id}"))
    page.get_by_role("button", name="Resume").first.click()  # in plain sight on the run's page
    form = page.get_by_role("dialog")

    def field(name: str) -> Any:  # a field of this UI's form: its block, by the title it shows, and its input
        block = form.locator(".schema-form-property", has_text=field_words("claim_review", name, language)[0])
        return block.locator("textarea, input").first

    field("staff").fill(handler)
    field("approval_code").fill(world.live_code(handler, lasting=True))
    # the choice: this UI's select opens from the keyboard (a synthetic click on its button does not open it)
    form.locator(".p-select-button__control").first.focus()
    page.keyboard.press("ArrowDown")
    word = choice_words("claim_review", language)["request_documents"]
    page.get_by_role("option", name=word, exact=True).click()
    expect(form.locator(".p-select-button__control").first).to_contain_text(word)
    page.screenshot(path=str(tmp_path / "older-ui-form.png"))
    form.get_by_role("button", name="Submit").click()
    expect(form).to_be_hidden()

    kit.wait_for("the decision", lambda: world.case(case).status == "awaiting_documents", timeout=APPLIED_SECONDS)
    _, key = kit.wait_for("the run to ask for the documents", lambda: aside(kit.waiting, world, case),
                          timeout=APPLIED_SECONDS)  # fmt: skip
    assert key.startswith("documents-")
    assert "request_documents" in kit.events(world, case)

    # the case's page and tags follow: the artifact (published as the desk runner does) and the run's tags
    async def publish_and_tags() -> list[str]:
        from prefect.client.orchestration import get_client

        from flows.workspace import CaseViewPublisher

        async with get_client() as client:
            await CaseViewPublisher(every=1, language="en").publish_changed(client)
            return list((await client.read_flow_run(UUID(run_id))).tags)

    tags = aside(lambda: asyncio.run(publish_and_tags()))
    assert "waiting:documents" in tags and "waiting:claim-review" not in tags, tags
    page.reload()
    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text(f"case-{case.number.lower()}").first.click()
    expect(page.get_by_text(f"{case.number} · claim · awaiting_documents").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "older-ui-after.png"), full_page=True)

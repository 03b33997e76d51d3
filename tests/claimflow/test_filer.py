"""The intake's filing process (``claimflow.web.filer``, ``claimflow api --filer``): the API's processes hand it their
filings over a Unix socket and answer each from its commit, refusals and outages included; it is started again
when it dies, stops after the API and ends with the process that started it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from claimflow.web import filer as filer_module
from claimflow.web.app import create_app
from claimflow.web.filer import KEY_ENV, FilerProcess, FilingUnavailable, RemoteCommit
from claimflow.web.groupcommit import Filing
from claimflow.web.intake import sign_headers
from models.tables import Case, IntakeRequest
from tests.claimflow.test_api import claim, make_settings
from tests.claimflow.test_api_workers import _env, _processes, start_api
from tests.ports import free_port

pytestmark = pytest.mark.usefixtures("no_prefect")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def filer(world: Any, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FilerProcess]:
    """A filing process on the test's database, as 'claimflow api --filer' starts it."""
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("CLAIMFLOW_DATA_DIR", str(tmp_path / "data"))
    process = FilerProcess(make_settings(data_dir=tmp_path / "data"), on_event=lambda text: None)
    process.start()
    yield process
    process.stop()


def api_of(filer: FilerProcess, engine: Engine) -> FastAPI:
    settings = make_settings(data_dir=filer.settings.data_dir, api_filer_socket=filer.address,
                             api_filer_key=SecretStr(filer.key))  # fmt: skip
    return create_app(settings, engine, launch=False)


def signed(body: dict[str, Any], key: str, path: str = "/v1/claims") -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    headers = {**sign_headers("webform", "new-secret", raw, path=path, key=key), "Content-Type": "application/json"}
    return raw, headers


Post = Callable[..., Awaitable[httpx.Response]]


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[Post]:
    """The app with its lifespan run, and ``post(key, body=a claim, path="/v1/claims")``: signed, 30 s at most."""
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:

        async def post(key: str, body: dict[str, Any] | None = None, path: str = "/v1/claims") -> httpx.Response:
            raw, headers = signed(claim() if body is None else body, key, path)
            return await asyncio.wait_for(c.post(path, content=raw, headers=headers), 30)

        yield post


async def posting(app: FastAPI, posts: list[tuple[str, dict[str, Any], str]]) -> list[httpx.Response]:
    """Each (path, body, key) posted at once through the app (its lifespan run around them); two minutes at most,
    start-up included (a hang fails the test)."""

    async def run() -> list[httpx.Response]:
        async with serving(app) as post:
            return list(await asyncio.gather(*(post(key, body, path) for path, body, key in posts)))

    return await asyncio.wait_for(run(), 120)


def test_posts_are_filed_by_the_filing_process_and_each_answered_from_its_commit(
    filer: FilerProcess, engine: Engine
) -> None:
    app = api_of(filer, engine)
    posts = [("/v1/claims", claim(policy_number=f"P-{n:06d}"), f"k{n}") for n in range(40)]
    posts += [
        ("/v1/claims", claim(policy_number="P-000007"), "k7"),  # the same key and body: the same answer again
        ("/v1/claims", claim(policy_number="P-other"), "k8"),  # the same key, another body: 409
        ("/v1/complaints", claim(related_case_number="CLM-2026-999999"), "k-related"),  # no such case: 422
    ]
    responses = asyncio.run(posting(app, posts))
    committer = app.state.intake.committer
    assert isinstance(committer, RemoteCommit) and committer.filings == 41  # the 40 and the twin; not the refused

    filed = responses[:40]
    assert [r.status_code for r in filed] == [202] * 40
    with Session(engine) as session:
        numbers = list(session.exec(select(Case.number).order_by(col(Case.number))))
        assert session.exec(select(IntakeRequest)).all().__len__() == 40
    assert sorted(r.json()["case_number"] for r in filed) == numbers and len(set(numbers)) == 40
    assert [int(n.rsplit("-", 1)[1]) for n in numbers] == list(range(1, 41))  # gapless: the refused gave theirs back
    again, conflict, related = responses[40:]
    assert again.status_code == 202 and again.json()["case_number"] in numbers  # the twin's answer, whichever won
    assert conflict.status_code == 409 and conflict.json()["type"].endswith("idempotency-conflict")
    assert related.status_code == 422 and "related_case_number" in related.json()["detail"]
    replayed = asyncio.run(posting(app, [posts[3]]))[0]
    assert replayed.status_code == 202 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == filed[3].json()


def test_when_the_filing_process_dies_posts_are_answered_503_until_it_is_started_again(
    filer: FilerProcess, engine: Engine
) -> None:
    """One API lifespan throughout: filed; the filing process killed (kill -9): the next post is answered 503 at
    once, as a database outage is; started again by 'claimflow api''s watcher, the same post is filed; stopped for
    good: 503 again."""
    app = api_of(filer, engine)
    first = filer.process
    assert first is not None

    async def run() -> list[httpx.Response]:
        async with serving(app) as post:
            answers = [await post("before")]
            os.kill(first.pid, signal.SIGKILL)
            await asyncio.to_thread(first.wait)
            answers.append(await post("after-kill"))
            deadline = time.monotonic() + 60
            while filer.process is first or not Path(filer.address).exists():  # started again by its watcher
                assert time.monotonic() < deadline, "the filing process was not started again"
                await asyncio.sleep(0.1)
            answers.append(await post("after-kill"))  # the same key again: filed now
            await asyncio.to_thread(filer.stop)
            answers.append(await post("after-stop"))
            return answers

    before, down, retried, stopped = asyncio.run(run())
    assert before.status_code == 202, before.text
    assert down.status_code == 503 and down.headers["Retry-After"] == "5", down.text
    assert "retry with the same Idempotency-Key" in down.json()["detail"]
    assert filer.restarts == 1
    assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers, retried.text
    assert stopped.status_code == 503, stopped.text
    with Session(engine) as session:
        numbers = sorted(session.exec(select(Case.number)))
    assert numbers == sorted([before.json()["case_number"], retried.json()["case_number"]])


def test_a_filing_in_hand_when_the_filing_process_dies_is_answered_503(filer: FilerProcess, engine: Engine) -> None:
    """Stopped (SIGSTOP) with a post in hand, then killed: the post waiting on it is answered 503, not left hanging."""
    app = api_of(filer, engine)
    process = filer.process
    assert process is not None

    async def run() -> httpx.Response:
        async with serving(app) as post:
            os.kill(process.pid, signal.SIGSTOP)
            pending = asyncio.create_task(post("in-hand"))
            await asyncio.sleep(1.0)
            assert not pending.done()  # waits for the filing process's answer
            os.kill(process.pid, signal.SIGKILL)
            return await pending

    answer = asyncio.run(run())
    assert answer.status_code == 503, answer.text
    assert "retry with the same Idempotency-Key" in answer.json()["detail"]


def test_a_peer_without_the_key_is_refused_and_the_filing_process_goes_on(filer: FilerProcess, engine: Engine) -> None:
    stranger = RemoteCommit(filer.address, b"not the key")

    async def try_it() -> None:
        await stranger.file(Filing("webform", None, [], None, "0" * 64))

    with pytest.raises(FilingUnavailable, match="cannot be reached"):
        asyncio.run(try_it())
    answer = asyncio.run(posting(api_of(filer, engine), [("/v1/claims", claim(), "after-stranger")]))[0]
    assert answer.status_code == 202, answer.text


def test_claimflow_api_with_a_filing_process_files_posts_and_stops_whole_on_ctrl_c(
    world: Any, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """The command as a user runs it: posts filed by the filing process; Ctrl-C (SIGINT to the whole process group,
    as a terminal sends it) stops the API and then the filing process; nothing is left running."""
    port = free_port()
    server = start_api(["--filer", "--port", str(port)], env=_env(database_url, tmp_path))
    try:
        children = [pid for pid, (parent, command) in _processes().items() if parent == server.pid
                    and "claimflow.web.filer" in command]  # fmt: skip
        assert len(children) == 1, "one filing process, started by the API"
        raw = json.dumps(claim()).encode()
        headers = {**sign_headers("partner", "partner-secret", raw, path="/v1/claims", key="cli-1"),
                   "Content-Type": "application/json"}  # fmt: skip
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/claims", content=raw, headers=headers, timeout=60)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    assert answer.status_code == 202, output[-2000:]
    assert server.returncode == 0, output[-2000:]
    assert "filing:       in a process of its own" in output
    # uvicorn's own lines tell the operator it is up and where (Prefect's logging set-up had silenced them)
    assert "Application startup complete" in output and f"Uvicorn running on http://127.0.0.1:{port}" in output
    assert '"POST /v1/claims HTTP/1.1" 202' in output  # the access log, on by default
    assert "stopped (1 filings in 1 batches)" in output, output[-2000:]  # filed there, not in the API's process
    with Session(engine) as session:
        assert list(session.exec(select(Case.number))) == [answer.json()["case_number"]]
    time.sleep(0.3)
    assert children[0] not in _processes(), "the filing process stopped with the API"


def test_the_filing_process_ends_when_the_api_that_started_it_is_killed(
    world: Any, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "claimflow", "api", "--filer", "--port", str(port)],
                              env=_env(database_url, tmp_path), cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    children: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while not (children := [pid for pid, (parent, command) in _processes().items() if parent == server.pid
                                and "claimflow.web.filer" in command]):  # fmt: skip
            assert server.poll() is None and time.monotonic() < deadline, "no filing process started"
            time.sleep(0.2)
        time.sleep(1.0)  # its watcher runs
        server.kill()  # kill -9 of the API alone: no stop for the filing process but its own watch
        server.wait()
        deadline = time.monotonic() + 15
        while children[0] in _processes():
            assert time.monotonic() < deadline, "the filing process outlived the API"
            time.sleep(0.2)
    finally:
        for pid in [server.pid, *children]:  # whatever is left of a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_peer_that_connects_and_says_nothing_holds_up_no_one(filer: FilerProcess, engine: Engine) -> None:
    """The key is proved in each connection's own thread: a silent connection (a stuck or hostile local process)
    left the accepting thread waiting for its proof, and every API process connecting after it waited too."""
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(filer.address)
    try:
        answer = asyncio.run(posting(api_of(filer, engine), [("/v1/claims", claim(), "after-silent")]))[0]
    finally:
        silent.close()
    assert answer.status_code == 202, answer.text


def test_a_filing_process_that_hangs_gets_its_posts_answered_503_in_time(
    filer: FilerProcess, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alive but not answering (SIGSTOP: swapped out, stuck): a post is answered 503 once the answer's deadline has
    passed, never left waiting; continued, the filing process files the retry."""
    monkeypatch.setattr(filer_module, "ANSWER_SECONDS", 2.0)
    app = api_of(filer, engine)
    process = filer.process
    assert process is not None

    async def run() -> list[httpx.Response]:
        async with serving(app) as post:
            os.kill(process.pid, signal.SIGSTOP)
            began = time.monotonic()
            try:
                stuck = await post("while-stopped")
            finally:
                os.kill(process.pid, signal.SIGCONT)
            waited.append(time.monotonic() - began)
            return [stuck, await post("while-stopped")]

    waited: list[float] = []
    stuck, retried = asyncio.run(run())
    assert stuck.status_code == 503 and "retry with the same Idempotency-Key" in stuck.json()["detail"], stuck.text
    assert 2.0 <= waited[0] < 20, waited  # answered at the deadline
    assert retried.status_code == 202, retried.text
    with Session(engine) as session:  # filed once: the stopped filing's late commit and the retry share the key
        assert list(session.exec(select(Case.number))) == [retried.json()["case_number"]]


def test_stopping_while_it_is_being_started_again_leaves_no_filing_process(filer: FilerProcess) -> None:
    first = filer.process
    assert first is not None
    os.kill(first.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while filer.restarts == 0:  # the watcher saw it die and waits before starting another
        assert time.monotonic() < deadline
        time.sleep(0.02)
    filer.stop()
    time.sleep(1.5)  # past the watcher's wait: it must not start one after the stop
    mine = [pid for pid, (parent, command) in _processes().items()
            if parent == os.getpid() and "claimflow.web.filer" in command and Path(f"/proc/{pid}").exists()]  # fmt: skip
    alive = [pid for pid in mine if "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    assert not alive, "a filing process was started after stop()"


def test_the_wait_before_a_restart_grows_over_deaths_in_a_row_and_starts_over_after_a_steady_run(
    world: Any, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed twice at once after its start, then once after it ran longer than ``steady_seconds``: it waits 0.5 s,
    then 1 s, then 0.5 s again (the back-off had grown for good before: a desk whose filing process died once a week
    would have waited the longest each time). Each wait is in the operator's line."""
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("CLAIMFLOW_DATA_DIR", str(tmp_path / "data"))
    events: list[str] = []
    filer = FilerProcess(make_settings(data_dir=tmp_path / "data"), on_event=events.append, steady_seconds=3.0)
    filer.start()
    try:
        for restarts, lived in ((1, 0.0), (2, 0.0), (3, 4.0)):
            process = filer.process
            assert process is not None
            time.sleep(lived)
            os.kill(process.pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while filer.restarts < restarts or filer.process is process or not Path(filer.address).exists():
                assert time.monotonic() < deadline, f"not started again after death {restarts}"
                time.sleep(0.05)
    finally:
        filer.stop()
    waits = [text.rsplit("starting it again in ", 1)[1] for text in events if "starting it again in" in text]
    assert waits == ["0.5 s", "1 s", "0.5 s"], events


def test_a_filing_process_that_cannot_start_is_tried_ever_less_often_after_a_steady_run(
    world: Any, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ran steadily, then killed, and every start after that ends at once (here: its key is gone from its
    environment): the waits grow 0.5, 1, 1.5 s. The long run before must not reset them each time."""
    monkeypatch.setenv("CLAIMFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("CLAIMFLOW_DATA_DIR", str(tmp_path / "data"))
    events: list[str] = []
    filer = FilerProcess(make_settings(data_dir=tmp_path / "data"), on_event=events.append, steady_seconds=1.0)
    filer.start()
    try:
        process = filer.process
        assert process is not None
        time.sleep(1.5)  # a steady run
        filer.env.pop(KEY_ENV)  # every start from now on ends at once
        os.kill(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len([text for text in events if "starting it again in" in text]) < 3:
            assert time.monotonic() < deadline, events
            time.sleep(0.05)
    finally:
        filer.stop()
    waits = [text.rsplit("starting it again in ", 1)[1] for text in events if "starting it again in" in text]
    assert waits[:3] == ["0.5 s", "1 s", "1.5 s"], events
    assert any("could not be started again" in text for text in events), events

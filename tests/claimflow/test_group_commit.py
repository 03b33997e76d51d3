"""Group commit (claimflow.web.groupcommit): filings that arrive together share one transaction, each under its own
savepoint, so one bad filing is refused alone and each is answered only from the commit."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from claimflow.db import create_db_engine
from claimflow.web.app import create_app
from claimflow.web.groupcommit import Filing, GroupCommit
from claimflow.web.intake import CaseSubmission, Launcher, sign_headers, to_case
from models.enums import CaseKind
from models.errors import NotFound
from models.tables import Attachment, Case, Customer, IntakeRequest
from tasks.intake import Answer, AttachmentStore, IdempotencyConflict, IncomingAttachment, body_digest
from tests.claimflow.test_api import claim, make_settings
from tests.conftest import NOW

pytestmark = pytest.mark.usefixtures("no_prefect")


def filing(index: int, *, key: str | None = None, related: str | None = None, attach: bool = False) -> Filing:
    body = claim(policy_number=f"P-{index:06d}", related_case_number=related) if related else claim(
        policy_number=f"P-{index:06d}")  # fmt: skip
    data = to_case(CaseKind.complaint if related else CaseKind.claim, CaseSubmission.model_validate(body))
    files = [IncomingAttachment(f"photo{index}.jpg", "image/jpeg", f"photo {index}".encode(), None)] if attach else []
    return Filing(
        "webform", data, files, key if key is not None else f"key-{index}", body_digest(json.dumps(body).encode())
    )


def answers(futures: list[Future[Answer]]) -> list[Answer | BaseException]:
    out: list[Answer | BaseException] = []
    for future in futures:
        try:
            out.append(future.result(timeout=60))
        except Exception as exc:
            out.append(exc)
    return out


def numbers(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(Case.number).order_by(col(Case.number))))


@pytest.mark.parametrize("at_once", [True, False], ids=["filed-at-once", "one-by-one"])
def test_filings_waiting_together_are_one_transaction_and_a_bad_one_is_refused_alone(
    world: Any, engine: Engine, tmp_path: Path, at_once: bool
) -> None:
    """With ``file_many`` (as the API runs) the plain filings are filed at once and the rest one by one: the
    complaint about a case, the second use of a key; without it, each under its own savepoint."""
    app = create_app(make_settings(data_dir=tmp_path), engine, clock=lambda: NOW, launch=False)
    intake = app.state.intake
    committer = GroupCommit(engine, intake.file_one, data_dir=tmp_path, max_batch=64,
                            file_many=intake.file_many if at_once else None)  # fmt: skip
    first = filing(0, key="reused")
    batch = [
        first,
        filing(1, attach=True),
        filing(2, related="CLM-2026-999999"),  # no such case: refused, its savepoint rolled back
        filing(3, key="reused"),  # the same key with another body: a conflict
        Filing(first.source, first.data, [], "reused", first.digest),  # the same key and body: the same answer
        filing(5, attach=True),
    ]
    futures = [committer.submit(f) for f in batch]  # all waiting before the writer starts: one batch
    committer.start()
    results = answers(futures)
    committer.stop()

    assert (committer.batches, committer.filings) == (1, 6)
    ok = [r for r in results if isinstance(r, Answer)]
    assert [r.status_code for r in ok] == [202, 202, 202, 202]
    assert isinstance(results[2], NotFound) and isinstance(results[3], IdempotencyConflict)
    assert isinstance(results[4], Answer) and results[4].replayed and results[4].body == results[0].body  # type: ignore[union-attr]
    # gapless: the refused complaint gave its number back with its savepoint
    assert numbers(engine) == ["CLM-2026-000001", "CLM-2026-000002", "CLM-2026-000003"]
    with Session(engine) as session:
        stored = list(session.exec(select(Attachment)))
        assert session.exec(select(func.count()).select_from(IntakeRequest)).one() == 3
    assert sorted(a.filename for a in stored) == ["photo1.jpg", "photo5.jpg"]
    on_disk = sorted(p.name for p in (tmp_path / "attachments").rglob("*") if p.is_file())
    assert on_disk == sorted(Path(a.storage_path).name for a in stored)  # the refused filing's file is gone


def test_a_batch_whose_database_is_gone_answers_every_filing_with_that_and_leaves_no_file(
    world: Any, engine: Engine, tmp_path: Path
) -> None:
    app = create_app(make_settings(data_dir=tmp_path), engine, clock=lambda: NOW, launch=False)
    gone = create_db_engine("postgresql+psycopg://nobody@127.0.0.1:9/none", pool=False)
    committer = GroupCommit(gone, app.state.intake.file_one, data_dir=tmp_path)
    futures = [committer.submit(filing(n, attach=True)) for n in range(3)]
    committer.start()
    results = answers(futures)
    committer.stop()
    assert all(type(r).__name__ == "OperationalError" for r in results), results
    assert not [p for p in (tmp_path / "attachments").rglob("*") if p.is_file()]


def test_concurrent_posts_through_the_api_are_grouped_each_answered_once_and_all_filed(
    world: Any, engine: Engine, tmp_path: Path
) -> None:
    """48 signed posts at once through the ASGI app: fewer transactions than posts, every answer its own case."""
    app = create_app(make_settings(data_dir=tmp_path), engine, clock=lambda: NOW, launch=False)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:

            async def one(n: int) -> httpx.Response:
                body = json.dumps(claim(policy_number=f"P-{n:06d}")).encode()
                headers = {**sign_headers("webform", "new-secret", body, now=NOW, path="/v1/claims", key=f"k{n}"),
                           "Content-Type": "application/json"}  # fmt: skip
                return await c.post("/v1/claims", content=body, headers=headers)

            responses = await asyncio.gather(*(one(n) for n in range(48)))
            committer = app.state.intake.committer
            assert committer is not None and committer.filings == 48 and committer.batches < 48
            return list(responses)

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [202] * 48
    answered = sorted(r.json()["case_number"] for r in responses)
    assert answered == numbers(engine) and len(set(answered)) == 48
    assert answered[-1] == "CLM-2026-000048"


@pytest.mark.parametrize("at_once", [True, False], ids=["filed-at-once", "one-by-one"])
def test_two_api_processes_grouping_mixed_kinds_never_deadlock_and_number_without_gaps(
    world: Any, engine: Engine, tmp_path: Path, at_once: bool
) -> None:
    """Two writers (as two API processes: an engine each), each with batches of claims, complaints and inquiries in
    different orders: each batch takes its counters and the load rows first, in one order, so none waits for
    another while holding what that one needs (and a batch the database rolls back to break a deadlock is
    written again)."""
    app = create_app(make_settings(data_dir=tmp_path), engine, clock=lambda: NOW, launch=False)
    intake = app.state.intake
    writers = []
    for _ in range(2):
        own = create_db_engine(engine.url.render_as_string(hide_password=False))
        writers.append((own, GroupCommit(own, intake.file_one, data_dir=tmp_path, max_batch=8,
                                         prepare=intake.prepare_batch,
                                         file_many=intake.file_many if at_once else None)))  # fmt: skip
    kinds = (CaseKind.claim, CaseKind.inquiry, CaseKind.complaint)
    futures = []
    for n in range(60):
        writer = writers[n % 2][1]
        kind = kinds[(n // 2 + n % 2) % 3]  # the two writers see the kinds in different orders
        body = claim(policy_number=f"P-{n:06d}")
        data = to_case(kind, CaseSubmission.model_validate(body))
        futures.append(writer.submit(Filing("webform", data, [], f"k{n}", body_digest(json.dumps(body).encode()))))
    for _, writer in writers:
        writer.start()
    results = answers(futures)
    for own, writer in writers:
        writer.stop()
        own.dispose()
    assert [type(r).__name__ for r in results] == ["Answer"] * 60
    filed = numbers(engine)
    for prefix in ("CLM", "CMP", "INQ"):
        mine = sorted(int(n.rsplit("-", 1)[1]) for n in filed if n.startswith(prefix))
        assert mine == list(range(1, len(mine) + 1)) and len(mine) == 20


def test_a_batch_that_cannot_be_filed_at_once_is_filed_one_by_one_and_leaves_nothing_of_the_first_try(
    world: Any, engine: Engine, tmp_path: Path
) -> None:
    """``file_many`` fails after it wrote everything (cases, steps, messages, attachment files): its savepoint is
    rolled back, its files removed, and each filing is filed on its own, with the numbers it would have had."""
    app = create_app(make_settings(data_dir=tmp_path), engine, clock=lambda: NOW, launch=False)
    intake = app.state.intake
    tried: list[int] = []

    def fails_after_writing(session: Session, batch: list[Filing], store: AttachmentStore) -> dict[int, Answer]:
        tried.append(len(intake.file_many(session, batch, store)))
        assert list((tmp_path / "attachments").rglob("*.jpg")), "the first try wrote the attachment files"
        raise RuntimeError("a fault after the writes")

    committer = GroupCommit(engine, intake.file_one, data_dir=tmp_path, file_many=fails_after_writing)
    futures = [committer.submit(filing(n, attach=True)) for n in range(4)]
    committer.start()
    results = answers(futures)
    committer.stop()
    assert tried == [4]
    assert [r.status_code for r in results if isinstance(r, Answer)] == [202] * 4
    assert numbers(engine) == [f"CLM-2026-{n:06d}" for n in range(1, 5)]
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(IntakeRequest)).one() == 4
        stored = sorted(Path(a.storage_path).name for a in session.exec(select(Attachment)))
    assert sorted(p.name for p in (tmp_path / "attachments").rglob("*") if p.is_file()) == stored
    assert len(stored) == 4


@contextmanager
def _refusing_policy(engine: Engine, number: str) -> Iterator[None]:
    """The database itself refuses a case row with this policy number while in the block (a trigger: what no check
    before the database would catch); dropped after it (a PostgreSQL test database is kept between tests)."""
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        if postgres:
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse_policy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.policy_number = '{number}' THEN RAISE EXCEPTION 'refused by the test'; END IF; "
                "RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                'CREATE TRIGGER refuse_policy BEFORE INSERT ON "case" FOR EACH ROW EXECUTE FUNCTION refuse_policy()'
            )
        else:
            connection.exec_driver_sql(
                f"CREATE TRIGGER refuse_policy BEFORE INSERT ON \"case\" WHEN NEW.policy_number = '{number}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                'DROP TRIGGER refuse_policy ON "case"' if postgres else "DROP TRIGGER refuse_policy"
            )
            if postgres:
                connection.exec_driver_sql("DROP FUNCTION refuse_policy()")


def test_a_row_the_database_refuses_in_a_batch_sent_pipelined_is_refused_alone_and_the_rest_filed(
    world: Any, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The batch's writes go to the database without waiting for each other (PostgreSQL's pipeline): a row refused
    there fails the batch at its end; its savepoint is rolled back and each filing is filed on its own, so only the
    refused one is answered with the error, the others are filed with gapless numbers and nothing of the first try
    is left."""
    with Session(engine) as session:
        customers_before = session.exec(select(func.count()).select_from(Customer)).one()
    app = create_app(make_settings(data_dir=tmp_path), engine, clock=lambda: NOW, launch=False)
    intake = app.state.intake
    committer = GroupCommit(engine, intake.file_one, data_dir=tmp_path, max_batch=64, file_many=intake.file_many)
    futures = [committer.submit(filing(n, attach=True)) for n in range(5)]
    with _refusing_policy(engine, "P-000002"), caplog.at_level(logging.WARNING, logger="claimflow.web.intake"):
        committer.start()
        results = answers(futures)
        committer.stop()

    assert "could not be filed at once" in caplog.text  # the batch's own try failed, in its pipelined writes
    assert (committer.batches, committer.filings) == (1, 5)
    assert [r.status_code if isinstance(r, Answer) else "refused" for r in results] == [202, 202, "refused", 202, 202]
    assert "refused by the test" in str(results[2])
    assert numbers(engine) == [f"CLM-2026-{n:06d}" for n in range(1, 5)]
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(IntakeRequest)).one() == 4
        stored = sorted(Path(a.storage_path).name for a in session.exec(select(Attachment)))
        customers = session.exec(select(func.count()).select_from(Customer)).one()
    assert customers == customers_before + 4  # the refused filing's customer went with the first try
    assert sorted(p.name for p in (tmp_path / "attachments").rglob("*") if p.is_file()) == stored
    assert len(stored) == 4


def test_a_key_a_twin_committed_meanwhile_is_replayed_not_filed_again(
    world: Any, engine: Engine, tmp_path: Path
) -> None:
    """Another API process committed a post with the same key just before this batch: the batch skips its slot,
    and the post is answered with the twin's case."""
    app = create_app(make_settings(data_dir=tmp_path), engine, clock=lambda: NOW, launch=False)
    intake = app.state.intake
    twin = filing(1)
    first = intake.file(source=twin.source, data=twin.data, attachments=[], key=twin.key, digest=twin.digest)
    committer = GroupCommit(engine, intake.file_one, data_dir=tmp_path, file_many=intake.file_many)
    futures = [committer.submit(f) for f in (filing(0), Filing(twin.source, twin.data, [], twin.key, twin.digest),
                                             filing(2))]  # fmt: skip
    committer.start()
    results = answers(futures)
    committer.stop()
    assert isinstance(results[1], Answer) and results[1].replayed and results[1].body == first.body
    assert numbers(engine) == [f"CLM-2026-{n:06d}" for n in range(1, 4)]


def test_the_launcher_starts_no_run_while_filings_wait_and_starts_it_once_they_are_written(
    world: Any, engine: Engine
) -> None:
    """Filing first: a run is not started (here: tried, at a Prefect server that is not there) while the group
    commit is busy, and is once it is not."""
    case = world.file()
    busy = [True]
    launcher = Launcher(engine, timeout=5, workers=1, yield_to=lambda: busy[0])

    async def run() -> tuple[int, int]:
        launcher.start()
        launcher.submit(case.id)
        await asyncio.sleep(0.6)
        waited = launcher.in_flight + launcher.failed + launcher.started, launcher.pending
        busy[0] = False
        for _ in range(200):
            if launcher.idle:
                break
            await asyncio.sleep(0.05)
        await launcher.stop()
        return waited

    assert asyncio.run(run()) == (0, 1)
    assert launcher.idle and launcher.failed + launcher.started == 1


def test_the_group_commit_is_busy_while_filings_wait_or_are_written(world: Any, engine: Engine, tmp_path: Path) -> None:
    app = create_app(make_settings(data_dir=tmp_path), engine, clock=lambda: NOW, launch=False)
    intake = app.state.intake
    seen: list[bool] = []

    def file_one(session: Session, filing: Filing, store: AttachmentStore) -> Answer:
        seen.append(committer.busy)
        return intake.file_one(session, filing, store)

    committer = GroupCommit(engine, file_one, data_dir=tmp_path)
    assert not committer.busy
    futures = [committer.submit(filing(n)) for n in range(3)]
    assert committer.busy  # waiting
    committer.start()
    answers(futures)
    committer.stop()
    assert seen == [True, True, True] and not committer.busy

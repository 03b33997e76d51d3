"""Group commit: the filings that arrive together are written in one transaction.

The API answers ``202`` only once a case is committed. Filed one transaction per request, from a thread per
request, the desk spent its time elsewhere than filing (profile of the API under load, ``bench/intake.py``): 32
threads took turns on the interpreter lock and queued on the case-number counter row, each holding it while it
waited for Python; every request paid a commit of its own. Here one writer thread per API process files whatever
has arrived while the previous batch was being written (up to ``CLAIMFLOW_API_GROUP_COMMIT_MAX``) in one
transaction:

- the filings ``file_many`` takes are filed at once, under one savepoint (``tasks.intake.file_many_from_webhook``:
  about twenty statements in fifteen round trips for the batch, instead of 35 a filing); if that fails, the
  savepoint is rolled back and each is filed on its own;
- the others (and all of them without ``file_many``) run under a savepoint each: one that fails (an idempotency
  key reused with another body, a related case that does not exist, a value the database refuses, a bug) is
  rolled back to its savepoint and answered with its own error; the others are filed;
- a twin committed meanwhile by another process (the same Idempotency-Key) is replayed, as in one transaction;
- the batch commits once; each request is answered from the commit, never before: a commit that fails answers
  every filing of the batch with that error (503, retry with the same key), and their attachment files are
  removed unless the commit was in fact made (``AttachmentStore.discard_uncommitted``).

Numbers stay gapless and unique (``tasks.cases.next_case_number``): a filing rolled back to its savepoint gives
its number back with it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from claimflow.db import session_scope
from tasks.intake import Answer, AttachmentStore, IncomingAttachment

logger = logging.getLogger("claimflow.web.intake")


@dataclass
class Filing:
    """One request to file: what ``file`` needs, and where its answer goes."""

    source: str
    data: Any
    attachments: list[IncomingAttachment]
    key: str | None
    digest: str
    future: Future[Answer] = field(default_factory=Future)


FileOne = Callable[[Session, Filing, AttachmentStore], Answer]
"""Files (or replays) one filing in the session given; raises what the request should be answered with."""

FileMany = Callable[[Session, list[Filing], AttachmentStore], dict[int, Answer]]
"""Files at once those of the filings it can (writing their attachments to the store given), in the session given;
returns their answers by index. The others are filed one by one (``FileOne``)."""

Prepare = Callable[[Session, list[Filing]], None]
"""Takes, at the start of a batch's transaction, the locks its filings will need, in a fixed order."""

RETRIES = 3
"""Times a batch is written again after the database rolled it back to break a deadlock or a serialisation
conflict (with a transaction of another process), before its filings are answered 503."""


def _retryable(exc: BaseException) -> bool:
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, OperationalError) and code in ("40P01", "40001")


class _Again(Exception):
    """The batch was rolled back whole and may be written again."""


class GroupCommit:
    """One writer thread that files the waiting filings in batches; ``submit`` from any thread or task."""

    def __init__(
        self,
        engine: Engine,
        file_one: FileOne,
        *,
        data_dir: Any,
        max_batch: int = 64,
        prepare: Prepare | None = None,
        file_many: FileMany | None = None,
    ) -> None:
        self.engine, self.file_one, self.data_dir, self.prepare = engine, file_one, data_dir, prepare
        self.file_many = file_many
        self.max_batch = max(1, max_batch)
        self._waiting: queue.SimpleQueue[Filing | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self._writing = False
        self.filings = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="claimflow-group-commit", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is waiting, then stop."""
        if self._thread is not None:
            self._waiting.put(None)
            self._thread.join(timeout)
            self._thread = None

    @property
    def busy(self) -> bool:
        """Filings are waiting or being written: what else this process does (starting runs) may wait."""
        return self._writing or not self._waiting.empty()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, filing: Filing) -> Future[Answer]:
        self._waiting.put(filing)
        return filing.future

    async def file(self, filing: Filing) -> Answer:
        return await asyncio.wrap_future(self.submit(filing))

    def _run(self) -> None:
        while True:
            first = self._waiting.get()
            if first is None:
                return
            batch, stopping = [first], False
            while len(batch) < self.max_batch:
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._writing = True
            try:
                for attempt in range(1, RETRIES + 1):
                    try:
                        self._write(batch, last=attempt == RETRIES)
                        break
                    except _Again:
                        logger.warning("group commit: batch of %d rolled back by the database (deadlock or conflict); "
                                       "writing it again (%d)", len(batch), attempt)  # fmt: skip
            except Exception:  # never leave a request waiting, nor the writer dead
                logger.exception("group commit: a batch of %d filing(s) failed", len(batch))
                self._answer(batch, {n: RuntimeError("the filing could not be written") for n in range(len(batch))})
            finally:
                self._writing = False
            if stopping:
                return

    def _write(self, batch: list[Filing], *, last: bool = True) -> None:
        answers: dict[int, Answer | BaseException] = {}
        stores: list[AttachmentStore] = []
        try:
            with session_scope(self.engine) as session:
                if self.prepare is not None:
                    self.prepare(session, batch)
                answers.update(self._many(session, batch, stores))
                for number, filing in enumerate(batch):
                    if number in answers:
                        continue
                    try:
                        answers[number] = self._one(session, filing, stores)
                    except OperationalError:
                        raise  # the connection is gone, or a deadlock: the whole batch is rolled back
                    except Exception as exc:
                        answers[number] = exc
        except BaseException as exc:  # the commit (or the connection) failed: nothing of the batch is known filed
            if _retryable(exc) and not last:
                for store in stores:
                    store.discard()
                raise _Again from exc
            for store in stores:
                if isinstance(exc, OperationalError):  # perhaps after COMMIT: keep what was committed
                    store.discard_uncommitted(self.engine)
                else:
                    store.discard()
            for number in range(len(batch)):
                if not isinstance(answers.get(number), BaseException):
                    answers[number] = exc
            if not isinstance(exc, Exception):
                self._answer(batch, answers)
                raise
        else:
            for store in stores:
                store.keep()
        self.batches += 1
        self.filings += len(batch)
        self._answer(batch, answers)

    def _many(self, session: Session, batch: list[Filing], stores: list[AttachmentStore]) -> dict[int, Answer]:
        """The filings ``file_many`` takes, filed at once under one savepoint; none when it fails (each is then
        filed on its own, so one the database refuses is refused alone)."""
        if self.file_many is None:
            return {}
        store = AttachmentStore(self.data_dir)
        try:
            with session.begin_nested():
                done = self.file_many(session, batch, store)
        except OperationalError:
            store.discard()
            raise  # the connection is gone, or a deadlock: the whole batch is rolled back
        except Exception as exc:
            store.discard()
            logger.warning("group commit: a batch of %d could not be filed at once (%s); filing each on its own",
                           len(batch), type(exc).__name__)  # fmt: skip
            return {}
        stores.append(store)
        return done

    def _one(self, session: Session, filing: Filing, stores: list[AttachmentStore]) -> Answer:
        """File one under a savepoint; its attachment files join ``stores`` once it is filed, else are removed."""
        for attempt in (1, 2):
            store = AttachmentStore(self.data_dir)
            try:
                with session.begin_nested():
                    answer = self.file_one(session, filing, store)
            except IntegrityError:
                store.discard()
                if filing.key is None or attempt == 2:
                    raise
                continue  # a twin with the same key was committed by another process meanwhile: replay its answer
            except BaseException:
                store.discard()
                raise
            stores.append(store)
            return answer
        raise AssertionError("unreachable")

    @staticmethod
    def _answer(batch: list[Filing], answers: dict[int, Answer | BaseException]) -> None:
        for number, filing in enumerate(batch):
            if filing.future.done():  # answered already, or the client went away (its case is filed all the same)
                continue
            result = answers[number]
            try:
                if isinstance(result, BaseException):
                    filing.future.set_exception(result)
                else:
                    filing.future.set_result(result)
            except InvalidStateError:  # cancelled meanwhile
                continue

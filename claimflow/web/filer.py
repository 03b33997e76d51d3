"""The intake's filing process: one process writes every filing, the API's processes only speak HTTP.

In one API process the group commit's writer thread and the event loop take turns on the interpreter lock: under
load (``bench/intake.py``, concurrency 64) the writer used about two thirds of the process's CPU and the posts and
answers the rest, so the process stopped at one core while the second stood partly idle. ``claimflow api --filer``
runs the writer (``claimflow.web.groupcommit.GroupCommit``, as in the API) in a process of its own; each API process
checks a post (its size, signature, JSON, fields, attachments) and hands the filing over a Unix socket
(``multiprocessing.connection``: pickled, both sides proving a key made for this start) to that process, which
answers it from the commit as the in-process writer does. Nothing changes for a source: the ``202`` still comes
only after the case, its events, its acknowledgement, its attachments and its idempotency record are committed.

- One filing process serves every API process (``--workers N``), so their batches never wait on each other's
  counter and load locks, as two API processes' batches do.
- A filing refused (a reused key, an unknown related case, a value the database refuses) comes back as the same
  error the in-process writer raises, and gets the same answer.
- The filing process gone or unreachable: the filings it held and every new one are answered 503 (retry with the
  same Idempotency-Key; whether a held one was committed is not known, its key makes the retry safe), and
  ``claimflow api --filer`` starts it again. Alive but not answering, it gets a post at most ``SEND_SECONDS`` to be
  handed over and ``ANSWER_SECONDS`` to be answered, then 503. It ends itself when the process that started it is
  gone.

Run by hand beside uvicorn: ``CLAIMFLOW_API_FILER_SOCKET=/run/claimflow/filer.sock CLAIMFLOW_API_FILER_KEY=...
python -m claimflow.web.filer``, then uvicorn (``--factory claimflow.web.app:create_app``) with the same two
variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import pickle
import queue
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener, answer_challenge, deliver_challenge
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import SecretStr
from sqlalchemy.exc import OperationalError

from claimflow.settings import Settings
from claimflow.web.groupcommit import Filing, GroupCommit
from models.errors import InvalidInput, NotFound
from tasks.intake import Answer, IdempotencyConflict

logger = logging.getLogger("claimflow.web.filer")

SOCKET_ENV, KEY_ENV = "CLAIMFLOW_API_FILER_SOCKET", "CLAIMFLOW_API_FILER_KEY"
PARENT_ENV = "CLAIMFLOW_API_FILER_PARENT"
"""Set by ``claimflow api --filer``: the process that started it (it ends with it, and leaves Ctrl-C to it)."""


class FilingUnavailable(OperationalError):
    """The filing process cannot be reached, or ended with filings in hand: answered 503 as a database outage is
    (retry with the same Idempotency-Key)."""

    def __init__(self, reason: str) -> None:
        super().__init__(None, None, ConnectionError(reason))
        self.reason = reason


# --- what crosses the socket --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A filing's error as it crosses the socket: its kind and its words (no traceback, no database object)."""

    kind: str
    message: str


KINDS: dict[str, type[Exception]] = {"conflict": IdempotencyConflict, "not_found": NotFound, "invalid": InvalidInput}


def refusal_of(exc: BaseException) -> Refusal:
    for kind, error in KINDS.items():
        if isinstance(exc, error):
            return Refusal(kind, str(exc))
    if isinstance(exc, OperationalError):
        return Refusal("unavailable", f"the case database is unavailable ({type(exc.orig or exc).__name__})")
    return Refusal("failed", "the filing could not be written")


def exception_of(refusal: Refusal) -> Exception:
    if refusal.kind in KINDS:
        return KINDS[refusal.kind](refusal.message)
    if refusal.kind == "unavailable":
        return FilingUnavailable(refusal.message)
    return RuntimeError(refusal.message)


PROTOCOL = pickle.HIGHEST_PROTOCOL
"""Both sides pickle with the plain C pickler (``Connection.send`` makes a ``ForkingPickler`` per message: a tenth
of an API process's CPU under load)."""

Request = tuple[int, str, Any, list[Any], "str | None", str]
"""What an API process sends: its request's number, then the filing's source, data, attachments, key and digest."""

Reply = list[tuple[int, "Answer | Refusal"]]
"""What the filing process sends back: answers by request number, as many as are ready."""


# --- the filing process -------------------------------------------------------------------------------------


class _Peer:
    """One API process's connection: a thread reads its filings into the group commit, one sends their answers back
    (those that are ready together in one message)."""

    def __init__(self, connection: Connection, committer: GroupCommit, authkey: bytes) -> None:
        self.connection, self.committer, self.authkey = connection, committer, authkey
        self.ready: queue.SimpleQueue[tuple[int, Answer | Refusal, bool] | None] = queue.SimpleQueue()
        """Answers to send: the request's number, the answer, and whether it was held (counted in ``held``)."""
        self.held = 0
        self.accepting = True
        self._lock = threading.Lock()
        self.sender = threading.Thread(target=self._send, name="claimflow-filer-send", daemon=True)
        threading.Thread(target=self._read, name="claimflow-filer-read", daemon=True).start()  # starts the sender

    def _read(self) -> None:
        try:  # the key proved both ways here, not in the accepting thread: a peer that says nothing holds up only
            deliver_challenge(self.connection, self.authkey)  # its own thread
            answer_challenge(self.connection, self.authkey)
        except Exception:  # a wrong key, or gone
            logger.warning("filing process: a connection was refused (wrong key, or it went away)")
            self.connection.close()
            return
        self.sender.start()
        try:
            while True:
                message = self.connection.recv_bytes()
                number, source, data, attachments, key, digest = pickle.loads(message)  # noqa: S301 (a peer that proved the key)
                filing = Filing(source, data, attachments, key, digest)
                with self._lock:
                    if not self.accepting:  # stopping: answered 503 at once, never left in a queue nobody drains
                        self.ready.put((number, Refusal("unavailable", "the filing process is stopping"), False))
                        continue
                    self.held += 1
                filing.future.add_done_callback(functools.partial(self._done, number))
                self.committer.submit(filing)
        except (EOFError, OSError):
            pass  # the API process went away: what it sent is filed all the same
        except Exception:
            logger.exception("filing process: a request could not be read; the connection is closed")
        self.ready.put(None)

    def close_intake(self) -> None:
        """Take no more filings on this connection (the filing process is stopping); those it holds are answered."""
        with self._lock:
            self.accepting = False

    def _done(self, number: int, future: Future[Answer]) -> None:
        exc = future.exception()
        self.ready.put((number, refusal_of(exc) if exc is not None else future.result(), True))

    def _send(self) -> None:
        closing = False
        while not closing or self.held:
            first = self.ready.get()
            reply: Reply = []
            held = 0
            for item in [first, *_drain(self.ready)]:
                if item is None:
                    closing = True
                else:
                    reply.append(item[:2])
                    held += item[2]
            if not reply:
                continue
            with self._lock:
                self.held -= held
            try:
                self.connection.send_bytes(pickle.dumps(reply, PROTOCOL))
            except (OSError, ValueError):
                pass  # the API process went away; its filings are filed (or not) all the same
            except Exception:  # an answer that cannot be sent: the connection is closed, the API answers 503
                logger.exception("filing process: answers could not be sent; the connection is closed")
                break
        self.connection.close()


def _drain(waiting: queue.SimpleQueue[Any]) -> list[Any]:
    out = []
    while True:
        try:
            out.append(waiting.get_nowait())
        except queue.Empty:
            return out


def serve(committer: GroupCommit, address: str, authkey: bytes, *, stop: threading.Event) -> None:
    """Take filings from the API's processes on ``address`` until ``stop``; then write what waits and answer it."""
    listener = Listener(address, family="AF_UNIX", backlog=128)  # the key is proved by each peer's own thread
    peers: list[_Peer] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                connection = listener.accept()
            except Exception:
                if stop.is_set():
                    return
                logger.warning("filing process: a connection could not be accepted", exc_info=True)
                time.sleep(0.5)  # out of descriptors, say: not a busy loop
                continue
            peers[:] = [peer for peer in peers if not peer.connection.closed]
            peers.append(_Peer(connection, committer, authkey))

    threading.Thread(target=accept, name="claimflow-filer-accept", daemon=True).start()
    stop.wait()
    listener.close()
    for peer in list(peers):
        peer.close_intake()
    committer.stop()  # what it holds is written and answered first
    for peer in list(peers):
        peer.ready.put(None)  # then each connection is closed (the API's processes answer a later filing 503)
    deadline = time.monotonic() + 10
    for peer in list(peers):
        if peer.sender.is_alive():
            peer.sender.join(timeout=max(0.0, deadline - time.monotonic()))


def main() -> None:
    """``python -m claimflow.web.filer``: the filing process, on ``CLAIMFLOW_API_FILER_SOCKET``."""
    from datetime import UTC, datetime

    from claimflow.db import get_engine
    from claimflow.migrate import require_current_schema
    from claimflow.settings import get_settings
    from claimflow.web.app import freeze_startup_heap
    from claimflow.web.intake import Intake
    from tasks.workflow import Desk

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)  # its start and stop; of the rest, warnings and errors, as in the API's processes
    settings = get_settings()
    if not settings.api_filer_socket or settings.api_filer_key is None:
        raise SystemExit(f"set {SOCKET_ENV} and {KEY_ENV}")
    parent = int(os.environ.get(PARENT_ENV) or 0)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl-C reaches the API's processes too: started by 'claimflow api', this one is stopped by it after their
    # requests are answered; started by hand, Ctrl-C stops it
    signal.signal(signal.SIGINT, signal.SIG_IGN if parent else on_signal)
    engine = get_engine(settings.resolved_database_url)
    require_current_schema(engine)
    intake = Intake(settings, engine, Desk.of(settings), lambda: datetime.now(UTC))
    committer = intake.group_commit()
    committer.start()
    if settings.api_freeze_heap:
        freeze_startup_heap()

    def watch_parent() -> None:  # started by 'claimflow api --filer': end with it, even after its kill -9
        while not stop.wait(1.0):
            if parent and os.getppid() != parent:
                logger.warning("filing process: the API that started it is gone; stopping")
                stop.set()

    threading.Thread(target=watch_parent, name="claimflow-filer-parent", daemon=True).start()
    key = settings.api_filer_key.get_secret_value().encode()
    logger.info("filing process %d: filing for the API on %s", os.getpid(), settings.api_filer_socket)
    serve(committer, settings.api_filer_socket, key, stop=stop)
    logger.info("filing process %d: stopped (%d filings in %d batches)", os.getpid(), committer.filings,
                committer.batches)  # fmt: skip


# --- the API's side -----------------------------------------------------------------------------------------


class RemoteCommit:
    """Hands an API process's filings to the filing process and awaits each answer (the in-process
    ``GroupCommit``'s ``file``, across a socket)."""

    running = True
    """Filings go to the filing process (never filed here): when it cannot be reached they are answered 503."""

    def __init__(self, address: str, authkey: bytes) -> None:
        self.address, self.authkey = address, authkey
        self._connection: Connection | None = None
        self._numbers = itertools.count(1)
        self._waiting: dict[int, _Waiting] = {}
        self._lock = threading.Lock()
        self.filings = 0

    @property
    def busy(self) -> bool:
        return bool(self._waiting)

    def start(self) -> None:
        try:
            with self._lock:
                self._connect()
        except FilingUnavailable as exc:  # the first filing tries again
            logger.warning("%s", exc.reason)

    def stop(self) -> None:
        locked = self._lock.acquire(timeout=5)  # a send stuck on a hung filing process does not hold up the stop
        try:
            connection, self._connection = self._connection, None
        finally:
            if locked:
                self._lock.release()
        if connection is not None:
            _hang_up(connection)

    def _connect(self) -> Connection:
        """The connection, made (and the key proved both ways) if there is none; the caller holds ``_lock``."""
        if self._connection is None:
            try:
                connection = Client(self.address, family="AF_UNIX", authkey=self.authkey)
            except (OSError, EOFError) as exc:
                raise FilingUnavailable(f"the filing process cannot be reached ({type(exc).__name__})") from None
            except AuthenticationError:
                raise FilingUnavailable("the filing process cannot be reached: it refused this process's key "
                                        "(CLAIMFLOW_API_FILER_KEY)") from None  # fmt: skip
            threading.Thread(target=self._read, args=(connection,), name="claimflow-filer-answers",
                             daemon=True).start()  # fmt: skip
            self._connection = connection
        return self._connection

    def _connect_and_send(self, payload: bytes, waiting: _Waiting) -> None:
        with self._lock:
            if self._connection is None:
                self._connect()
            assert self._connection is not None
            self._send(self._connection, payload, waiting)

    def _send(self, connection: Connection, payload: bytes, waiting: _Waiting) -> None:
        """Send under ``_lock``; a connection that fails is hung up (its reader answers the others)."""
        waiting.connection = connection
        try:
            connection.send_bytes(payload)
        except Exception:  # gone (OSError), closed meanwhile (ValueError, TypeError)
            _hang_up(connection)
            raise FilingUnavailable("the filing process cannot be reached") from None

    async def file(self, filing: Filing) -> Answer:
        number = next(self._numbers)
        payload = pickle.dumps((number, filing.source, filing.data, filing.attachments, filing.key, filing.digest),
                               PROTOCOL)  # fmt: skip
        waiting = _Waiting(asyncio.get_running_loop())
        self._waiting[number] = waiting
        try:
            connection = self._connection
            if (connection is not None and len(payload) <= INLINE_BYTES and _writable(connection)
                    and self._lock.acquire(blocking=False)):  # fmt: skip
                try:  # the usual case: sent at once from the event loop
                    self._send(connection, payload, waiting)
                finally:
                    self._lock.release()
            else:  # connecting (the key's proof), a large body or a full socket: never on the event loop
                try:
                    await asyncio.wait_for(asyncio.to_thread(self._connect_and_send, payload, waiting), SEND_SECONDS)
                except TimeoutError:
                    raise FilingUnavailable("the filing process does not take filings (no answer within "
                                            f"{SEND_SECONDS:.0f} s)") from None  # fmt: skip
            try:
                answer = await asyncio.wait_for(waiting.future, ANSWER_SECONDS)
            except TimeoutError:
                raise FilingUnavailable(
                    f"no answer from the filing process within {ANSWER_SECONDS:.0f} s; whether "
                    "it was filed is not known: retry with the same Idempotency-Key"
                ) from None
        finally:
            self._waiting.pop(number, None)
        self.filings += 1
        return answer

    def _read(self, connection: Connection) -> None:
        try:
            while True:
                reply: Reply = pickle.loads(connection.recv_bytes())  # noqa: S301 (a peer that proved the key)
                _settle_all([(self._waiting.get(number), result) for number, result in reply])
        except (EOFError, OSError):
            pass
        except Exception:  # an answer that cannot be read: never leave a request waiting on this connection
            logger.exception("the filing process's answer could not be read; its connection is closed")
        with self._lock:  # the next filing connects again; closed under the lock, never in the middle of a send
            if self._connection is connection:
                self._connection = None
            if not connection.closed:
                connection.close()
        gone = FilingUnavailable("the filing process ended with this filing in hand; whether it was filed is "
                                 "not known: retry with the same Idempotency-Key")  # fmt: skip
        _settle_all([(w, gone) for w in list(self._waiting.values()) if w.connection is connection])


INLINE_BYTES = 32 * 1024
"""A filing up to this size is sent from the event loop when the socket has room; a larger one from a thread."""

SEND_SECONDS, ANSWER_SECONDS = 10.0, 60.0
"""How long a filing may take to reach the filing process, and then to be answered, before it is answered 503."""


def _writable(connection: Connection) -> bool:
    try:
        return bool(select.select([], [connection.fileno()], [], 0)[1])
    except (OSError, ValueError):
        return False


def _hang_up(connection: Connection) -> None:
    """Shut ``connection`` down so that both sides see it closed: its reader thread's read ends, and that thread
    closes it (the one place it is closed, under the lock: a second close from here raced it, EBADF, and could have
    closed a descriptor the process had meanwhile given to something else)."""
    with contextlib.suppress(OSError, ValueError), socket.socket(fileno=os.dup(connection.fileno())) as duplicate:
        duplicate.shutdown(socket.SHUT_RDWR)


@dataclass
class _Waiting:
    """A filing sent and not yet answered: the loop its request waits on, and the connection it went by."""

    loop: asyncio.AbstractEventLoop
    connection: Connection | None = None
    future: asyncio.Future[Answer] = field(init=False)

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()


def _settle_all(settled: list[tuple[_Waiting | None, Any]]) -> None:
    """Answer the waiting filings, once per event loop (from the reader's thread)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Answer], Any]]] = {}
    for waiting, result in settled:
        if waiting is not None:
            by_loop.setdefault(waiting.loop, []).append((waiting.future, result))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a loop closed: nobody waits there any more
            loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[tuple[asyncio.Future[Answer], Any]]) -> None:
    for future, result in items:
        if future.done():
            continue
        if isinstance(result, Refusal):
            future.set_exception(exception_of(result))
        elif isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


# --- started by 'claimflow api --filer' ---------------------------------------------------------------------


class FilerProcess:
    """The filing process as a child of ``claimflow api``, started again whenever it ends before ``stop``."""

    STEADY_SECONDS = 60.0
    """A filing process that ran this long before it ended is started again after the shortest wait: the back-off
    grows only over deaths in a row (half a second more each, up to 5 s)."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_event: Callable[[str], None] | None = None,
        steady_seconds: float = STEADY_SECONDS,
    ) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="claimflow-filer-"))  # 0700: only this user reaches it
        self.address = str(self.directory / "filer.sock")
        self.key = secrets.token_hex(32)
        self.settings = settings.model_copy(update={"api_filer_socket": self.address,
                                                    "api_filer_key": SecretStr(self.key)})  # fmt: skip
        self.env = {**os.environ, SOCKET_ENV: self.address, KEY_ENV: self.key, PARENT_ENV: str(os.getpid())}
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.steady_seconds = steady_seconds
        self._in_a_row = 0
        self._ready_at: float | None = None
        """When the running filing process answered on its socket; None while it has not (or never did)."""
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self.on_event = on_event or (lambda text: logger.warning("%s", text))

    @property
    def environment(self) -> dict[str, str]:
        """What an API process needs to reach it."""
        return {SOCKET_ENV: self.address, KEY_ENV: self.key}

    def start(self, *, timeout: float = 60.0) -> None:
        try:
            self._spawn(timeout=timeout)
        except BaseException:
            self.stop()  # no child left behind, nor its directory
            raise
        self._watcher = threading.Thread(target=self._watch, name="claimflow-filer-watch", daemon=True)
        self._watcher.start()

    def _spawn(self, *, timeout: float) -> None:
        with self._lock:  # never a new one once stop() has begun
            if self._stopping.is_set():
                return
            Path(self.address).unlink(missing_ok=True)
            self._ready_at = None
            process = self.process = subprocess.Popen([sys.executable, "-m", "claimflow.web.filer"], env=self.env)
        deadline = time.monotonic() + timeout
        while not Path(self.address).exists() and not self._stopping.is_set():
            if process.poll() is not None:
                raise InvalidInput(f"the filing process ended at start (exit code {process.returncode})")
            if time.monotonic() > deadline:
                process.kill()
                raise InvalidInput(f"the filing process did not start within {timeout:.0f} s")
            time.sleep(0.05)
        self._ready_at = time.monotonic()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self.process
            assert process is not None
            code = process.wait()
            if self._stopping.is_set():
                return
            self.restarts += 1
            # one that never got ready (it ended at start) counts as a death in a row, however long the last ran
            lived = time.monotonic() - self._ready_at if self._ready_at is not None else 0.0
            self._in_a_row = 1 if lived >= self.steady_seconds else self._in_a_row + 1
            wait = min(5.0, 0.5 * self._in_a_row)
            self.on_event(f"the filing process ended (exit code {code}) after {lived:.0f} s; starting it again in "
                          f"{wait:g} s")  # fmt: skip
            if self._stopping.wait(wait):
                return
            try:
                self._spawn(timeout=60.0)
            except Exception as exc:  # tried again after the next wait: the watcher itself never ends early
                self.on_event(f"the filing process could not be started again: {exc}")

    def stop(self, *, timeout: float = 30.0) -> None:
        """Write what it holds, then end it (after the API's processes have stopped)."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        Path(self.address).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.directory.rmdir()


if __name__ == "__main__":  # run as the module, not as __main__: what it pickles must name claimflow.web.filer
    from claimflow.web import filer

    filer.main()

"""The database work of the intake webhook: idempotent filing, stored attachments, the status a source may see.

Functions take the session first and leave the commit to the caller (``claimflow.web.intake``), so the case, its
first event, the acknowledgement in the outbox, the attachment rows and the idempotency record are one
transaction.

Idempotency: the ``IntakeRequest`` row is inserted *first* in the filing transaction. Two requests racing
with the same (source, key) meet on its unique constraint: on PostgreSQL the second waits for the first's
commit and then fails with ``IntegrityError``; SQLite's ``BEGIN IMMEDIATE`` queues them so the second finds
the row. Either way the caller rolls back and replays the stored answer, so one key files one case.

Attachments are written (and fsynced) *before* the commit, each under a fresh name, and deleted again if the
transaction rolls back: a committed row always has its bytes. The opposite order (rename after the commit)
would lose accepted documents when the process dies between commit and rename. A crash between write and
commit leaves a file no row points to, which is harmless: ``claimflow attachments orphans`` lists them and
``--delete`` removes those older than a grace period (``find_orphans``, ``sweep_orphans``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from claimflow.db import insert_rows, update_rows
from models.errors import ClaimflowError, NotFound
from models.tables import Attachment, Case, CaseCreate, Event, IntakeRequest, Step
from tasks.cases import get_case
from tasks.filing import intake_many, takes
from tasks.workflow import Desk, intake

logger = logging.getLogger(__name__)

ATTACHMENT_SOURCE = "webhook"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class IdempotencyConflict(ClaimflowError):
    """An ``Idempotency-Key`` used again with a different body (answered 409)."""

    exit_code = 2


@dataclass(frozen=True)
class IncomingAttachment:
    """A decoded attachment of a webhook post."""

    filename: str
    content_type: str
    content: bytes
    document_type: str | None = None


@dataclass(frozen=True)
class Answer:
    """What the API answers to a filing: status code and JSON body (``replayed`` for a repeated key)."""

    status_code: int
    body: dict[str, Any]
    case_id: int | None
    replayed: bool = False


def body_digest(body: bytes) -> str:
    """SHA-256 of a raw request body, hex: what an idempotency record remembers of the request."""
    return hashlib.sha256(body).hexdigest()


def intake_actor(source: str) -> str:
    """The actor recorded on a case filed by a webhook source."""
    return f"webhook:{source}"


def status_path(number: str) -> str:
    """The path where a source asks for a case's status."""
    return f"/v1/cases/{number}"


@dataclass
class AttachmentStore:
    """Writes attachment files under ``<data_dir>/attachments/<case number>/`` and removes them again when the
    transaction that recorded them rolls back."""

    data_dir: Path
    written: list[Path] = field(default_factory=list)

    def put(self, *, case_number: str, filename: str, content: bytes, sha256: str) -> str:
        """Write one file durably under a name no other write uses; returns its path relative to the data dir."""
        folder = self.data_dir / "attachments" / case_number
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # the customers' documents: owner only
        suffix = Path(_UNSAFE.sub("_", filename)).suffix[:16]
        name = f"{sha256[:16]}-{uuid.uuid4().hex[:12]}{suffix}"
        target = folder / name
        temporary = folder / f".{name}.part"
        with open(os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600), "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        self.written.append(target)
        _fsync_dir(folder)
        return str(target.relative_to(self.data_dir))

    def discard(self) -> None:
        """Remove what this store wrote (the transaction that recorded it did not commit)."""
        for path in self.written:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only when empty: another case's files are never touched
        self.written.clear()

    def discard_uncommitted(self, engine: Engine) -> int:
        """After a failure whose outcome is not known (the connection lost at COMMIT: the case may have been
        committed all the same), remove only the files proven uncommitted: those no ``attachment`` row names.
        When the database cannot be asked, nothing is removed (the orphan sweep removes what stays unnamed).
        Returns how many files were kept."""
        relative = {str(path.relative_to(self.data_dir)): path for path in self.written}
        try:
            with Session(engine) as session:
                named = set(session.exec(
                    select(Attachment.storage_path).where(col(Attachment.storage_path).in_(list(relative)))
                ).all()) if relative else set()  # fmt: skip
        except SQLAlchemyError:
            kept = len(self.written)
            self.written.clear()
            return kept
        self.written = [path for name, path in relative.items() if name not in named]
        self.discard()
        return len(named)

    def keep(self) -> None:
        """The transaction committed: the files belong to their rows now."""
        self.written.clear()


def _fsync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the file itself was synced
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def stored_answer(session: Session, *, source: str, idempotency_key: str, body_sha256: str) -> Answer | None:
    """The answer given before to this (source, key), or None if the key is new.

    Raises:
        IdempotencyConflict: the key was used before with a different body.
    """
    row = session.exec(
        select(IntakeRequest).where(IntakeRequest.source == source, IntakeRequest.idempotency_key == idempotency_key)
    ).first()
    if row is None:
        return None
    if row.body_sha256 != body_sha256:
        raise IdempotencyConflict(
            "this Idempotency-Key was used before with a different body; use a new key for a new request"
        )
    return Answer(row.status_code, dict(row.response), row.case_id, replayed=True)


def file_from_webhook(
    session: Session,
    desk: Desk,
    *,
    source: str,
    data: CaseCreate,
    attachments: Sequence[IncomingAttachment],
    idempotency_key: str | None,
    body_sha256: str,
    store: AttachmentStore,
    now: datetime,
) -> Answer:
    """File a case posted by ``source`` with its attachments and remember the answer under its key.

    The caller commits; on ``IntegrityError`` (a concurrent request with the same key won) it rolls back,
    calls ``store.discard()`` and replays ``stored_answer``.

    Raises:
        NotFound: the related case number names no case.
    """
    record: IntakeRequest | None = None
    if idempotency_key is not None:
        record = IntakeRequest(
            source=source,
            idempotency_key=idempotency_key,
            body_sha256=body_sha256,
            status_code=0,
            response={},
            received_at=now,
        )
        session.add(record)
        session.flush()  # takes the (source, key) slot now: a racing twin waits here, not after all the work
    case = intake(session, desk, data=data, actor=intake_actor(source), now=now)
    assert case.id is not None
    session.add_all(_stored(case, attachments, store=store, now=now))
    body = _accepted(source, case, attachments, now=now)
    if record is not None:
        record.status_code, record.response, record.case_id = 202, body, case.id
        session.add(record)
    session.flush()
    return Answer(202, body, case.id)


@dataclass(frozen=True)
class Posted:
    """One post for ``file_many_from_webhook``: what ``file_from_webhook`` takes besides the session, the desk, the
    store and the time."""

    source: str
    data: CaseCreate
    attachments: Sequence[IncomingAttachment]
    idempotency_key: str | None
    body_sha256: str


def file_many_from_webhook(
    session: Session, desk: Desk, posts: Sequence[Posted], *, store: AttachmentStore, now: datetime
) -> dict[int, Answer]:
    """File at once the posts ``tasks.filing.intake_many`` takes, each as ``file_from_webhook`` would; the caller
    commits, or rolls back and calls ``store.discard()``.

    The posts left out are the caller's to file one by one with ``file_from_webhook`` (or to replay): a related
    case or a care plan (``tasks.filing.takes``), a key given twice in the batch, and a key already taken (an answer
    stored before, or a twin committed meanwhile by another process: its slot is skipped, not waited for in an
    error). Every slot is taken first, in one insert, as ``file_from_webhook`` takes its one.

    Returns:
        The answer of each post filed, by its index in ``posts``.
    """
    keys: set[tuple[str, str]] = set()
    chosen: list[int] = []
    for index, post in enumerate(posts):
        key = (post.source, post.idempotency_key) if post.idempotency_key is not None else None
        if takes(post.data) and key not in keys:
            chosen.append(index)
            if key is not None:
                keys.add(key)
    table = IntakeRequest.__table__  # type: ignore[attr-defined]
    claims: list[dict[str, Any]] = [
        {"source": posts[i].source, "idempotency_key": posts[i].idempotency_key, "body_sha256": posts[i].body_sha256,
         "status_code": 0, "response": {}, "received_at": now}
        for i in chosen if posts[i].idempotency_key is not None
    ]  # fmt: skip
    written = insert_rows(session, table, claims, returning=(table.c.id, table.c.source, table.c.idempotency_key),
                          skip_conflicts_on=("source", "idempotency_key"))  # fmt: skip
    slots = {(src, key): slot for slot, src, key in written}
    chosen = [i for i in chosen if posts[i].idempotency_key is None or (posts[i].source, posts[i].idempotency_key)
              in slots]  # fmt: skip
    cases = intake_many(session, desk, cases=[(posts[i].data, intake_actor(posts[i].source)) for i in chosen], now=now)
    answers: dict[int, Answer] = {}
    records: list[dict[str, Any]] = []
    for index, case in zip(chosen, cases, strict=True):
        post = posts[index]
        assert case.id is not None
        session.add_all(_stored(case, post.attachments, store=store, now=now))
        body = _accepted(post.source, case, post.attachments, now=now)
        if post.idempotency_key is not None:
            records.append({"id": slots[post.source, post.idempotency_key], "status_code": 202, "response": body,
                            "case_id": case.id})  # fmt: skip
        answers[index] = Answer(202, body, case.id)
    session.flush()
    update_rows(session, table, records)
    return answers


def _stored(
    case: Case, attachments: Sequence[IncomingAttachment], *, store: AttachmentStore, now: datetime
) -> list[Attachment]:
    """The case's attachments written to ``store``, and their rows (for the caller to add)."""
    assert case.id is not None
    rows = []
    for attachment in attachments:
        digest = hashlib.sha256(attachment.content).hexdigest()
        path = store.put(
            case_number=case.number, filename=attachment.filename, content=attachment.content, sha256=digest
        )
        rows.append(
            Attachment(
                case_id=case.id,
                filename=attachment.filename,
                content_type=attachment.content_type,
                size=len(attachment.content),
                sha256=digest,
                storage_path=path,
                source=ATTACHMENT_SOURCE,
                document_type=attachment.document_type,
                received_at=now,
            )
        )
    return rows


def _accepted(source: str, case: Case, attachments: Sequence[IncomingAttachment], *, now: datetime) -> dict[str, Any]:
    """The 202's body for a filed case (also stored under its key, for a replay)."""
    logger.info("webhook %s filed %s with %d attachment(s)", source, case.number, len(attachments))
    return {
        "case_number": case.number,
        "kind": str(case.kind),
        "status": case.status,
        "status_url": status_path(case.number),
        "received_at": now.isoformat(),
        "attachments": len(attachments),
    }


def filed_by(session: Session, *, number: str, source: str, for_update: bool = False) -> Case:
    """The case ``number`` if ``source`` filed it (its first event's actor).

    Raises:
        NotFound: no such case, or another channel's: the two look the same, so a source cannot probe for other
            sources' case numbers.
    """
    refused = NotFound(f"no case numbered {number!r} filed by this source")
    try:
        case = get_case(session, number, for_update=for_update)
    except NotFound:
        raise refused from None
    filed = session.exec(select(Event).where(Event.case_id == case.id).order_by(col(Event.sequence)).limit(1)).first()
    if filed is None or filed.actor != intake_actor(source):
        raise refused
    return case


def case_status(session: Session, *, number: str, source: str) -> dict[str, Any]:
    """What a source may see of a case it filed: numbers, states and dates, no personal data.

    Raises:
        NotFound: no such case, or the case was not filed by ``source`` (the two look the same, so a source
            cannot probe for other sources' case numbers).
    """
    case = filed_by(session, number=number, source=source)
    steps = session.exec(
        select(Step).where(Step.case_id == case.id, col(Step.status).in_(("open", "paused"))).order_by(col(Step.id))
    ).all()
    return {
        "case_number": case.number,
        "kind": str(case.kind),
        "status": case.status,
        "outcome": case.outcome,
        "opened_at": case.opened_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "open_steps": [
            {"name": s.name, "status": s.status, "due_at": s.due_at.isoformat() if s.due_at else None} for s in steps
        ],
    }


def orphan_files(session: Session, *, data_dir: Path) -> list[Path]:
    """Attachment files no row points to (left by a crash between write and commit)."""
    root = data_dir / "attachments"
    if not root.exists():
        return []
    known = set(session.exec(select(Attachment.storage_path)).all())
    return sorted(p for p in root.rglob("*") if p.is_file() and str(p.relative_to(data_dir)) not in known)


@dataclass(frozen=True)
class Orphan:
    """An attachment file no row points to, and whether it is old enough to be swept."""

    path: Path
    size: int
    modified: datetime
    sweepable: bool


def find_orphans(session: Session, *, data_dir: Path, now: datetime, grace: timedelta) -> list[Orphan]:
    """The orphan files, each marked sweepable once it is older than ``grace``: a younger one may belong to a
    filing whose transaction has not committed yet (the bytes are written first)."""
    found = []
    for path in orphan_files(session, data_dir=data_dir):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # removed meanwhile (a filing rolled back, another sweep)
        modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        found.append(Orphan(path, stat.st_size, modified, now - modified >= grace))
    return found


def sweep_orphans(session: Session, orphans: Sequence[Orphan], *, data_dir: Path) -> list[Path]:
    """Delete the sweepable orphan files that are still orphans (the rows are read again just before: a filing
    may have committed one meanwhile) and still as old (not reused since); returns those deleted."""
    known = set(session.exec(select(Attachment.storage_path)).all())
    deleted = []
    for orphan in orphans:
        if not orphan.sweepable or str(orphan.path.relative_to(data_dir)) in known:
            continue
        with contextlib.suppress(FileNotFoundError):
            if datetime.fromtimestamp(orphan.path.stat().st_mtime, tz=UTC) != orphan.modified:
                continue  # touched since it was listed: a filing is using it
            orphan.path.unlink()
            deleted.append(orphan.path)
    return deleted

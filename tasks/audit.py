"""Verifying the audit log's hash chains in the database, and the signed checkpoints of their heads.

A chain checked against itself shows a changed or reordered event, not one cut short, removed with its case, or
rewritten end to end with fresh hashes. Checkpoints close that: ``write_checkpoint`` (the reconciler, every few
minutes, and ``claimflow audit verify`` after a clean check) signs the newest head of every case that changed with
the desk's audit key, which the database does not hold, and chains each checkpoint to the one before;
``write_anchor`` keeps the newest outside the database. ``verify_checkpoints`` then finds any checkpointed event
gone or different, a checkpoint dropped or forged, and a database restored behind its anchor. Events newer than
the last checkpoint are protected by their chain only until the next one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, text
from sqlmodel import Session, col, select

from models.audit import (
    ChainBreak,
    ChainLink,
    check_checkpoints,
    checkpoint_body,
    sign_checkpoint,
    verify_chain,
)
from models.errors import ClaimflowError
from models.tables import AuditCheckpoint, Case, Event


@dataclass(frozen=True)
class AuditReport:
    cases_checked: int
    events_checked: int
    breaks: list[ChainBreak]

    @property
    def ok(self) -> bool:
        return not self.breaks


def _links(session: Session, case_id: int, counter: list[int]) -> Iterator[ChainLink]:
    statement = select(Event).where(Event.case_id == case_id).order_by(col(Event.sequence))
    for event in session.exec(statement):
        counter[0] += 1
        yield ChainLink(
            sequence=event.sequence,
            at=event.at,
            actor=event.actor,
            type=event.type,
            data=event.data,
            prev_hash=event.prev_hash,
            hash=event.hash,
        )


def verify_cases(session: Session, cases: list[Case] | None = None) -> AuditReport:
    """Verify the chain of each given case (all cases when None); reports the first break of each."""
    if cases is None:
        cases = list(session.exec(select(Case).order_by(col(Case.id))))
    counter = [0]
    breaks = []
    for case in cases:
        assert case.id is not None
        found = verify_chain(case.number, _links(session, case.id, counter))
        if found is not None:
            breaks.append(found)
    return AuditReport(cases_checked=len(cases), events_checked=counter[0], breaks=breaks)


# --- checkpoints ------------------------------------------------------------------------------------------------

CHECKPOINT_LOCK = 0x436C61696D  # PostgreSQL advisory lock: one checkpoint writer at a time
OVERLAP = 1000
"""Each checkpoint also reads the last ``OVERLAP`` event ids before the previous one's mark: ids are handed out
before commit, so an event can become visible after a newer id was checkpointed; its case's head is then signed
by the next checkpoint (a head signed twice is harmless)."""


def write_checkpoint(session: Session, *, key: bytes, now: datetime) -> AuditCheckpoint | None:
    """Sign the heads of the cases whose events arrived since the last checkpoint (None: nothing new). The caller
    commits, then ``write_anchor``. Two writers at once (the reconciler and ``audit verify``) take turns: each
    chains onto the newest checkpoint."""
    if session.get_bind().dialect.name == "postgresql":  # SQLite writers are serialised by the database itself
        session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": CHECKPOINT_LOCK})
    last = session.exec(select(AuditCheckpoint).order_by(col(AuditCheckpoint.id).desc())).first()
    after = last.through_event_id if last else 0
    through = session.exec(select(func.max(Event.id))).one()
    if through is None or through <= after:
        return None
    after = max(0, after - OVERLAP)
    newest = (
        select(func.max(Event.id)).where(col(Event.id) > after, col(Event.id) <= through).group_by(col(Event.case_id))
    )
    heads = {number: [sequence, digest] for number, sequence, digest in session.exec(
        select(Case.number, Event.sequence, Event.hash).join(Case, col(Case.id) == col(Event.case_id))
        .where(col(Event.id).in_(newest))
    )}  # fmt: skip
    previous = last.signature if last else ""
    body = checkpoint_body(at=now, through_event_id=int(through), heads=heads, previous=previous)
    row = AuditCheckpoint(at=now, through_event_id=int(through), heads=heads, previous=previous,
                          signature=sign_checkpoint(key, body))  # fmt: skip
    session.add(row)
    session.flush()
    return row


class CheckpointsTampered(ClaimflowError):
    """The checkpoint the anchor names is not in the database: no new one is chained onto what is left."""


def read_anchor(path: Path) -> tuple[int, str] | None:
    """The anchor's (id, signature), or None where there is none yet.

    Raises:
        CheckpointsTampered: the file is there but does not read as an anchor.
    """
    try:
        written = path.read_text().strip()
    except FileNotFoundError:
        return None
    anchored_id, _, signature = written.partition(" ")
    if not anchored_id.isdigit() or len(signature) != 64:
        raise CheckpointsTampered(f"{path} does not read as an audit anchor (id and signature)")
    return int(anchored_id), signature


def checkpoint(session: Session, *, key: bytes, now: datetime, anchor: Path | None = None) -> tuple[int, str] | None:
    """``write_checkpoint``, as (id, signature) for ``write_anchor`` once the caller committed.

    Raises:
        CheckpointsTampered: ``anchor`` names a checkpoint the database no longer holds as signed (checkpoints
            deleted, or the database restored to an older state): a new checkpoint would start a fresh history
            over the gap, so none is written until someone looks (``claimflow audit verify``).
    """
    anchored = read_anchor(anchor) if anchor is not None else None
    if anchored is not None:
        kept = session.get(AuditCheckpoint, anchored[0])
        if kept is None or kept.signature != anchored[1]:
            raise CheckpointsTampered(f"checkpoint {anchored[0]}, the newest written ({anchor}), is not in the "
                                      "database as signed: no checkpoint is written over the gap")  # fmt: skip
    row = write_checkpoint(session, key=key, now=now)
    return (int(row.id or 0), row.signature) if row is not None else None


def anchor_path(data_dir: Path) -> Path:
    return data_dir / "audit-anchor"


def write_anchor(path: Path, written: tuple[int, str]) -> None:
    """The newest checkpoint (id, signature), written outside the database: a database restored to an older state,
    or stripped of its newest checkpoints, no longer ends where the anchor says."""
    handle, name = tempfile.mkstemp(prefix=".audit-anchor-", dir=path.parent)  # its own file: writers never collide
    try:
        with os.fdopen(handle, "w") as out:
            out.write(f"{written[0]} {written[1]}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def verify_checkpoints(session: Session, *, key: bytes, anchor: Path | None = None) -> list[str]:
    """Every checkpoint signed and in order, the newest one where the anchor says, and every checkpointed head
    still in its chain: the problems found, in words (none: the log is as complete as when last checkpointed)."""
    problems: list[str] = []
    try:  # read before the checkpoints: one written meanwhile is then simply newer than the anchor
        anchored = read_anchor(anchor) if anchor is not None else None
    except CheckpointsTampered as unreadable:
        anchored, problems = None, [str(unreadable)]
    records = list(session.exec(select(AuditCheckpoint).order_by(col(AuditCheckpoint.id))))
    heads, found = check_checkpoints(key, records)
    problems += found
    if anchored is not None:
        anchored_id, anchored_signature = anchored
        signed = {r.id: r.signature for r in records}
        if signed.get(anchored_id) != anchored_signature:
            problems.append(
                f"checkpoint {anchored_id}, the newest written ({anchor}), is not in the database as "
                "signed: checkpoints were removed, or the database restored to an older state"
            )
    numbers = sorted(heads)
    for start in range(0, len(numbers), 200):
        part = numbers[start : start + 200]
        sequences = {sequence for number in part for sequence in heads[number]}
        stored = {(number, sequence): digest for number, sequence, digest in session.exec(
            select(Case.number, Event.sequence, Event.hash).join(Case, col(Case.id) == col(Event.case_id))
            .where(col(Case.number).in_(part), col(Event.sequence).in_(sequences))
        )}  # fmt: skip
        for number in part:
            for sequence, digest in sorted(heads[number].items()):
                kept = stored.get((number, sequence))
                if kept is None:
                    problems.append(f"{number}: event #{sequence} was checkpointed and is gone (events were deleted)")
                    break
                if kept != digest:
                    problems.append(f"{number}: event #{sequence} is not the one checkpointed (the chain was "
                                    "rewritten)")  # fmt: skip
                    break
    return problems

"""The audit log's completeness: signed checkpoints of the chains' heads find what a chain checked against itself
cannot (events cut from the end, a case removed with its events, a chain rewritten with fresh hashes), and a
checkpoint dropped, forged or a database restored behind its anchor. On both databases, the triggers bypassed the
way an attacker with the database's owner rights would."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from claimflow.db import session_scope
from models.audit import GENESIS_HASH, canonical_content, chain_hash
from models.tables import AuditCheckpoint, Case, Event
from tasks.audit import CheckpointsTampered, anchor_path, checkpoint, verify_cases, verify_checkpoints, write_anchor

KEY = b"k" * 32


def _tamper(world, *statements: str, **values: object) -> None:
    """Run statements past the event log's UPDATE/DELETE triggers (an owner of the database can)."""
    with world.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for operation in ("update", "delete"):
                connection.execute(text(f"DROP TRIGGER IF EXISTS event_append_only_{operation}"))
        for statement in statements:
            connection.execute(text(statement), values)
        if connection.dialect.name == "sqlite":
            for operation in ("UPDATE", "DELETE"):
                connection.execute(text(
                    f"CREATE TRIGGER event_append_only_{operation.lower()} BEFORE {operation} ON event "
                    f"BEGIN SELECT RAISE(ABORT, 'the event log is append-only: {operation} refused'); END"))  # fmt: skip


def _sign(world, tmp_path: Path) -> tuple[int, str]:
    with session_scope(world.engine) as session:
        signed = checkpoint(session, key=KEY, now=world.now + timedelta(minutes=2), anchor=anchor_path(tmp_path))
    assert signed is not None
    write_anchor(anchor_path(tmp_path), signed)
    return signed


def _findings(world, tmp_path: Path) -> list[str]:
    with Session(world.engine) as session:
        return verify_checkpoints(session, key=KEY, anchor=anchor_path(tmp_path))


def _rehash(world, case_id: int) -> None:
    """Rewrite a case's chain from its first event with fresh hashes: the chain checks against itself again."""
    with Session(world.engine) as session:
        case = session.get(Case, case_id)
        events = list(session.exec(select(Event).where(Event.case_id == case_id).order_by(col(Event.sequence))))
    previous, updates = GENESIS_HASH, []
    for event in events:
        content = canonical_content(case_number=case.number, sequence=event.sequence, at=event.at, actor=event.actor,
                                    type=event.type, data=event.data)  # fmt: skip
        digest = chain_hash(previous, content)
        updates.append((event.id, previous, digest))
        previous = digest
    for event_id, prev_hash, digest in updates:
        _tamper(world, "UPDATE event SET prev_hash = :p, hash = :h WHERE id = :i", p=prev_hash, h=digest, i=event_id)


def test_a_chain_cut_short_removed_or_rewritten_is_found_against_its_signed_checkpoint(world, tmp_path: Path) -> None:
    cut, removed, rewritten, untouched = (world.file(product_line="motor") for _ in range(4))
    first = _sign(world, tmp_path)
    assert _findings(world, tmp_path) == []
    with session_scope(world.engine) as session:  # nothing new since: no checkpoint
        assert checkpoint(session, key=KEY, now=world.now + timedelta(minutes=3)) is None

    _tamper(world, "DELETE FROM event WHERE case_id = :c AND sequence = (SELECT max(sequence) FROM event "
                   "WHERE case_id = :c)", c=cut.id)  # fmt: skip
    _tamper(world, "DELETE FROM outbox WHERE case_id = :c", "DELETE FROM step WHERE case_id = :c",
            "DELETE FROM event WHERE case_id = :c", 'DELETE FROM "case" WHERE id = :c', c=removed.id)  # fmt: skip
    _tamper(world, "UPDATE event SET actor = 'someone else' WHERE case_id = :c AND sequence = 1", c=rewritten.id)
    _rehash(world, rewritten.id)
    with Session(world.engine) as session:
        assert verify_cases(session).ok  # each chain, checked against itself, holds
    findings = _findings(world, tmp_path)
    assert any(f.startswith(f"{cut.number}: event #") and f.endswith("is gone (events were deleted)") for f in findings)
    assert any(f.startswith(f"{removed.number}: event #") and "is gone" for f in findings)
    assert any(f.startswith(f"{rewritten.number}: event #") and "the chain was rewritten" in f for f in findings)
    assert not any(untouched.number in f for f in findings) and len(findings) == 3
    assert first[0] > 0


def test_a_checkpoint_dropped_forged_or_a_database_restored_behind_its_anchor_is_found(world, tmp_path: Path) -> None:
    world.file(product_line="motor")
    _sign(world, tmp_path)
    world.now += timedelta(minutes=5)
    world.file(product_line="motor")
    second = _sign(world, tmp_path)
    assert _findings(world, tmp_path) == []

    _tamper(world, "UPDATE audit_checkpoint SET through_event_id = through_event_id + 1 WHERE id = :i", i=second[0])
    assert _findings(world, tmp_path) == [f"checkpoint {second[0]}: its signature does not match (altered or forged)"]
    _tamper(world, "DELETE FROM audit_checkpoint WHERE id = :i", i=second[0])  # restored to before the second
    [restored] = _findings(world, tmp_path)
    assert restored.startswith(f"checkpoint {second[0]}, the newest written") and "restored" in restored
    with Session(world.engine) as session:
        [kept] = session.exec(select(AuditCheckpoint)).all()
    _tamper(world, "DELETE FROM audit_checkpoint WHERE id = :i", i=kept.id)
    world.now += timedelta(minutes=5)
    world.file(product_line="motor")
    with pytest.raises(CheckpointsTampered, match="no checkpoint is written over the gap"):
        _sign(world, tmp_path)  # a fresh history is not started over the gap: someone must look first


def test_every_event_removed_is_found_even_past_the_triggers(world, tmp_path: Path) -> None:
    """TRUNCATE on PostgreSQL (its trigger refuses it: bypassed here), DELETE on SQLite (which has no TRUNCATE)."""
    cases = [world.file(product_line="motor") for _ in range(2)]
    _sign(world, tmp_path)
    wipe = "TRUNCATE event" if world.engine.dialect.name == "postgresql" else "DELETE FROM event"
    _tamper(world, "DELETE FROM outbox", "DELETE FROM step", wipe, 'DELETE FROM "case"')
    findings = _findings(world, tmp_path)
    assert {f.split(":")[0] for f in findings} == {c.number for c in cases}


def test_a_cut_or_rewritten_chain_stays_found_after_the_case_moves_on_and_is_checkpointed_again(
    world, tmp_path: Path
) -> None:
    """An ordinary event after the tampering, and the next checkpoint signing the new head, do not hide it: every
    head ever checkpointed is checked, not only the newest."""
    from tasks.cases import append_event

    case = world.file(product_line="motor")
    _sign(world, tmp_path)
    _tamper(world, "DELETE FROM event WHERE case_id = :c AND sequence = (SELECT max(sequence) FROM event "
                   "WHERE case_id = :c)", c=case.id)  # fmt: skip
    _tamper(world, "UPDATE event SET actor = 'someone else' WHERE case_id = :c AND sequence = 1", c=case.id)
    _rehash(world, case.id)
    world.now += timedelta(minutes=5)
    with session_scope(world.engine) as session:  # the handler notes a call: the chain goes on from the rewrite
        append_event(session, case=world.case(case), actor="li.wei", type="note", data={"text": "called"},
                     now=world.now)  # fmt: skip
    with session_scope(world.engine) as session:  # the next pass (SQLite may reuse the deleted event's id: none)
        signed = checkpoint(session, key=KEY, now=world.now + timedelta(minutes=2), anchor=anchor_path(tmp_path))
    if signed is not None:
        write_anchor(anchor_path(tmp_path), signed)
    findings = _findings(world, tmp_path)
    assert findings and all(f.startswith(f"{case.number}: event #") for f in findings), findings
    assert any("rewritten" in f for f in findings)


def test_two_checkpoint_writers_at_once_take_turns_and_the_desk_stays_clean(world, tmp_path: Path) -> None:
    """The reconciler and 'audit verify' writing at the same moment: the second chains onto the first's checkpoint
    (PostgreSQL: an advisory lock; SQLite: one writer at a time anyway), never onto the same predecessor."""
    import threading

    world.file(product_line="motor")
    _sign(world, tmp_path)
    world.now += timedelta(minutes=5)
    world.file(product_line="motor")
    written: list[tuple[int, str] | None] = []
    ready = threading.Barrier(2)

    def writer() -> None:
        ready.wait()
        with session_scope(world.engine) as session:
            written.append(checkpoint(session, key=KEY, now=world.now, anchor=anchor_path(tmp_path)))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    signed = [w for w in written if w is not None]
    assert len(written) == 2 and len(signed) == 1  # one signed the new heads; the other found nothing new
    write_anchor(anchor_path(tmp_path), signed[0])
    assert _findings(world, tmp_path) == []


def test_an_anchor_that_does_not_read_as_one_is_a_finding_and_blocks_new_checkpoints(world, tmp_path: Path) -> None:
    world.file(product_line="motor")
    _sign(world, tmp_path)
    anchor_path(tmp_path).write_text("")
    assert _findings(world, tmp_path) == [
        f"{anchor_path(tmp_path)} does not read as an audit anchor (id and signature)"
    ]
    world.now += timedelta(minutes=5)
    world.file(product_line="motor")
    with pytest.raises(CheckpointsTampered, match="does not read as an audit anchor"):
        _sign(world, tmp_path)

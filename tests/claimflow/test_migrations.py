"""The migrations create the schema from nothing on both databases, and it matches the models."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from claimflow.db import create_db_engine
from claimflow.migrate import alembic_config, current_revision, head_revision, require_current_schema, upgrade


def test_upgrade_from_empty_creates_every_table_and_index(empty_database_url: str) -> None:
    engine = create_db_engine(empty_database_url, pool=False)
    try:
        assert current_revision(engine) is None
        before, after = upgrade(engine)
        assert (before, after) == (None, head_revision(engine))
        inspector = inspect(engine)
        assert set(SQLModel.metadata.tables) <= set(inspector.get_table_names())
        step_indexes = {i["name"] for i in inspector.get_indexes("step")}
        assert {"ix_step_open_due", "ix_step_open_next_check"} <= step_indexes
        outbox_indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("outbox")}
        assert outbox_indexes["ix_outbox_status_next_attempt"] == ["status", "next_attempt_at"]
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("event")}
        assert ("case_id", "sequence") in uniques
        case_number = [i for i in inspector.get_indexes("case") if i["column_names"] == ["number"]]
        assert case_number and case_number[0]["unique"]
    finally:
        engine.dispose()


def test_upgrading_twice_changes_nothing(empty_database_url: str) -> None:
    engine = create_db_engine(empty_database_url, pool=False)
    try:
        upgrade(engine)
        head = current_revision(engine)
        assert upgrade(engine) == (head, head)
    finally:
        engine.dispose()


def test_the_migrated_schema_matches_the_models(empty_database_url: str) -> None:
    engine = create_db_engine(empty_database_url, pool=False)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
        assert diff == []
    finally:
        engine.dispose()


def _insert(connection, table: str, **values: object) -> None:
    """A row of ``table`` as the schema stands: these values, and a plain value of its type for every other
    column that must have one (no default, not null)."""
    from sqlalchemy import Integer, MetaData, Table
    from sqlalchemy.types import JSON, Boolean, DateTime, Numeric

    columns = Table(table, MetaData(), autoload_with=connection).columns
    for column in columns:
        if column.name in values or column.nullable or column.server_default is not None or column.primary_key:
            continue
        kind = column.type
        values[column.name] = (
            datetime(2026, 3, 2, tzinfo=UTC) if isinstance(kind, DateTime)
            else False if isinstance(kind, Boolean)
            else 0 if isinstance(kind, Integer | Numeric)
            else "[]" if isinstance(kind, JSON) or "json" in str(kind).lower()
            else "x"
        )  # fmt: skip
    names = ", ".join(f'"{name}"' for name in values)
    connection.execute(text(f'INSERT INTO "{table}" ({names}) VALUES ({", ".join(f":{n}" for n in values)})'), values)


def test_a_step_that_escalated_and_was_rescheduled_before_0006_starts_a_new_round(empty_database_url: str) -> None:
    """Before 0006 an extension set the step's level back to 0, and its next breach could not be raised (the
    escalation was unique by step and level). After the upgrade such a step is in the round after its escalations,
    so its next breach is a row of its own; a step still escalated stays in round 0."""
    engine = create_db_engine(empty_database_url, pool=False)
    try:
        upgrade(engine, "0005")
        with engine.begin() as connection:
            _insert(connection, "customer", id=1)
            _insert(connection, "case", id=1, customer_id=1, number="CLM-2026-000001")
            for step_id, level in ((1, 0), (2, 1), (3, 0)):  # extended after its escalation; escalated; never
                _insert(connection, "step", id=step_id, case_id=1, name=f"s{step_id}", escalation_level=level)
            for step_id in (1, 2):
                _insert(connection, "escalation", step_id=step_id, case_id=1, level=1, role="supervisor")
        upgrade(engine)
        inspector = inspect(engine)
        uniques = {u["name"]: u["column_names"] for u in inspector.get_unique_constraints("escalation")}
        assert uniques["uq_escalation_step_round_level"] == ["step_id", "round", "level"]
        assert "uq_escalation_step_level" not in uniques
        with engine.connect() as connection:
            rounds = dict(connection.execute(text("SELECT id, ladder_round FROM step ORDER BY id")).all())
            assert rounds == {1: 1, 2: 0, 3: 0}
            assert connection.execute(text("SELECT DISTINCT round FROM escalation")).scalars().all() == [0]
    finally:
        engine.dispose()


def test_mail_read_before_0009_is_still_recognised_and_a_reused_message_id_is_no_longer_refused(
    empty_database_url: str,
) -> None:
    """0009 keys mail by Message-ID, sender and content: a mail recorded before keeps a key of its Message-ID, so
    it stays one row, and the Message-ID is no longer unique (a second mail with the same id can be recorded)."""
    import importlib

    legacy_key = importlib.import_module("claimflow.migrations.versions.0009_mail_dedup_key").legacy_key
    from models.mail import legacy_key as read_again_by

    assert legacy_key("<a@x>") == read_again_by("<a@x>")  # the intake finds these rows by the same key
    engine = create_db_engine(empty_database_url, pool=False)
    try:
        upgrade(engine, "0008")
        with engine.begin() as connection:
            for row_id, message_id in ((1, "<a@x>"), (2, "<b@x>")):
                _insert(connection, "mail_message", id=row_id, message_id=message_id, mailbox="imap/INBOX",
                        disposition="filed")  # fmt: skip
        upgrade(engine)
        with engine.begin() as connection:
            keys = dict(connection.execute(text("SELECT message_id, dedup_key FROM mail_message")).all())
            assert keys == {"<a@x>": legacy_key("<a@x>"), "<b@x>": legacy_key("<b@x>")}
            _insert(connection, "mail_message", id=3, message_id="<a@x>", mailbox="imap/INBOX", disposition="filed",
                    dedup_key="k" * 64)  # fmt: skip
        with pytest.raises(IntegrityError), engine.begin() as connection:
            _insert(connection, "mail_message", id=4, message_id="<c@x>", mailbox="imap/INBOX", disposition="filed",
                    dedup_key="k" * 64)  # fmt: skip
    finally:
        engine.dispose()


def test_new_assignment_notices_still_waiting_at_0015_go_after_the_other_messages(empty_database_url: str) -> None:
    """0015 adds ``outbox.priority``: a new-assignment notice still waiting takes 1 (after every due message), a
    sent one and every other template 0."""
    engine = create_db_engine(empty_database_url, pool=False)
    try:
        upgrade(engine, "0014")
        with engine.begin() as connection:
            rows = [("staff_new_assignment", "pending"), ("staff_new_assignment", "held"),
                    ("staff_new_assignment", "sent"), ("acknowledgement_claim", "pending")]  # fmt: skip
            for row_id, (template, status) in enumerate(rows, start=1):
                _insert(connection, "outbox", id=row_id, template=template, status=status, channel="email",
                        recipient="staff:li.wei", idempotency_key=f"k{row_id}", context="{}")  # fmt: skip
        upgrade(engine)
        with engine.begin() as connection:
            priorities = connection.execute(text("SELECT id, priority FROM outbox ORDER BY id")).all()
        assert [tuple(p) for p in priorities] == [(1, 1), (2, 1), (3, 0), (4, 0)]
    finally:
        engine.dispose()


def test_a_process_on_newer_code_refuses_a_database_not_yet_upgraded_and_says_what_to_run(
    empty_database_url: str,
) -> None:
    """A deploy that restarted the API before it migrated failed every request on a missing column (a traceback
    each). The web app (however it is served: ``uvicorn --factory`` too), ``claimflow api``, the runner and the
    delivery loop now refuse to start, naming both revisions; an unreachable database is let through (each request
    answers 503 until it is back, tested in test_api)."""
    from alembic.script import ScriptDirectory
    from fastapi.testclient import TestClient

    from claimflow.settings import get_settings
    from claimflow.web.app import create_app
    from models.errors import InvalidInput

    engine = create_db_engine(empty_database_url, pool=False)
    try:
        head = head_revision(engine)
        assert head is not None
        previous = ScriptDirectory.from_config(alembic_config(engine)).get_revision(head).down_revision
        with pytest.raises(InvalidInput, match=r"schema revision none \(empty\) and this version of claimflow needs"):
            require_current_schema(engine)
        upgrade(engine, str(previous))
        expected = (
            rf"at schema revision {previous} and this version of claimflow needs {head}: run 'claimflow db upgrade'"
        )
        with pytest.raises(InvalidInput, match=expected):
            require_current_schema(engine)
        with pytest.raises(InvalidInput, match=expected), TestClient(create_app(get_settings(), engine, launch=False)):
            pass
        upgrade(engine)
        require_current_schema(engine)
        with TestClient(create_app(get_settings(), engine, launch=False)) as client:
            assert client.get("/openapi.json").status_code == 200
    finally:
        engine.dispose()
    gone = create_db_engine("postgresql+psycopg://postgres@127.0.0.1:9/gone", pool=False)
    require_current_schema(gone)  # unreachable: not refused here
    gone.dispose()

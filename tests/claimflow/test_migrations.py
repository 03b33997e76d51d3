"""The migrations create the schema from nothing on both databases, and it matches the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from claimflow.db import create_db_engine
from claimflow.migrate import current_revision, head_revision, upgrade


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

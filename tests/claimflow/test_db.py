"""Reading JSON columns (orjson where it reads the same, ``json.loads`` for what it refuses), and writes
sent without waiting for them (``deferred_writes``)."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import JSON, Column, Integer, MetaData, Table, func, insert, literal, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session, select

from claimflow.db import create_db_engine, deferred_writes, insert_rows, json_loads
from models.tables import Department, Staff
from models.types import UTCDateTime

_numbers = (
    st.integers()
    | st.integers(min_value=2**62, max_value=2**70)  # around the 64-bit edge, where orjson would read floats
    | st.integers(max_value=-(2**62), min_value=-(2**70))
    | st.floats(allow_nan=False, allow_infinity=False)
)
_documents = st.recursive(
    st.none() | st.booleans() | _numbers | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@given(_documents)
def test_a_document_reads_back_as_json_loads_reads_it(document: object) -> None:
    written = json.dumps(document, ensure_ascii=False)
    expected = json.loads(written)
    for read in (json_loads(written), json_loads(written.encode())):
        assert read == expected and repr(read) == repr(expected)  # repr: 3 == 3.0, but not as a document


def test_integers_beyond_64_bits_and_huge_numbers_fall_back_to_json_loads() -> None:
    assert json_loads('{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}
    assert math.isinf(json_loads("[1e400]")[0])


def test_a_json_column_reads_through_the_engines_loader(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        assert engine.dialect._json_deserializer is json_loads  # type: ignore[attr-defined]
        postgres = engine.dialect.name == "postgresql"
        query = text("SELECT CAST(:doc AS JSONB) AS d" if postgres else "SELECT :doc AS d").columns(
            d=JSONB if postgres else JSON
        )
        with engine.connect() as connection:
            for document in ({"n": 1, "at": "2026-03-02T01:30:00Z"}, {"big": 123456789012345678901234567890}):
                assert connection.execute(query, {"doc": json.dumps(document)}).scalar_one() == document
    finally:
        engine.dispose()


def _department(code: str) -> dict[str, object]:
    return {"code": code, "name": f"Department {code}", "active": True}


def test_writes_in_deferred_writes_are_done_when_the_block_ends(database_url: str) -> None:
    engine = create_db_engine(database_url)
    table = Department.__table__  # type: ignore[attr-defined]
    try:
        with Session(engine) as session:
            with deferred_writes(session):
                session.execute(insert(table), [_department("a"), _department("b")])
                session.execute(update(table).where(table.c.code == "a").values(name="renamed"))
                insert_rows(session, table, [_department("c")])
            session.commit()
        with Session(engine) as session:
            rows = session.execute(select(table.c.code, table.c.name).order_by(table.c.code)).all()
        assert [tuple(row) for row in rows] == [("a", "renamed"), ("b", "Department b"), ("c", "Department c")]
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite runs each statement at once
def test_a_deferred_write_runs_while_this_process_goes_on(database_url: str) -> None:
    """On PostgreSQL the statement is sent and the call returns; the block's end waits for the database."""
    engine = create_db_engine(database_url)
    table = Department.__table__  # type: ignore[attr-defined]
    slow = insert(table).from_select(
        ["code", "name", "active"],
        select(literal("slow"), literal("Slow"), literal(True)).where(func.pg_sleep(1.0).isnot(None)),
    )
    try:
        with Session(engine) as session:
            session.execute(select(1))  # connected first: the connection's set-up is not what is timed
            with deferred_writes(session):
                started = time.monotonic()
                session.execute(slow)
                sent = time.monotonic() - started
            done = time.monotonic() - started
            session.commit()
        assert sent < 0.5 and done >= 0.95, (sent, done)  # sent without waiting; the block's end waited 1 s
        with Session(engine) as session:
            assert session.execute(select(table.c.name).where(table.c.code == "slow")).scalar_one() == "Slow"
    finally:
        engine.dispose()


@pytest.mark.parametrize("last", [True, False], ids=["failing-write-last", "more-after-it"])
def test_a_failed_deferred_write_raises_by_the_end_of_the_block_and_nothing_stays(
    database_url: str, last: bool
) -> None:
    """SQLAlchemy's error either way: raised by a later statement, or by the block's end (the driver's own
    error, wrapped as SQLAlchemy wraps it)."""
    engine = create_db_engine(database_url)
    table = Department.__table__  # type: ignore[attr-defined]
    try:
        with Session(engine) as session:
            session.execute(insert(table), [_department("taken")])
            session.commit()
        with Session(engine) as session:
            with pytest.raises(IntegrityError, match="department"), deferred_writes(session):
                insert_rows(session, table, [_department("new")])
                insert_rows(session, table, [_department("taken")])  # the unique code
                if not last:
                    session.execute(update(table).values(name="changed"))
            session.rollback()
            rows = session.execute(select(table.c.code, table.c.name)).all()
        assert [tuple(row) for row in rows] == [("taken", "Department taken")]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        select(Department.id),  # type: ignore[call-overload]
        insert(Department.__table__).returning(Department.__table__.c.id),  # type: ignore[attr-defined]
        text("UPDATE department SET name = 'x'"),
    ],
    ids=["query", "returning", "text"],
)
def test_a_statement_that_returns_rows_is_refused_in_deferred_writes(database_url: str, statement: Any) -> None:
    engine = create_db_engine(database_url)
    try:
        with Session(engine) as session:
            parameters = [_department("x")] if "INSERT" in str(statement) else None
            with pytest.raises(RuntimeError, match="only writes that return nothing"), deferred_writes(session):
                session.execute(statement, parameters)
            session.rollback()
            # the guard is gone after the block: the same session reads again
            assert session.execute(select(func.count()).select_from(Department)).scalar_one() == 0
    finally:
        engine.dispose()


def test_a_column_with_one_value_in_every_row_is_written_as_given(database_url: str) -> None:
    """``insert_rows`` sends such a column once; JSON documents are always sent per row, since ``[1]`` and
    ``[True]`` compare equal in Python but are different documents."""
    engine = create_db_engine(database_url)
    table = Staff.__table__  # type: ignore[attr-defined]

    def member(username: str, skills: list[object]) -> dict[str, object]:
        return {"username": username, "name": "Same Name", "email": None, "role": "handler", "department_id": None,
                "skills": skills, "languages": ["en"], "active": True, "totp_secret": None}  # fmt: skip

    try:
        with Session(engine) as session:
            columns = {c.name for c in table.columns} - {"id"}
            rows = [member("a", [1]), member("b", [True]), member("c", [1])]
            assert set(rows[0]) <= columns
            insert_rows(session, table, rows)
            insert_rows(session, table, [member("d", [])])  # one row: every column holds one value
            session.commit()
            read = session.execute(
                select(table.c.username, table.c.name, table.c.email, table.c.skills, table.c.active).order_by(
                    table.c.username
                )
            ).all()
        # the documents compared as JSON text: in Python, [1] == [True]
        assert [(*row[:3], json.dumps(row[3]), row[4]) for row in read] == [
            ("a", "Same Name", None, "[1]", True),
            ("b", "Same Name", None, "[true]", True),
            ("c", "Same Name", None, "[1]", True),
            ("d", "Same Name", None, "[]", True),
        ]
    finally:
        engine.dispose()


def test_deferred_writes_flushes_what_the_session_holds_first_and_refuses_a_flush_or_commit_inside(
    database_url: str,
) -> None:
    """An ORM flush checks the rows it changed, which pipeline mode does not report; a commit inside would end
    the transaction the block's writes belong to."""
    engine = create_db_engine(database_url)
    table = Department.__table__  # type: ignore[attr-defined]
    try:
        with Session(engine) as session:
            session.add(Department(code="held", name="Held"))  # pending: flushed as the block starts
            with deferred_writes(session):
                session.execute(update(table).where(table.c.code == "held").values(name="changed"))
            session.commit()
            assert session.execute(select(table.c.name)).scalar_one() == "changed"
            member = session.exec(select(Department)).one()
            for action in (session.flush, session.commit):
                with pytest.raises(RuntimeError, match="deferred_writes"), deferred_writes(session):
                    member.name = "again"
                    action()
                session.rollback()
            assert session.execute(select(table.c.name)).scalar_one() == "changed"
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite does not hold text to a length
def test_a_text_too_long_for_its_column_is_refused_in_a_batch_of_one(database_url: str) -> None:
    """A single row has one value per column: sent once, it is refused as it is in the document, not cut."""
    engine = create_db_engine(database_url)
    table = Department.__table__  # type: ignore[attr-defined]
    try:
        with Session(engine) as session, pytest.raises(DataError, match="too long"):
            insert_rows(session, table, [{"code": "c" * 65, "name": "Long", "active": True}])
    finally:
        engine.dispose()


def test_times_that_compare_equal_but_are_different_instants_are_each_stored(database_url: str) -> None:
    """02:30 in Berlin on the night clocks go back is two instants an hour apart, equal in Python."""
    engine = create_db_engine(database_url)
    table = Table("times", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime))
    berlin = ZoneInfo("Europe/Berlin")
    first, second = (datetime(2026, 10, 25, 2, 30, fold=fold, tzinfo=berlin) for fold in (0, 1))
    assert first == second
    try:
        with Session(engine) as session:
            table.create(session.connection())
            insert_rows(session, table, [{"at": first}, {"at": second}])
            stored = session.execute(select(table.c.at).order_by(table.c.id)).scalars().all()
            session.rollback()
        assert stored == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)]
    finally:
        engine.dispose()


def test_the_embedded_database_and_the_documents_are_readable_by_their_owner_only(tmp_path) -> None:
    """The SQLite file holds the customers' data and the attachments folder their documents: neither is created
    readable by the machine's other users (0644 / 0755 under the usual umask)."""
    import stat

    from claimflow.db import create_db_engine
    from tasks.intake import AttachmentStore
    from tasks.mail import _store_file

    path = tmp_path / "data" / "claimflow.db"
    engine = create_db_engine(f"sqlite:///{path}", pool=False)
    with engine.connect() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    stored = AttachmentStore(tmp_path).put(case_number="CLM-2026-000001", filename="a.pdf", content=b"%PDF",
                                           sha256="0" * 64)  # fmt: skip
    mailed = _store_file(tmp_path / "attachments" / "CLM-2026-000002", "b.pdf", b"%PDF")
    for file in (tmp_path / stored, mailed):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700


def test_a_transient_row_is_the_row_the_model_makes_and_behaves_as_one(database_url: str) -> None:
    from claimflow.db import row_of, transient
    from models.tables import Case, Customer

    now = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    customer_values = {"name": "Li Wei", "phone": "13800000000", "language": "zh-CN", "created_at": now}
    case_values = {"kind": "claim", "channel": "webhook", "priority": "high", "product_line": "motor",
                   "jurisdiction": "CN", "policy_number": "P-1", "description": "Rear-ended", "number": "CLM-2026-000001",
                   "status": "received", "customer_id": 1, "opened_at": now, "updated_at": now, "run_key": "k"}  # fmt: skip
    for model, values in ((Customer, customer_values), (Case, case_values)):
        made, fast = model(**values), transient(model, values)
        assert row_of(fast) == row_of(made)  # every column, defaults included (currency, outcome, ...)
        assert fast.model_dump() == made.model_dump()
    # it is a table row as any other: changed through SQLAlchemy, written and read back
    customer = transient(Customer, customer_values)
    customer.language = "en"
    engine = create_db_engine(database_url)
    with Session(engine) as session:
        session.add(customer)
        session.commit()
        assert session.get(Customer, customer.id).language == "en"  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="no field nmae"):
        transient(Customer, {**customer_values, "nmae": "x"})
    with pytest.raises(TypeError, match="needs name"):
        transient(Customer, {"created_at": now})

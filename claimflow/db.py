"""The database engine: one per URL, with SQLite made safe for several writers.

SQLite: WAL journal, foreign keys on, a busy timeout, and every transaction opened with ``BEGIN IMMEDIATE`` so
two writers queue for the lock instead of one failing with "database is locked" half way through.
PostgreSQL: psycopg 3, pre-ping, plain READ COMMITTED; concurrency-critical statements lock their rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Integer,
    String,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    column,
    create_engine,
    event,
    func,
    literal,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlmodel import Session, SQLModel, select

from models.errors import DatabaseUnavailable, InvalidInput

_ENGINES: dict[str, Engine] = {}
_Model = TypeVar("_Model", bound=SQLModel)


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def create_db_engine(url: str, *, pool: bool = True) -> Engine:
    """A new engine for ``url``; creates the SQLite file's folder on first use."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(f"database URL {url!r} is not a valid SQLAlchemy URL") from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    # a failed statement's parameters are a customer's data: never in an error message, a traceback or a log
    kwargs: dict[str, Any] = {"json_deserializer": json_loads, "hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_file(Path(parsed.database).expanduser())
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        if not pool:
            kwargs["poolclass"] = NullPool
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 5}
        if not pool:
            kwargs["poolclass"] = NullPool
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise InvalidInput(f"cannot use database URL {safe_url(url)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        _make_sqlite_safe(engine)
    return engine


def _private_file(path: Path) -> None:
    """Create the SQLite file (empty: a valid database) readable by its owner only, in a folder made for it
    likewise, before SQLite creates it with the process's umask (0644: every user of the machine could read the
    customers' data). An existing file or folder is left as it is; SQLite gives its journal files the database
    file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _make_sqlite_safe(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_DIGITS = b"0" * 19


def json_loads(text: str | bytes) -> Any:
    """JSON columns read with orjson (a watcher pass reads a thousand step schedules; ``json.loads`` was a
    twentieth of it), where it reads what ``json.loads`` reads: a document with a run of 19 digits (an
    integer that may not fit 64 bits, which orjson would turn into a float) or one orjson refuses is read by
    ``json.loads`` as before. (The digit runs are found by mapping every digit to 0: a regular expression
    took longer than orjson's whole parse.)"""
    data = text.encode() if isinstance(text, str) else bytes(text)
    if _NINETEEN_DIGITS in data.translate(_DIGITS_AS_ZERO):
        return json.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def get_engine(url: str) -> Engine:
    """The process-wide engine for ``url`` (created once)."""
    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = create_db_engine(url)
    return engine


def check_reachable(engine: Engine) -> None:
    """Raise ``DatabaseUnavailable`` with a one-line reason when the database cannot be reached."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        raise DatabaseUnavailable(
            f"cannot reach database {engine.url.render_as_string(hide_password=True)}: {reason}"
        ) from exc


def describe_failure(error: BaseException) -> str:
    """What went wrong, in words free of the data involved, for a record or a log line about one item of a batch:
    the error's kind and, for a database error, the driver's error and the constraint it names (never the
    statement's parameters or the row's values, which a database error's text quotes)."""
    if isinstance(error, DBAPIError):
        original = error.orig
        constraint = getattr(getattr(original, "diag", None), "constraint_name", None)
        return f"the database refused it: {type(original).__name__}" + (f" on {constraint}" if constraint else "")
    if isinstance(error, SQLAlchemyError):
        return f"the database refused it: {type(error).__name__}"
    return type(error).__name__


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits at the end of the block and rolls back on any error, except an error
    whose refusal is a fact to keep (``keeps_writes``: a wrong approval code, counted towards the lock-out by
    ``tasks.workflow.authenticate``, which every action calls before it writes anything else)."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException as exc:
            if getattr(exc, "keeps_writes", False):
                session.commit()
            else:
                session.rollback()
            raise


def pin(session: Session, *objects: Any) -> None:
    """Keep ``objects`` in ``session``'s identity map for as long as the session lives.

    SQLAlchemy's identity map holds objects weakly: a row loaded in one function and no longer referenced is
    forgotten, and the next ``session.get`` of it is a query again. A filing loaded the staff three times and the
    customer it had just inserted twice that way."""
    pinned: list[Any] = session.info.setdefault("claimflow.pinned", [])
    pinned.extend(objects)


# --- many rows in one statement ---------------------------------------------------------------------------


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    returning: Sequence[Any] = (),
    skip_conflicts_on: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert many rows (each with the same keys) in one statement, in the order given.

    PostgreSQL gets ``INSERT ... SELECT`` from the rows sent as one JSON document (``_as_table``): one
    parameter whatever the number of rows, where a multi-row ``VALUES`` has one per value for the driver and
    the server to parse. A column that holds the same plain value in every row (a time, a status, an actor)
    is sent once, as its own parameter, not once per row. SQLite gets SQLAlchemy's batched insert.

    Args:
        session: the open session.
        table: the table.
        rows: the rows, column name to value.
        returning: columns to return for each row written.
        skip_conflicts_on: the columns of a unique key; a row whose key is already taken is skipped.

    Returns:
        The ``returning`` columns of the rows written (a skipped row returns nothing).
    """
    if not rows:
        return []
    names = list(rows[0])
    if session.get_bind().dialect.name == "postgresql":
        constant = _constant_columns(table, rows, names)
        shape = _insert_shape(table, tuple(names), tuple(constant), tuple(returning), tuple(skip_conflicts_on))
        values = {f"{_CONSTANT}{name}": value for name, value in constant.items()}
        values[_ROWS] = _document(session, table, rows, [name for name in names if name not in constant])
        result = session.execute(shape, values)
        return [tuple(row) for row in result] if returning else []
    statement: Any = sqlite_insert(table)
    if skip_conflicts_on:
        statement = statement.on_conflict_do_nothing(index_elements=list(skip_conflicts_on))
    if returning:
        return [tuple(row) for row in session.execute(statement.returning(*returning), rows)]
    session.execute(statement, rows)
    return []


@lru_cache(maxsize=256)
def _insert_shape(
    table: Table, names: tuple[str, ...], constant: tuple[str, ...], returning: tuple[Any, ...], skip: tuple[str, ...]
) -> Any:
    """``insert_rows``'s PostgreSQL statement for rows of these columns, built once: the rows and the constant
    columns' values are its parameters. (Built afresh for every call, SQLAlchemy derived its cache key from the
    whole statement each time: a tenth of the intake writer's time.)"""
    source = _as_table(table, [name for name in names if name not in constant])
    # not cast to the column's type: a cast to varchar(n) would cut a longer text short, where the insert
    # refuses it, as it refuses it in the document
    values = [bindparam(f"{_CONSTANT}{name}", type_=table.c[name].type) if name in constant else source.c[name]
              for name in names]  # fmt: skip
    statement: Any = pg_insert(table).from_select(list(names), select(*values).select_from(source).order_by(
        source.c[_POSITION]))  # fmt: skip
    if skip:
        statement = statement.on_conflict_do_nothing(index_elements=list(skip))
    return statement.returning(*returning) if returning else statement


def new_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` ids for rows of ``table`` the caller is about to insert with their ids given (so that other rows
    can name them in the same statement, with no insert and read-back in between).

    PostgreSQL: taken from the id column's sequence (never handed out twice, even across transactions). SQLite:
    the ids after the highest in the table; the caller's transaction must already hold SQLite's one write lock
    (the desk begins every transaction with ``BEGIN IMMEDIATE``), so nobody else inserts meanwhile.
    """
    return new_ids_of(session, {table: count})[table]


def new_ids_of(session: Session, counts: Mapping[Table, int]) -> dict[Table, list[int]]:
    """``new_ids`` for several tables at once: PostgreSQL takes them all in one statement."""
    wanted = {table: count for table, count in counts.items() if count > 0}
    found: dict[Table, list[int]] = {table: [] for table in counts}
    if not wanted:
        return found
    if session.get_bind().dialect.name == "postgresql":
        tables = list(wanted)
        statement = _ids_statement(tuple(table.name for table in tables))
        for n, value in session.execute(statement, {f"count_{n}": wanted[table] for n, table in enumerate(tables)}):
            found[tables[n]].append(int(value))
        return found
    for table, count in wanted.items():
        highest = int(session.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())
        found[table] = list(range(highest + 1, highest + count + 1))
    return found


@lru_cache(maxsize=32)
def _ids_statement(tables: tuple[str, ...]) -> Any:
    """``new_ids_of``'s PostgreSQL statement for these tables, built once (the counts are its parameters)."""
    parts = [
        select(literal(n).label("t"), func.nextval(func.pg_get_serial_sequence(name, "id")).label("id")).select_from(
            func.generate_series(1, bindparam(f"count_{n}", type_=Integer))
        )
        for n, name in enumerate(tables)
    ]
    return parts[0] if len(parts) == 1 else union_all(*parts)


def transient(model: type[_Model], values: Mapping[str, Any]) -> _Model:
    """A new table model object from values already validated (no validator runs), its other fields' defaults
    filled in, written into the object as SQLAlchemy writes a row it loads.

    ``Model(**values)`` runs SQLModel's set-up, an instrumented ``setattr`` a field: about 60-90 microseconds a
    case or customer, a tenth of a batch filing's time (py-spy on the API under ``bench/intake.py``), against 6
    here. For rows written with ``insert_rows``; the object is transient (in no session) and its later attribute
    changes go through SQLAlchemy as usual.

    Raises:
        TypeError: a key is not one of the model's fields.
    """
    fields = model.model_fields
    unknown = [name for name in values if name not in fields]
    if unknown:
        raise TypeError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
    obj: _Model = model._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    state = {name: field.get_default(call_default_factory=True)
             for name, field in fields.items() if name not in values and not field.is_required()}  # fmt: skip
    missing = [name for name, field in fields.items() if field.is_required() and name not in values]
    if missing:
        raise TypeError(f"{model.__name__} needs {', '.join(missing)}")
    state.update(values)
    obj.__dict__.update(state)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    return obj


def row_of(obj: Any) -> dict[str, Any]:
    """A new ORM object's row, column name to value, for ``insert_rows`` (its id set by the caller).

    A value the object holds is read from its ``__dict__``, where SQLAlchemy keeps it (what the attribute returns
    then); any other through the attribute."""
    values = obj.__dict__
    return {name: values[key] if key in values else getattr(obj, key) for name, key in _columns_of(type(obj).__table__)}


@cache
def _columns_of(table: Table) -> tuple[tuple[str, str], ...]:
    return tuple((column.name, column.key) for column in table.columns)


def update_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *, key: str = "id") -> None:
    """Update many rows, found by ``key``, each with its own values (every row sets the same columns), in one
    statement (PostgreSQL: ``UPDATE ... FROM`` the rows as in ``insert_rows``; SQLite: an executemany)."""
    if not rows:
        return
    names = [name for name in rows[0] if name != key]
    if session.get_bind().dialect.name == "postgresql":
        document = _document(session, table, rows, [key, *names])
        session.execute(_update_shape(table, key, tuple(names)), {_ROWS: document})
        return
    # bound names differ from the columns': SQLAlchemy keeps those for the SET clause
    statement = update(table).where(table.c[key] == bindparam(f"new_{key}"))
    statement = statement.values({name: bindparam(f"new_{name}") for name in names})
    session.execute(statement, [{f"new_{name}": value for name, value in row.items()} for row in rows])


@contextmanager
def deferred_writes(session: Session) -> Iterator[None]:
    """Writes in this block are sent without waiting for the database to carry them out, so it works on them
    while this process goes on preparing the next ones; the block ends when all are done.

    PostgreSQL: psycopg's pipeline mode on the session's connection. A write that fails raises (as
    SQLAlchemy's error, naming what the database refused; the statement it names may be a later one) at the
    next statement or, at the latest, as the block ends; the caller rolls the transaction back as for any
    failed statement. SQLite: every statement runs at once, as outside the block.

    Only writes that return nothing may run in the block (SQLAlchemy's ``insert``, ``update`` and ``delete``
    without ``RETURNING``): a query's rows would not have arrived when SQLAlchemy looks for them, and a
    write's row count is not known (-1). Any other statement (a query, text SQL, ``RETURNING``) is refused
    with ``RuntimeError`` before it is sent, on either database, so a misuse fails in every test; so are an
    ORM flush (it checks row counts) and a commit. What the session holds unflushed is flushed as the block
    starts, and nothing is flushed automatically inside it.
    """
    session.flush()
    connection = session.connection()

    def only_writes(_conn: Any, _cursor: Any, statement: str, _parameters: Any, context: Any, _many: bool) -> None:
        compiled = getattr(context, "compiled", None)
        if not getattr(context, "is_crud", False) or compiled is None or compiled.effective_returning:
            raise RuntimeError(f"only writes that return nothing may run in deferred_writes: {statement[:80]!r}")

    def no_flush(*_: Any) -> None:
        raise RuntimeError("an ORM flush cannot run in deferred_writes (it checks the row counts)")

    def no_commit(*_: Any) -> None:
        raise RuntimeError("the transaction cannot be committed in deferred_writes: commit after the block")

    hooks = [(connection, "before_cursor_execute", only_writes), (session, "before_flush", no_flush),
             (session, "before_commit", no_commit)]  # fmt: skip
    for target, name, hook in hooks:
        event.listen(target, name, hook)
    try:
        with session.no_autoflush:
            driver = connection.connection.driver_connection
            if connection.dialect.name == "postgresql" and driver is not None:
                with _pipeline(connection, driver):
                    yield
            else:
                yield
    finally:
        for target, name, hook in hooks:
            event.remove(target, name, hook)


@contextmanager
def _pipeline(connection: Connection, driver: Any) -> Iterator[None]:
    """psycopg's pipeline mode; a driver error raised as it ends (a write that failed, a lost connection)
    comes out as SQLAlchemy's error, as one raised by a statement would, a lost connection invalidated."""
    dialect = connection.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        with driver.pipeline():
            yield
    except dbapi_error as error:
        lost = dialect.is_disconnect(error, driver, None)
        if lost:
            connection.invalidate(error)
        raise DBAPIError.instance(
            None, None, error, dbapi_error, connection_invalidated=lost, dialect=dialect
        ) from error


_POSITION = "position"
_ROWS = "claimflow_rows"
"""The parameter that carries the rows' document."""
_CONSTANT = "claimflow_constant_"
"""The prefix of the parameters that carry a constant column's value."""


def _foldable(column_type: Any) -> type | None:
    """The one Python type whose value a column of this SQL type may be sent once for, or None.

    Only where sending the value once stores exactly what sending it in every row stores: text in text
    columns, integers in integer columns, booleans in boolean columns, times in time-zone-aware time columns
    (the instant is the value), the first row's time with a fixed offset such as UTC: two times in a zone
    with a repeated hour compare equal and can be different instants. Never a JSON document (``[1] == [True]``
    in Python; a ``None`` is a JSON null there, not SQL NULL), a number with decimals or a date.
    """
    impl = getattr(column_type, "impl_instance", column_type)  # a TypeDecorator's own type
    if isinstance(impl, Boolean):
        return bool
    if isinstance(impl, Integer):
        return int
    if isinstance(impl, String):
        return str
    if isinstance(impl, DateTime) and impl.timezone:
        return datetime
    return None


def _constant_columns(table: Table, rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The columns that hold one value in every row, of the type ``_foldable`` allows them (or ``None``);
    with that value."""
    first = rows[0]
    constant: dict[str, Any] = {}
    for name in names:
        allowed, value = _foldable(table.c[name].type), first[name]
        if allowed is None or not (value is None or type(value) is allowed):
            continue
        if isinstance(value, datetime) and not isinstance(value.tzinfo, timezone):
            continue  # a zone with a repeated hour: equal times may be two instants (compared to this one, not)
        kind = type(value)
        if all(type(row[name]) is kind and row[name] == value for row in rows):
            constant[name] = value
    return constant


def one_of(session: Session, column_: Any, values: Collection[Any]) -> ColumnElement[bool]:
    """``column IN values`` as one parameter: PostgreSQL gets ``= ANY(array)``, whatever the number of values
    (an ``IN`` list has one placeholder per value for SQLAlchemy, the driver and the server to handle);
    SQLite gets the ``IN`` list.

    (Sending the array as one text literal, cast, saved the driver's Python per element but cost the server
    as much again: measured with ``bench/sla_watch.py``'s CPU figures, no gain.)"""
    if session.get_bind().dialect.name == "postgresql":
        return column_ == any_(bindparam(None, list(values), type_=ARRAY(column_.type)))
    return column_.in_(values)


def _as_table(table: Table, names: Sequence[str]) -> Any:
    """PostgreSQL's ``jsonb_to_recordset`` over the parameter ``_ROWS`` (``_document``): the rows read back as a
    table with the columns' own types, plus their ``position`` in the rows sent."""
    columns = [column(name, table.c[name].type) for name in names] + [column(_POSITION, Integer)]
    records = func.jsonb_to_recordset(cast(bindparam(_ROWS, type_=Text), JSONB))
    return records.table_valued(*columns).render_derived(with_types=True)


@lru_cache(maxsize=64)
def _update_shape(table: Table, key: str, names: tuple[str, ...]) -> Any:
    """``update_rows``'s PostgreSQL statement for rows of these columns, built once."""
    source = _as_table(table, [key, *names])
    return update(table).where(table.c[key] == source.c[key]).values({name: source.c[name] for name in names})


def _document(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    """The rows as one JSON document for ``_as_table``: one text parameter, serialised and parsed in C (an array
    parameter per column would have the driver escape every element in Python).

    Each value is first processed as its column processes a bound value (an aware time is put in UTC, a naive
    one refused); JSON columns hold their documents as they are.
    """
    dialect = session.get_bind().dialect
    processed = [(name, process) for name in names if (process := _processor(table.c[name].type, dialect))]
    document = []
    for position, row in enumerate(rows):
        record = {name: row[name] for name in names}
        for name, process in processed:
            record[name] = process(record[name])
        record[_POSITION] = position
        document.append(record)
    return orjson.dumps(document, default=_json_scalar).decode()


def _processor(column_type: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """How a column processes a bound value (None: as it is); a JSON column's document goes in as it is."""
    if isinstance(column_type.dialect_impl(dialect), JSON):
        return None
    processor: Callable[[Any], Any] | None = column_type.bind_processor(dialect)
    return processor


def _json_scalar(value: Any) -> str:
    """orjson writes JSON values, dates and times itself (times as ``isoformat`` spells them); nothing else."""
    raise TypeError(f"{type(value).__name__} cannot be sent in a batch of rows (only JSON values and times)")


def lock_name(session: Session, name: str) -> None:
    """Hold a lock on ``name`` until the transaction ends: two transactions about the same thing with no row to lock
    (an Idempotency-Key seen for the first time) run one after the other. PostgreSQL: a transaction-level advisory
    lock on a 64-bit digest of the name; SQLite: its writes are serial already (``BEGIN IMMEDIATE``)."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

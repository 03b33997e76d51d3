"""The database engine: one per URL, with SQLite made safe for several writers.

SQLite: WAL journal, foreign keys on, a busy timeout, and every transaction opened with ``BEGIN IMMEDIATE`` so
two writers queue for the lock instead of one failing with "database is locked" half way through.
PostgreSQL: psycopg 3, pre-ping, plain READ COMMITTED; concurrency-critical statements lock their rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from models.errors import DatabaseUnavailable, InvalidInput

_ENGINES: dict[str, Engine] = {}


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
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
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


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits at the end of the block and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

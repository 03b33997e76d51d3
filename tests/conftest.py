"""Shared fixtures: a real database per test, on SQLite and on PostgreSQL.

Database tests take the ``engine`` fixture and run twice, once per backend. The schema is made by the real
migrations (alembic), once per test session and backend; each test then starts from empty tables.

PostgreSQL: ``CLAIMFLOW_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``)
names a server and a database to connect to; the tests create their own throwaway database beside it and
drop it at the end. Where no PostgreSQL answers, the PostgreSQL half is skipped, unless
``CLAIMFLOW_REQUIRE_POSTGRES=1`` (as in CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from claimflow.db import create_db_engine
from claimflow.migrate import upgrade

POSTGRES_ADMIN_URL = os.environ.get(
    "CLAIMFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("CLAIMFLOW_REQUIRE_POSTGRES") == "1"
TABLES = (
    "event", "escalation", "approval", "step", "document_requirement", "feedback", "outbox",
    "case", "customer", "staff", "department", "case_counter",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's own data directory or .env."""
    from claimflow.settings import get_settings

    monkeypatch.setenv("CLAIMFLOW_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    monkeypatch.delenv("CLAIMFLOW_DATABASE_URL", raising=False)
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}", pool=False)
    upgrade(engine)
    engine.dispose()
    return path


@contextmanager
def throwaway_postgres_database() -> Iterator[str]:
    """An empty PostgreSQL database beside the configured one, dropped afterwards."""
    admin = create_engine(
        POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    name = f"claimflow_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {str(exc.orig).splitlines()[0]}"
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database with the schema migrated, for the whole test session."""
    with throwaway_postgres_database() as url:
        engine = create_db_engine(url, pool=False)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with nothing in it, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with throwaway_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "claimflow.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    with engine.begin() as connection:
        quoted = ", ".join(f'"{table}"' for table in TABLES)
        connection.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()

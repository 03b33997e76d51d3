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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from claimflow.db import create_db_engine, session_scope
from claimflow.demo import sample_directory
from claimflow.migrate import upgrade
from claimflow.secrets import encrypt
from claimflow.settings import get_settings
from models.enums import CaseKind, Channel
from models.otp import code_at, new_secret
from models.tables import Case, CaseCreate, CustomerCreate, Event, Outbox, Staff, Step
from tasks.cases import get_case
from tasks.deadlines import desk_rules
from tasks.staff import enroll, import_directory
from tasks.workflow import Desk, advance, decide, intake, view

# CI runs the property tests on a fixed set of examples (the same on every run), so a landing is decided by
# the code and not by the luck of the draw; developers' runs keep exploring new examples.
# No per-example deadline there: CI shares two cores between the test workers, Prefect servers, PostgreSQL and
# chromium, and one example stalled past Hypothesis's 200 ms is a flaky failure, not a finding.
settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

# The files that wait most (a whole desk started and played: claimflow up, Prefect servers, a browser) start first,
# so that they wait beside the quick files instead of after them (xdist hands whole files to workers in this order).
SLOW_FIRST = ("test_readme_walk.py", "test_up.py", "test_chaos_prefect.py", "test_ui_decision.py", "test_up_postgres.py",
              "test_chaos.py", "test_runner.py", "test_case_flows.py", "test_prefect_server.py")  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: the rest keep their order


POSTGRES_ADMIN_URL = os.environ.get("CLAIMFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("CLAIMFLOW_REQUIRE_POSTGRES") == "1"
TABLES = (
    "attachment", "intake_request", "mail_message", "survey_invitation", "audit_checkpoint",
    "event", "escalation", "approval", "step", "document_requirement", "feedback", "outbox",
    "case", "customer", "staff", "department", "case_counter",
)  # fmt: skip


DESK_PHONE = "010-0000-0000"
"""The test desk's phone number: no one's real line."""


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's own data directory or .env."""
    from claimflow.settings import get_settings

    monkeypatch.setenv("CLAIMFLOW_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    monkeypatch.delenv("CLAIMFLOW_DATABASE_URL", raising=False)
    monkeypatch.setenv("CLAIMFLOW_DESK_PHONE", DESK_PHONE)  # a desk sets its own number (there is no default)
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
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
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
        # the event log refuses TRUNCATE (a trigger); a test database is emptied as a superuser, past the triggers
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


# Monday 2 March 2026, 09:30 in Shanghai
NOW = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)


class DeskWorld:
    """A migrated database with the sample desk, every member enrolled, and a clock the test moves."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        settings = get_settings()
        self.desk = Desk(rules=desk_rules(settings), settings=settings)
        self.secrets: dict[str, str] = {}
        self._used: dict[str, int] = {}
        self.now = NOW
        with session_scope(engine) as session:
            import_directory(session, directory=sample_directory())
            for member in session.exec(select(Staff)):
                self.secrets[member.username] = secret = new_secret()
                enroll(session, username=member.username, encrypted_secret=encrypt(settings, secret))

    def live_code(self, who: str, *, lasting: bool = False) -> str:
        """A code ``who``'s app shows about now that has not been used yet (real time, for flows that check
        codes against the real clock): codes from the previous, current and next 30-second step are valid,
        each once, and a person's codes only in rising order. ``lasting``: the next step's code, accepted for
        60 to 90 s (a form a browser fills in and may submit again), where the current one may lapse after
        30 s; this person's next code then waits for the step after."""
        import time

        used = self._used.get(who, -10)
        while True:
            current = int(time.time()) // 30
            counter = max(used + 1, current + lasting)  # accepted for 30 to 60 s from now (lasting: 60 to 90)
            if counter <= current + 1:
                self._used[who] = counter
                return code_at(self.secrets[who], datetime.fromtimestamp(counter * 30, UTC))
            time.sleep(1)

    def file(self, kind: CaseKind = CaseKind.claim, **fields: object) -> Case:
        customer = fields.pop("customer", None) or CustomerCreate(name="张三", email="zhang.san@example.com")
        actor = str(fields.pop("actor", "test"))  # a webhook source's cases: intake_actor(source)
        data = CaseCreate(kind=kind, channel=fields.pop("channel", Channel.email), customer=customer, **fields)
        with session_scope(self.engine) as session:
            return intake(session, self.desk, data=data, actor=actor, now=self.now)

    def view(self, case: Case):
        with session_scope(self.engine) as session:
            return view(session, self.desk, case_id=case.id, now=self.now)

    def decide(self, case: Case, who: str, **answer: object):
        self.now += timedelta(minutes=5)  # each code is used once; the next decision is in a later time step
        key = self.view(case).waiting_key
        code = answer.pop("code", None) or code_at(self.secrets[who], self.now)
        with session_scope(self.engine) as session:
            return decide(
                session,
                self.desk,
                case_id=case.id,
                key=key,
                answer={"staff": who, "approval_code": code, **answer},
                now=self.now,
            )

    def advance(self, case: Case, action: str) -> None:
        with session_scope(self.engine) as session:
            advance(session, self.desk, case_id=case.id, action=action, now=self.now)

    def case(self, case: Case) -> Case:
        with Session(self.engine) as session:
            return get_case(session, case.number)

    def events(self, case: Case) -> list[str]:
        with Session(self.engine) as session:
            return [
                e.type
                for e in session.exec(select(Event).where(Event.case_id == case.id).order_by(col(Event.sequence)))
            ]

    def outbox(self) -> list[str]:
        with Session(self.engine) as session:
            return [o.template for o in session.exec(select(Outbox).order_by(col(Outbox.id)))]

    def step(self, case: Case, name: str) -> Step:
        with Session(self.engine) as session:
            return session.exec(
                select(Step).where(Step.case_id == case.id, Step.name == name).order_by(col(Step.id).desc())
            ).first()


@pytest.fixture
def world(engine: Engine) -> DeskWorld:
    return DeskWorld(engine)


@pytest.fixture
def desk_world() -> type[DeskWorld]:
    """The ``DeskWorld`` class, for tests that build the world on an engine of their own."""
    return DeskWorld

"""The PostgreSQL role set-up the README documents: the schema's owner migrates, the desk runs as a role that
owns nothing, and that role can append to the audit log but neither change, delete nor truncate it, nor turn its
triggers off."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from claimflow.db import create_db_engine, session_scope
from claimflow.migrate import upgrade
from models.tables import CaseCreate, CustomerCreate
from tasks.audit import checkpoint
from tasks.cases import file_case
from tests.conftest import POSTGRES_ADMIN_URL, throwaway_postgres_database

GRANTS = """
GRANT USAGE ON SCHEMA public TO {desk};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {desk};
REVOKE UPDATE, DELETE, TRUNCATE ON event, audit_checkpoint FROM {desk};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {desk};
"""


@pytest.fixture
def roles() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    owner, desk = f"claimflow_owner_{suffix}", f"claimflow_desk_{suffix}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE ROLE {owner} LOGIN"))
            connection.execute(text(f"CREATE ROLE {desk} LOGIN"))
    except (
        DBAPIError
    ) as exc:  # throwaway_postgres_database below fails (or skips) with the reason if PostgreSQL is away
        admin.dispose()
        pytest.fail(f"cannot create roles: {exc}")
    try:
        yield owner, desk
    finally:
        with admin.connect() as connection:
            for role in (desk, owner):
                connection.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def test_the_desk_role_appends_to_the_audit_log_and_can_neither_rewrite_it_nor_turn_its_guards_off(roles) -> None:
    owner, desk = roles
    with throwaway_postgres_database() as url:
        admin_db = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin_db.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{make_url(url).database}" OWNER TO {owner}'))
            connection.execute(text(f"ALTER SCHEMA public OWNER TO {owner}"))
        admin_db.dispose()
        as_owner = create_db_engine(make_url(url).set(username=owner).render_as_string(hide_password=False), pool=False)
        upgrade(as_owner)
        with as_owner.begin() as connection:
            for statement in GRANTS.format(desk=desk).strip().splitlines():
                connection.execute(text(statement))
        as_owner.dispose()

        as_desk = create_db_engine(make_url(url).set(username=desk).render_as_string(hide_password=False), pool=False)
        try:
            now = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
            with session_scope(as_desk) as session:  # the desk's work: a case and its events, and a checkpoint
                case = file_case(session, data=CaseCreate(kind="inquiry", channel="phone",
                                                          customer=CustomerCreate(name="张三", phone="13800000000")),
                                 actor="test", now=now)  # fmt: skip
                number = case.number
            with session_scope(as_desk) as session:
                assert checkpoint(session, key=b"k" * 32, now=now) is not None
            for refused in (
                "UPDATE event SET actor = 'x'",
                "DELETE FROM event",
                "TRUNCATE event",
                "DELETE FROM audit_checkpoint",
                "SET session_replication_role = replica",
                "ALTER TABLE event DISABLE TRIGGER ALL",
                "DROP TRIGGER event_append_only ON event",
            ):
                with pytest.raises(DBAPIError) as caught, as_desk.begin() as connection:
                    connection.execute(text(refused))
                reason = str(caught.value.orig).lower()
                assert "permission denied" in reason or "must be owner" in reason, (refused, reason)
            with as_desk.connect() as connection:
                assert connection.execute(text("SELECT count(*) FROM event")).scalar_one() == 1
                assert connection.execute(text('SELECT number FROM "case"')).scalar_one() == number
        finally:
            as_desk.dispose()

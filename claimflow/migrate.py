"""Schema migrations (alembic), run from code so that ``claimflow db upgrade`` needs no alembic.ini."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from claimflow.db import check_reachable
from models.errors import InvalidInput


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("claimflow") / "migrations"))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to ``revision``; returns (revision before, revision after)."""
    check_reachable(engine)
    config = alembic_config(engine)
    before = current_revision(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return before, current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError:
        return None


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def require_current_schema(engine: Engine) -> None:
    """Refuse to serve a database whose schema is not this code's (``InvalidInput``, saying both revisions).

    A process started on newer code before ``claimflow db upgrade`` (a deploy that restarts the API before it
    migrates) failed every request on a column the database did not have, and logged a traceback for each: in a
    surge, 190 MB in seven minutes and not one case filed. A database that cannot be reached is let through: each
    request then says so (503) until it is back, as it would for an outage after start-up."""
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except OperationalError:
        return
    head = head_revision(engine)
    if current != head:
        raise InvalidInput(f"the case database is at schema revision {current or 'none (empty)'} and this version of "
                           f"claimflow needs {head}: run 'claimflow db upgrade', then start this again")  # fmt: skip

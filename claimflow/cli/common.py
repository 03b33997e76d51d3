"""What the command groups of ``claimflow`` share: who is acting, the time, the database, the desk, and the
options that several groups take.

Every group module imports this one (never ``claimflow.cli`` itself, which registers them). Nothing here loads
Prefect or the workflow at import time: ``desk()`` imports it when a command asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import Session

from claimflow.db import check_reachable, get_engine, session_scope
from claimflow.settings import get_settings
from models.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from tasks.workflow import Desk


class _State:
    actor: str = "system"


state = _State()
"""Who is acting: set by the ``--actor`` option of ``claimflow`` (see ``claimflow.cli``), read by the commands that
record it in the audit log."""

SupervisorOption = Annotated[str, typer.Option("--by", help="You: a supervisor or manager.")]
CodeOption = Annotated[str, typer.Option(help="Your current approval code.")]
HolderOption = Annotated[str, typer.Option("--by", help="You: the case's handler, or a supervisor or manager.")]


def now() -> datetime:
    return datetime.now(UTC)


def engine() -> Engine:
    """The case database's engine, checked to answer."""
    bound = get_engine(get_settings().resolved_database_url)
    check_reachable(bound)
    return bound


@contextmanager
def session() -> Iterator[Session]:
    """A committed-or-rolled-back session; a schema that was never created is reported as such."""
    bound = engine()
    try:
        with session_scope(bound) as session:
            yield session
    except (OperationalError, ProgrammingError) as exc:
        text = str(exc.orig or exc)
        if "no such table" in text or "does not exist" in text:
            raise DatabaseUnavailable(
                "the database has no claimflow schema yet: run 'claimflow db upgrade' first"
            ) from exc
        raise


def desk() -> Desk:
    """The desk the workflow runs with, from the settings in force (imports the workflow: call it in a command)."""
    from tasks.workflow import Desk

    return Desk.of(get_settings())

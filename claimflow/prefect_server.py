"""The embedded Prefect server: ``python -m claimflow.prefect_server --host H --port P`` is ``prefect server start``
with one change, for its SQLite database only.

Prefect's server opens its write transactions on SQLite as DEFERRED unless the caller asks to lock for update
(``AioSqliteConfiguration.begin_transaction``): such a transaction reads, then writes. In WAL mode that upgrade
fails at once with "database is locked" when another writer committed in between, and SQLite's busy timeout does
not apply to it. Resuming a suspended run (``POST /flow_runs/{id}/resume``: the UI's Resume, ``claimflow decide``)
is such a transaction, so a decision made while the desk runner writes could fail with an ERROR and a traceback in
the server's log. Here every write transaction begins IMMEDIATE: it takes the write lock first and waits its turn
(the busy timeout) instead of failing. SQLite has one writer at a time either way; reads outside transactions are
unchanged. ``tests/claimflow/test_prefect_server.py`` resumes runs while others write, and counts.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


def immediate_write_transactions() -> None:
    """Make every SQLite write transaction of this process's Prefect server begin IMMEDIATE (idempotent)."""
    from prefect.server.database import configurations

    sqlite = configurations.AioSqliteConfiguration
    if getattr(sqlite.begin_transaction, "claimflow_immediate", False):
        return
    original = sqlite.begin_transaction

    @asynccontextmanager
    async def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> AsyncIterator[Any]:
        async with original(self, session, with_for_update=True) as transaction:
            yield transaction

    begin_transaction.claimflow_immediate = True  # type: ignore[attr-defined]
    sqlite.begin_transaction = begin_transaction  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """``prefect server start`` with ``argv`` (``--host``, ``--port``), its SQLite writes immediate; a leading
    ``--nice N`` lowers its CPU priority first (``claimflow.priority``)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--nice"]:
        from claimflow.priority import lower_priority

        if len(arguments) < 2 or not arguments[1].isdigit():
            raise SystemExit("--nice takes a whole number from 0 to 19, e.g. --nice 10")
        lower_priority(int(arguments[1]))
        arguments = arguments[2:]
    immediate_write_transactions()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *arguments]  # Prefect's CLI reads it
    app()


if __name__ == "__main__":
    main()

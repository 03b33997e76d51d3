"""Case numbers stay unique and gapless when many processes file at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sqlalchemy import Engine
from sqlmodel import Session, select

from models.tables import Case

PROCESSES = 6
CASES_EACH = 15

FILER = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime
    from claimflow.db import create_db_engine, session_scope
    from models.tables import CaseCreate, CustomerCreate
    from tasks.cases import file_case

    url, count, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    engine = create_db_engine(url)
    data = CaseCreate(kind="claim", channel="webhook", customer=CustomerCreate(name="Test Customer"))
    while time.time() < start_at:  # all processes start filing at the same moment
        time.sleep(0.005)
    for _ in range(count):
        with session_scope(engine) as session:
            print(file_case(session, data=data, actor="intake", now=datetime(2026, 5, 1, tzinfo=UTC)).number)
    """
)


def test_concurrent_filers_never_share_a_number(engine: Engine, database_url: str) -> None:
    import time

    start_at = time.time() + 4.0  # time for every interpreter to import before the race
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FILER, database_url, str(CASES_EACH), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    printed: list[str] = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        printed += stdout.split()
    total = PROCESSES * CASES_EACH
    expected = [f"CLM-2026-{n:06d}" for n in range(1, total + 1)]
    assert sorted(printed) == expected
    with Session(engine) as session:
        assert sorted(session.exec(select(Case.number))) == expected

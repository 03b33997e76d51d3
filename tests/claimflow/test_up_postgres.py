"""The scale-out setup: ``claimflow up`` with the case database and the Prefect server's own database both on
PostgreSQL, the same journey as on the embedded default (``up_journey`` in conftest.py).

Each run gets two fresh databases beside ``CLAIMFLOW_TEST_POSTGRES_URL``, dropped at the end. Without a
reachable PostgreSQL the test is skipped, unless ``CLAIMFLOW_REQUIRE_POSTGRES=1`` (as in CI): then it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import throwaway_postgres_database

if TYPE_CHECKING:
    from tests.claimflow.conftest import Journey


def _libpq(url: str) -> str:
    """The same database as a plain ``postgresql://`` URL, as psycopg takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.mark.slow
@pytest.mark.postgres
def test_up_runs_the_desk_with_cases_and_prefect_on_postgresql(
    up_journey: Callable[..., Journey], tmp_path: Path
) -> None:
    with throwaway_postgres_database() as cases_url, throwaway_postgres_database() as prefect_db:
        prefect_url = make_url(prefect_db).set(drivername="postgresql+asyncpg")
        journey = up_journey(
            CLAIMFLOW_DATABASE_URL=cases_url,
            CLAIMFLOW_PREFECT_DATABASE_URL=prefect_url.render_as_string(hide_password=False),
        )

        assert f"case database: {make_url(cases_url).render_as_string(hide_password=True)}" in journey.output
        with psycopg.connect(_libpq(cases_url)) as connection:
            filed = {number for (number,) in connection.execute('SELECT number FROM "case"')}
        assert filed == set(journey.cases.values())

        # the Prefect server kept the case runs (one per case, named by its number) in its PostgreSQL database
        with psycopg.connect(_libpq(prefect_db)) as connection:
            runs = {name for (name,) in connection.execute("SELECT name FROM flow_run")}
        assert filed <= runs
        # ... and neither database fell back to a SQLite file in the data directory
        data = tmp_path / "data"
        assert not (data / "claimflow.db").exists()
        assert not (data / "prefect" / "prefect.db").exists()

        shown = journey.run("config", "show").stdout
        assert "CLAIMFLOW_PREFECT_DATABASE_URL" in shown
        assert prefect_url.database not in shown
        if prefect_url.password:
            assert str(prefect_url.password) not in journey.output + shown

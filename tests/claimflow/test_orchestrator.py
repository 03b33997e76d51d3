"""Where the desk's Prefect server keeps its state: SQLite in the data directory, or the PostgreSQL database
``CLAIMFLOW_PREFECT_DATABASE_URL`` names, whose password is never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from claimflow.orchestrator import server_environment
from claimflow.settings import Settings
from models.errors import InvalidInput

URL = "postgresql+asyncpg://desk:s3cret-pw@db.internal:5432/prefect"


def test_the_embedded_server_keeps_prefects_default_database_when_none_is_set(tmp_path: Path) -> None:
    environment = server_environment(Settings(data_dir=tmp_path))
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in environment
    assert environment["PREFECT_HOME"] == str(tmp_path / "prefect")  # Prefect's SQLite file lives there


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(URL, id="postgresql"),
        pytest.param("sqlite+aiosqlite:////srv/prefect/prefect.db", id="sqlite-elsewhere"),
    ],
)
def test_the_embedded_server_runs_on_the_configured_database(tmp_path: Path, url: str) -> None:
    settings = Settings(data_dir=tmp_path, prefect_database_url=url)
    assert server_environment(settings)["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param(
            "postgresql+psycopg://desk:s3cret-pw@db.internal:5432/prefect",
            "CLAIMFLOW_PREFECT_DATABASE_URL postgresql+psycopg://desk:***@db.internal:5432/prefect uses the "
            "driver 'postgresql+psycopg'; the Prefect server needs postgresql+asyncpg or sqlite+aiosqlite",
            id="the-case-databases-driver-is-sync",
        ),
        pytest.param(
            "desk:s3cret-pw@db.internal/prefect",
            "CLAIMFLOW_PREFECT_DATABASE_URL is not a SQLAlchemy URL",
            id="not-a-url",
        ),
    ],
)
def test_a_database_the_prefect_server_cannot_use_is_refused_without_its_password(
    tmp_path: Path, url: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        server_environment(Settings(data_dir=tmp_path, prefect_database_url=url))
    assert str(refused.value).startswith(message)
    assert "s3cret-pw" not in str(refused.value)


def test_settings_never_print_the_prefect_database_password(tmp_path: Path) -> None:
    shown = dict((name, value) for name, value, _ in Settings(data_dir=tmp_path, prefect_database_url=URL).described())
    assert shown["CLAIMFLOW_PREFECT_DATABASE_URL"] == "**********"
    assert "s3cret-pw" not in repr(Settings(data_dir=tmp_path, prefect_database_url=URL))

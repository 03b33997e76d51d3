"""The README's main command on the embedded default: ``claimflow up`` with the case database and the Prefect
server's database both SQLite files in the data directory. The journey itself (up, demo, decide, Ctrl-C) is
``up_journey`` in conftest.py; ``test_up_postgres.py`` plays it on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.claimflow.conftest import Journey


@pytest.mark.slow
def test_up_runs_the_desk_the_demo_plays_it_and_ctrl_c_stops_it(
    up_journey: Callable[..., Journey], tmp_path: Path
) -> None:
    journey = up_journey()
    data = tmp_path / "data"
    assert f"case database: sqlite:///{data / 'claimflow.db'}" in journey.output
    assert (data / "prefect" / "prefect.db").is_file()

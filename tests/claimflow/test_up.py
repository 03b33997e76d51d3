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
    assert "delivery:     no channel configured: messages are dead-lettered" in journey.output
    # no desk phone is set in this journey: no customer is told to ring someone else's line, their messages wait
    assert "desk phone:   not set: customer messages quote it" in journey.output
    assert (data / "prefect" / "prefect.db").is_file()


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({}, "no channel configured: messages are dead-lettered"),
        ({"customer_email_url": "mailtos://u:p@smtp.example.com"}, "customers by e-mail"),
        (
            {
                "customer_sms_url": "json://sms.internal/send?-to={phone}",
                "staff_channels": {"role:supervisor": ["mailto://a"], "department:claims-motor": ["json://b"]},
            },
            "customers by SMS, staff department:claims-motor, staff role:supervisor",
        ),
    ],
)
def test_the_banner_says_where_messages_go(settings: dict[str, object], said: str, tmp_path: Path) -> None:
    from claimflow.cli.desk import describe_delivery
    from claimflow.settings import Settings

    described = describe_delivery(Settings(data_dir=tmp_path, **settings))  # type: ignore[arg-type]
    assert described.startswith(said)
    assert "u:p@" not in described and "mailto" not in described  # where, never the secrets in the URLs

"""Reading a case in its run: a plain call with the retries a task had, not a Prefect task run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

import flows.case
from models.errors import NotFound


def fake_database(monkeypatch: pytest.MonkeyPatch, outcomes: list[Any]) -> list[float]:
    """``transaction`` gives the outcomes in turn (an exception is raised); returns the waits between tries."""
    waits: list[float] = []

    async def transaction(work: Any, **kwargs: Any) -> Any:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(flows.case, "transaction", transaction)
    monkeypatch.setattr(flows.case.anyio, "sleep", sleep)
    monkeypatch.setattr(flows.case, "desk", lambda: None)
    return waits


def test_a_failing_database_is_tried_again_with_the_tasks_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    down = OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    waits = fake_database(monkeypatch, [down, down, "the view"])
    assert asyncio.run(flows.case.read_case(7)) == "the view"
    assert waits == [1.0, 5.0]


def test_the_fourth_failure_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    down = OperationalError("SELECT 1", {}, Exception("connection refused"))
    waits = fake_database(monkeypatch, [down, down, down, down, "never read"])
    with pytest.raises(OperationalError):
        asyncio.run(flows.case.read_case(7))
    assert waits == list(flows.case.READ_RETRY_DELAYS)


def test_a_desk_error_is_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    waits = fake_database(monkeypatch, [NotFound("no case with id 7"), "never read"])
    with pytest.raises(NotFound):
        asyncio.run(flows.case.read_case(7))
    assert waits == []

"""The ``mail-intake`` flow on a real Prefect server with the desk runner, reading a real IMAP server (Dovecot):
a mailbox is taken chunk after chunk until it is empty, not one chunk a scheduled run, and the new cases' runs are
started; what its time budget does not cover is left to the next run and to the reconciler."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from sqlmodel import Session, col, select

from claimflow.settings import get_settings
from models.tables import Case
from tasks.mail import FILED
from tests.imap import Dovecot, run_dovecot
from tests.tasks.test_mail import message


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    yield from run_dovecot()


def _mailbox(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, mails: int) -> str:
    """A fresh mailbox with ``mails`` new claims, set as the desk's intake mailbox (in the environment: the flow
    reads the settings in force)."""
    user = f"desk{uuid4().hex[:10]}"
    dovecot.deliver(user, *(message("Car accident claim", f"Rear-ended, number {n}.", sender=f"driver{n}@example.com")
                            for n in range(mails)))  # fmt: skip
    for name, value in dovecot.settings_for(user).items():
        secret = getattr(value, "get_secret_value", None)
        monkeypatch.setenv(f"CLAIMFLOW_{name.upper()}", str(secret() if secret else value))
    get_settings.cache_clear()
    return user


def _cases(live: Any) -> list[Case]:
    with Session(live.engine) as session:
        return list(session.exec(select(Case).order_by(col(Case.id))))


def test_a_run_takes_the_whole_mailbox_chunk_after_chunk_and_starts_the_new_cases_runs(
    live: Any, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.mail import mail_intake

    user = _mailbox(dovecot, monkeypatch, mails=7)
    result = asyncio.run(mail_intake(limit=3))  # chunks of 3, 3 and 1

    assert result["counts"][FILED] == 7, result
    cases = _cases(live)
    assert sorted(result["new_case_ids"]) == [c.id for c in cases] and len(cases) == 7
    assert all(c.flow_run_id is not None for c in cases)  # every new case's run started
    assert all(dovecot.flags(user).values())


def test_a_run_out_of_time_leaves_the_rest_of_the_mailbox_to_the_next_and_the_runs_to_the_reconciler(
    live: Any, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.mail import mail_intake
    from flows.watch import reconcile

    user = _mailbox(dovecot, monkeypatch, mails=7)
    result = asyncio.run(mail_intake(limit=3, budget_seconds=0))  # one chunk, then its time is up

    assert result["counts"][FILED] == 3, result
    assert sorted(dovecot.flags(user).values()) == [False] * 4 + [True] * 3
    cases = _cases(live)
    assert [c.flow_run_id is not None for c in cases] == [True, False, False]  # one run started, two left

    again = asyncio.run(mail_intake(limit=3))
    assert again["counts"][FILED] == 4 and all(dovecot.flags(user).values())
    asyncio.run(reconcile())  # the two runs the first run left
    assert all(c.flow_run_id is not None for c in _cases(live))

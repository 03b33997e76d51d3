"""Fixtures of the task tests: a Dovecot IMAP server for the whole session, and a fresh mailbox user per test."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest

from tests.imap import Dovecot, run_dovecot


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A Dovecot IMAP server on free ports: plain (with STARTTLS) and IMAPS, self-signed certificate, any user
    name logs in with the static password and gets an empty maildir of its own."""
    yield from run_dovecot()


@pytest.fixture
def imap_user() -> str:
    return f"desk{uuid4().hex[:10]}"

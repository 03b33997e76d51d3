"""Signed webhook requests: the signature, the rotation of secrets and the replay window."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from models.signing import SignatureRejected, check_fresh, matching_secret, parse_timestamp, sign, verify

NOW = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
TS = str(int(NOW.timestamp()))
BODY = b'{"customer": {"name": "x"}}'


def test_signature_is_hex_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"secret", TS.encode() + b"." + BODY, hashlib.sha256).hexdigest()
    assert sign("secret", TS, BODY) == expected


def test_a_signature_by_either_secret_of_a_rotating_source_is_accepted() -> None:
    secrets = ["new", "old"]
    assert verify(secrets, timestamp=TS, signature=sign("new", TS, BODY), body=BODY, now=NOW) == 0
    assert verify(secrets, timestamp=TS, signature=sign("old", TS, BODY), body=BODY, now=NOW) == 1


def test_upper_case_hex_is_the_same_signature() -> None:
    assert verify(["k"], timestamp=TS, signature=sign("k", TS, BODY).upper(), body=BODY, now=NOW) == 0


@pytest.mark.parametrize(
    ("secrets", "timestamp", "signature", "body", "reason"),
    [
        pytest.param([], TS, sign("k", TS, BODY), BODY, "does not match the request", id="source-without-secrets"),
        pytest.param(["k"], None, sign("k", TS, BODY), BODY, "Timestamp is missing", id="no-timestamp"),
        pytest.param(["k"], "2026-03-02T01:30:00Z", "0" * 64, BODY, "Unix seconds", id="iso-timestamp"),
        pytest.param(["k"], "-1", "0" * 64, BODY, "Unix seconds", id="negative-timestamp"),
        pytest.param(["k"], "１２３", "0" * 64, BODY, "Unix seconds", id="non-ascii-digits"),
        pytest.param(["k"], TS, None, BODY, "Signature is missing", id="no-signature"),
        pytest.param(["k"], TS, "abc", BODY, "64 hex digits", id="short-signature"),
        pytest.param(["k"], TS, "z" * 64, BODY, "64 hex digits", id="not-hex"),
        pytest.param(["k"], TS, sign("other", TS, BODY), BODY, "does not match", id="wrong-secret"),
        pytest.param(["k"], TS, sign("k", TS, BODY), BODY + b" ", "does not match", id="body-changed"),
        pytest.param(["k"], str(int(TS) + 1), sign("k", TS, BODY), BODY, "does not match", id="timestamp-changed"),
    ],
)
def test_refused(secrets: list[str], timestamp: str | None, signature: str | None, body: bytes, reason: str) -> None:
    with pytest.raises(SignatureRejected, match=reason):
        verify(secrets, timestamp=timestamp, signature=signature, body=body, now=NOW)


@pytest.mark.parametrize(
    ("offset", "fresh"),
    [
        pytest.param(0, True, id="now"),
        pytest.param(300, True, id="exactly-five-minutes-late"),
        pytest.param(-300, True, id="exactly-five-minutes-early"),
        pytest.param(301, False, id="replayed-after-five-minutes"),
        pytest.param(-301, False, id="clock-ahead-by-more-than-five-minutes"),
    ],
)
def test_replay_window_is_five_minutes_either_way(offset: int, fresh: bool) -> None:
    sent = int(NOW.timestamp()) - offset
    if fresh:
        check_fresh(sent, now=NOW)
    else:
        with pytest.raises(SignatureRejected, match="away from the server's clock"):
            check_fresh(sent, now=NOW)


def test_a_stale_but_correctly_signed_request_is_refused() -> None:
    old = str(int((NOW - timedelta(minutes=6)).timestamp()))
    with pytest.raises(SignatureRejected, match="360 s away"):
        verify(["k"], timestamp=old, signature=sign("k", old, BODY), body=BODY, now=NOW)


def test_tolerance_is_configurable() -> None:
    check_fresh(int(NOW.timestamp()) - 600, now=NOW, tolerance=timedelta(minutes=10))


def test_timestamp_parses_unix_seconds() -> None:
    assert parse_timestamp(TS) == int(NOW.timestamp())


def test_every_secret_is_compared_and_the_first_match_is_reported() -> None:
    signature = sign("same", TS, BODY)
    assert matching_secret(["same", "same"], timestamp=TS, body=BODY, signature=signature) == 0

"""Retry timing and the dead-letter decision of the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.delivery import DeadLetter, DeliveryPolicy, Retry, after_failure, backoff_delay, lease_until

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = DeliveryPolicy(max_attempts=5, base_seconds=30, max_seconds=600, jitter=0.2)


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [
        pytest.param(1, 30, id="first-failure-waits-base"),
        pytest.param(2, 60, id="doubles"),
        pytest.param(4, 240, id="doubles-again"),
        pytest.param(6, 600, id="capped"),
        pytest.param(500, 600, id="huge-attempt-count-still-capped"),
    ],
)
def test_backoff_doubles_up_to_the_cap_without_jitter_at_the_midpoint(attempts: int, seconds: float) -> None:
    assert backoff_delay(POLICY, attempts=attempts, random=lambda: 0.5) == timedelta(seconds=seconds)


def test_jitter_spreads_the_delay_evenly_around_it() -> None:
    assert backoff_delay(POLICY, attempts=2, random=lambda: 0.0) == timedelta(seconds=48)
    assert backoff_delay(POLICY, attempts=2, random=lambda: 0.999999) == pytest.approx(
        timedelta(seconds=72), abs=timedelta(milliseconds=1)
    )


def test_a_failure_before_the_last_attempt_is_retried_later() -> None:
    assert after_failure(POLICY, attempts=1, now=NOW, random=lambda: 0.5) == Retry(NOW + timedelta(seconds=30))


def test_the_last_attempt_dead_letters() -> None:
    decision = after_failure(POLICY, attempts=5, now=NOW, random=lambda: 0.5)
    assert isinstance(decision, DeadLetter) and "5 attempt" in decision.reason


def test_a_permanent_failure_dead_letters_at_once() -> None:
    assert isinstance(after_failure(POLICY, attempts=1, now=NOW, random=lambda: 0.5, permanent=True), DeadLetter)


def test_the_lease() -> None:
    assert lease_until(DeliveryPolicy(lease_seconds=90), now=NOW) == NOW + timedelta(seconds=90)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"max_attempts": 0}, id="no-attempts"),
        pytest.param({"base_seconds": 0}, id="zero-base"),
        pytest.param({"base_seconds": 10, "max_seconds": 5}, id="cap-below-base"),
        pytest.param({"jitter": 1.0}, id="jitter-could-make-zero-delay"),
        pytest.param({"lease_seconds": 0}, id="no-lease"),
    ],
)
def test_a_nonsensical_policy_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DeliveryPolicy(**kwargs)  # type: ignore[arg-type]

"""Delivery rules of the outbox: when to try a message again, and when to give up (pure).

No clock, no database, no randomness of its own: ``now`` and a random source are arguments, so a test can
ask "what happens after the fourth failure at 09:00?" and get one answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard the outbox tries.

    Attributes:
        max_attempts: attempts before a message is dead-lettered (the first send counts).
        base_seconds: delay after the first failure; doubled after each further failure.
        max_seconds: the longest delay.
        jitter: the delay is spread uniformly over ``[delay * (1 - jitter), delay * (1 + jitter)]`` so that
            messages that failed together (an SMTP outage) do not all come back in the same second.
        lease_seconds: how long a claimed message is reserved for its sender.
    """

    max_attempts: int = 6
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    jitter: float = 0.2
    lease_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_seconds <= 0 or self.max_seconds < self.base_seconds:
            raise ValueError("need 0 < base_seconds <= max_seconds")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")


@dataclass(frozen=True)
class Retry:
    """Try again at ``at``."""

    at: datetime


@dataclass(frozen=True)
class DeadLetter:
    """Give up: the message is dead-lettered and staff are alerted."""

    reason: str


def backoff_delay(policy: DeliveryPolicy, *, attempts: int, random: Callable[[], float]) -> timedelta:
    """The delay after ``attempts`` failed attempts: ``base * 2**(attempts - 1)``, capped, with jitter.

    Args:
        policy: the delivery policy.
        attempts: failed attempts so far (1 after the first failure).
        random: a source of floats in ``[0, 1)`` (``random.random`` in production, fixed in tests).
    """
    if attempts < 1:
        raise ValueError("attempts counts failures so far and starts at 1")
    exponent = min(attempts - 1, 62)  # beyond this the cap applies anyway; keeps the float finite
    delay = min(policy.max_seconds, policy.base_seconds * 2.0**exponent)
    spread = 1.0 - policy.jitter + 2.0 * policy.jitter * random()
    return timedelta(seconds=delay * spread)


def after_failure(
    policy: DeliveryPolicy,
    *,
    attempts: int,
    now: datetime,
    random: Callable[[], float],
    permanent: bool = False,
) -> Retry | DeadLetter:
    """What happens after attempt number ``attempts`` failed.

    Args:
        policy: the delivery policy.
        attempts: attempts made so far, the failed one included.
        now: when the failure was recorded (aware).
        random: a source of floats in ``[0, 1)``.
        permanent: the failure cannot heal by waiting (no address for the recipient, say).

    Returns:
        ``Retry`` with the time of the next attempt, or ``DeadLetter`` after the last attempt or a
        permanent failure.
    """
    if permanent:
        return DeadLetter("permanent failure: retrying cannot help")
    if attempts >= policy.max_attempts:
        return DeadLetter(f"gave up after {attempts} attempt(s)")
    return Retry(now + backoff_delay(policy, attempts=attempts, random=random))


def lease_until(policy: DeliveryPolicy, *, now: datetime) -> datetime:
    """Until when a message claimed at ``now`` stays reserved for its sender."""
    return now + timedelta(seconds=policy.lease_seconds)

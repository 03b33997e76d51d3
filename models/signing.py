"""Signed webhook requests: HMAC-SHA256 signatures and the replay window (pure rules, no clock, no I/O).

Version 2 (``X-Claimflow-Signature: v2=<hex>``): a source signs the request as a whole, ``signed_payload_v2``:
``"v2"``, the timestamp, the method, the path, the source, the Idempotency-Key (empty without one), one per line,
then the raw body. A captured request can then be sent neither to another endpoint (a claim re-filed as a
complaint) nor under another key or source. Version 1 (the bare hex of ``timestamp + "." + body``) covers only the
timestamp and the body; it is accepted until the desk's stated end of the transition
(``CLAIMFLOW_WEBHOOK_V1_UNTIL``). The timestamp (Unix seconds) is in ``X-Claimflow-Timestamp``. During a rotation
a source has two secrets; a signature made with either is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.errors import ClaimflowError

DEFAULT_TOLERANCE = timedelta(minutes=5)
_HEX = frozenset("0123456789abcdef")


class SignatureRejected(ClaimflowError):
    """A request whose source, timestamp or signature cannot be accepted (answered 401)."""

    exit_code = 2


def signed_payload(timestamp: str, body: bytes) -> bytes:
    """The bytes a source signs: the timestamp as sent, a dot, the raw body.

    Args:
        timestamp: the ``X-Claimflow-Timestamp`` header exactly as sent.
        body: the request body exactly as sent (for a GET, the request path; see ``claimflow.web.intake``).

    Returns:
        ``timestamp + b"." + body``.
    """
    return timestamp.encode("ascii") + b"." + body


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature of one request: lowercase hex HMAC-SHA256 of the signed payload with ``secret``.

    Args:
        secret: the source's shared secret (UTF-8 text).
        timestamp: Unix seconds as a decimal string.
        body: the raw body.

    Returns:
        64 lowercase hex digits.
    """
    return hmac.new(secret.encode("utf-8"), signed_payload(timestamp, body), hashlib.sha256).hexdigest()


V2 = "v2="


@dataclass(frozen=True)
class SignedRequest:
    """What a version 2 signature covers besides the timestamp: the request as the server received it."""

    method: str
    path: str
    source: str
    key: str
    body: bytes


def signed_payload_v2(timestamp: str, request: SignedRequest) -> bytes:
    """The bytes a source signs in version 2: ``v2``, the timestamp, the method (upper case), the path (as sent,
    percent-encoding and all), the source, the Idempotency-Key (empty without one), each on a line of its own,
    then the raw body."""
    head = "\n".join(["v2", timestamp, request.method.upper(), request.path, request.source, request.key, ""])
    return head.encode("utf-8") + request.body


def sign_v2(secret: str, timestamp: str, request: SignedRequest) -> str:
    """A version 2 signature: ``v2=`` and the lowercase hex HMAC-SHA256 of ``signed_payload_v2``."""
    digest = hmac.new(secret.encode("utf-8"), signed_payload_v2(timestamp, request), hashlib.sha256).hexdigest()
    return f"{V2}{digest}"


def parse_timestamp(value: str | None) -> int:
    """The Unix time of an ``X-Claimflow-Timestamp`` header.

    Args:
        value: the header as sent, or None when it is missing.

    Returns:
        The seconds since the epoch.

    Raises:
        SignatureRejected: missing, or not a plain decimal integer of at most 12 digits.
    """
    if value is None or not value.strip():
        raise SignatureRejected("X-Claimflow-Timestamp is missing")
    if not (value.isascii() and value.isdigit() and len(value) <= 12):
        raise SignatureRejected("X-Claimflow-Timestamp must be Unix seconds (a decimal integer)")
    return int(value)


def check_fresh(timestamp: int, *, now: datetime, tolerance: timedelta = DEFAULT_TOLERANCE) -> None:
    """Refuse a timestamp too far from ``now`` either way (a replayed or a badly clocked request).

    Args:
        timestamp: Unix seconds from the request.
        now: the receiver's time (aware).
        tolerance: how far off the timestamp may be; a difference of exactly ``tolerance`` is accepted.

    Raises:
        SignatureRejected: the timestamp is more than ``tolerance`` away from ``now``.
    """
    skew = abs(now.timestamp() - timestamp)
    if skew > tolerance.total_seconds():
        raise SignatureRejected(
            f"X-Claimflow-Timestamp is {int(skew)} s away from the server's clock "
            f"(at most {int(tolerance.total_seconds())} s allowed)"
        )


def matching_secret(secrets: Sequence[str], *, timestamp: str, body: bytes, signature: str | None) -> int:
    """Which of the source's secrets made ``signature``; every secret is compared, each in constant time.

    Args:
        secrets: the source's valid secrets (one, or two while rotating).
        timestamp: the timestamp header as sent.
        body: the raw body.
        signature: the ``X-Claimflow-Signature`` header (hex; upper case is accepted).

    Returns:
        The index in ``secrets`` of the secret that made the signature.

    Raises:
        SignatureRejected: no signature, a malformed one, or one that no secret made.
    """
    if signature is None or not signature.strip():
        raise SignatureRejected("X-Claimflow-Signature is missing")
    given = signature.strip().lower()
    if len(given) != 64 or not set(given) <= _HEX:
        raise SignatureRejected("X-Claimflow-Signature must be 64 hex digits (HMAC-SHA256)")
    return _first_match(secrets, given, lambda secret: sign(secret, timestamp, body))


def _first_match(secrets: Sequence[str], given: str, signed_with: Callable[[str], str]) -> int:
    """The index of the first secret whose signature is ``given``. Every secret is compared, each in constant time
    (no early exit: the time taken does not tell which secret, if any, matched); no match, or no secrets at all (an
    unknown source), is refused in the same words, so the answer does not tell which sources exist."""
    matched = -1
    for index, secret in enumerate(secrets):
        if hmac.compare_digest(signed_with(secret), given) and matched < 0:
            matched = index
    if matched < 0:
        raise SignatureRejected("X-Claimflow-Signature does not match the request")
    return matched


def verify(
    secrets: Sequence[str],
    *,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    request: SignedRequest | None = None,
    accept_v1: bool = True,
) -> int:
    """Check one signed request: a well-formed, fresh timestamp and a signature made by one of ``secrets``.

    Args:
        secrets: the source's valid secrets; empty means the source is unknown.
        timestamp: the ``X-Claimflow-Timestamp`` header, or None.
        signature: the ``X-Claimflow-Signature`` header, or None.
        body: the raw body.
        now: the receiver's time (aware).
        tolerance: the replay window either side of ``now``.

    Returns:
        The index of the secret that signed the request.

    Raises:
        SignatureRejected: with the reason, naming the header at fault.
    """
    seconds = parse_timestamp(timestamp)
    assert timestamp is not None
    check_fresh(seconds, now=now, tolerance=tolerance)
    if signature is not None and signature.strip().lower().startswith(V2) and request is not None:
        return _matching_v2(secrets, timestamp=timestamp, request=request, signature=signature.strip().lower())
    if not accept_v1:
        raise SignatureRejected("version 1 signatures are no longer accepted: sign the request with version 2 (v2=...)")
    return matching_secret(secrets, timestamp=timestamp, body=body, signature=signature)


def _matching_v2(secrets: Sequence[str], *, timestamp: str, request: SignedRequest, signature: str) -> int:
    """Which secret made a version 2 signature; an unknown source (no secrets) is refused in the same words as a
    wrong signature, so the answer does not tell which sources exist."""
    given = signature.removeprefix(V2)
    if len(given) != 64 or not set(given) <= _HEX:
        raise SignatureRejected("X-Claimflow-Signature must be v2= and 64 hex digits (HMAC-SHA256)")
    return _first_match(secrets, signature, lambda secret: sign_v2(secret, timestamp, request))

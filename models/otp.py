"""One-time approval codes (TOTP, RFC 6238) checked without reading the clock: ``now`` is an argument.

The open-source Prefect UI has no login, so a decision given through its form carries the staff member's
current code from their authenticator app. A code is accepted once: the accepted time-step counter is
returned and must be stored; a code at or before the stored counter is refused (no replay).
"""

from __future__ import annotations

import hmac
import unicodedata
from datetime import datetime, timedelta

import pyotp

from models.errors import ClaimflowError

STEP_SECONDS = 30
DIGITS = 6
MAX_WRONG_CODES = 5
"""Wrong codes in a row after which a member's codes are locked (a six-digit code must not be guessable)."""
LOCKOUT = timedelta(minutes=15)
"""How long the codes stay locked."""


class CodeRefused(ClaimflowError):
    """The approval code is malformed, wrong, expired or already used."""

    exit_code = 6
    keeps_writes = True  # a wrong code is counted towards the lock-out, whichever command or form refused it


def new_secret() -> str:
    """A fresh base32 secret (160 bits) for an authenticator app."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, *, username: str, issuer: str = "claimflow") -> str:
    """The ``otpauth://`` URI an authenticator app scans (or takes typed in)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=username, issuer_name=issuer)


def code_at(secret: str, when: datetime) -> str:
    """The code an authenticator shows at ``when`` (for enrolment checks and tests)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).at(when)


def ascii_digits(code: str) -> str:
    """What was typed, without spaces, with every decimal digit as its ASCII digit: a code typed in full width
    (an IME's ``１２３４５６``) or in Arabic-Indic digits is the code the person meant, and a digit outside ASCII
    never reaches the comparison (which takes ASCII only).

    Args:
        code: as typed.

    Returns:
        The normalised text; characters that are not decimal digits are kept as they are (and then refused).
    """
    return "".join(str(unicodedata.decimal(c)) if unicodedata.decimal(c, None) is not None else c
                   for c in code if not c.isspace())  # fmt: skip


def verify_code(secret: str, code: str, *, now: datetime, last_counter: int | None, window: int = 1) -> int:
    """Check ``code`` at ``now``.

    Args:
        secret: the staff member's base32 secret.
        code: what they typed (spaces ignored).
        now: the time of the check (aware).
        last_counter: the counter of the last code accepted from them, if any.
        window: how many 30-second steps of clock drift to allow on either side.

    Returns:
        The time-step counter of the accepted code (store it as the new ``last_counter``).

    Raises:
        CodeRefused: not six digits, no match within the window, or a counter already used.
    """
    typed = ascii_digits(code)
    if len(typed) != DIGITS or not (typed.isascii() and typed.isdigit()):
        raise CodeRefused(f"an approval code is {DIGITS} digits")
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int(now.timestamp()) // STEP_SECONDS
    for counter in range(current - window, current + window + 1):
        if hmac.compare_digest(totp.generate_otp(counter), typed):
            if last_counter is not None and counter <= last_counter:
                raise CodeRefused("this approval code was already used; wait for the next one")
            return counter
    raise CodeRefused("the approval code is wrong or has expired")


def after_wrong_code(refused_in_a_row: int, *, now: datetime) -> tuple[int, datetime | None]:
    """The count of wrong codes after one more, and until when the codes are locked (None: not locked).

    Args:
        refused_in_a_row: wrong codes given in a row before this one.
        now: the time of this one.

    Returns:
        (the new count, the end of the lock-out once the count reaches ``MAX_WRONG_CODES``, else None).
    """
    count = refused_in_a_row + 1
    return count, (now + LOCKOUT if count >= MAX_WRONG_CODES else None)

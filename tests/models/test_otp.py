"""Approval codes: RFC 6238 test vectors, clock drift, and no replay."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from models.otp import CodeRefused, code_at, new_secret, provisioning_uri, verify_code

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()  # RFC 6238 appendix B, SHA-1


@pytest.mark.parametrize(
    ("unix_time", "code"),
    [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")],
)
def test_rfc_6238_vectors(unix_time: int, code: str) -> None:
    # the RFC's 8-digit values, last six digits (the same HOTP truncation)
    assert code_at(RFC_SECRET, datetime.fromtimestamp(unix_time, UTC)) == code


NOW = datetime(2026, 12, 1, 2, 0, 15, tzinfo=UTC)


def test_the_current_code_is_accepted_and_its_counter_returned() -> None:
    secret = new_secret()
    counter = verify_code(secret, code_at(secret, NOW), now=NOW, last_counter=None)
    assert counter == int(NOW.timestamp()) // 30


@pytest.mark.parametrize("drift", [timedelta(seconds=-30), timedelta(seconds=30)], ids=["previous-step", "next-step"])
def test_one_step_of_drift_is_allowed(drift: timedelta) -> None:
    secret = new_secret()
    verify_code(secret, code_at(secret, NOW + drift), now=NOW, last_counter=None)


def test_an_old_code_is_refused() -> None:
    secret = new_secret()
    with pytest.raises(CodeRefused, match="wrong or has expired"):
        verify_code(secret, code_at(secret, NOW - timedelta(minutes=2)), now=NOW, last_counter=None)


def test_a_code_cannot_be_used_twice() -> None:
    secret = new_secret()
    code = code_at(secret, NOW)
    counter = verify_code(secret, code, now=NOW, last_counter=None)
    with pytest.raises(CodeRefused, match="already used"):
        verify_code(secret, code, now=NOW + timedelta(seconds=5), last_counter=counter)


@pytest.mark.parametrize("typed", ["12345", "abcdef", "", "1234567"])
def test_malformed_codes_are_refused(typed: str) -> None:
    with pytest.raises(CodeRefused, match="6 digits"):
        verify_code(new_secret(), typed, now=NOW, last_counter=None)


def test_another_persons_code_is_refused() -> None:
    with pytest.raises(CodeRefused):
        verify_code(new_secret(), code_at(new_secret(), NOW), now=NOW, last_counter=None)


def test_provisioning_uri_names_the_staff_member() -> None:
    uri = provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", username="zhao.min")
    assert uri.startswith("otpauth://totp/claimflow:zhao.min?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")


@pytest.mark.parametrize("write", [lambda c: c, lambda c: c.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
                                   lambda c: c.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
                                   lambda c: f"{c[:3]} {c[3:]}"], ids=["ascii", "full-width", "arabic-indic", "spaced"])  # fmt: skip
def test_a_code_in_any_decimal_digits_is_the_code_meant(write) -> None:
    secret, now = new_secret(), datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert verify_code(secret, write(code_at(secret, now)), now=now, last_counter=None) > 0


@pytest.mark.parametrize("typed", ["12345", "1234567", "12a456", "¹²³⁴⁵⁶", "", "123456\x00"])
def test_anything_else_is_refused_not_crashed(typed: str) -> None:
    with pytest.raises(CodeRefused):
        verify_code(new_secret(), typed, now=datetime(2026, 3, 2, 9, 0, tzinfo=UTC), last_counter=None)

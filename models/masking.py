"""Masking of personal data for screens and logs (pure).

The shapes follow what Chinese insurers print on statements: keep enough to recognise, never enough to use.
"""

from __future__ import annotations

from datetime import date


def mask_name(name: str | None) -> str:
    """``张三丰`` -> ``张**``; ``Li Wei`` -> ``L* W**``."""
    if not name:
        return ""
    words = name.split()
    if len(words) > 1:
        return " ".join(w[0] + "*" * (len(w) - 1) for w in words)
    return name[0] + "*" * max(len(name) - 1, 1)


def mask_phone(phone: str | None) -> str:
    """``13812345678`` -> ``138****5678``: the first three and the last four digits stay."""
    if not phone:
        return ""
    digits = [c for c in phone if c.isdigit()]
    if len(digits) < 8:
        return "*" * len(digits)
    return "".join(digits[:3]) + "*" * (len(digits) - 7) + "".join(digits[-4:])


def mask_email(email: str | None) -> str:
    """``li.wei@example.com`` -> ``l*****@example.com``."""
    if not email:
        return ""
    local, _, domain = email.partition("@")
    if not domain:
        return "*" * len(email)
    return (local[:1] + "*" * max(len(local) - 1, 1)) + "@" + domain


def mask_id_number(id_number: str | None) -> str:
    """``110101199001011234`` -> ``1101**********1234``: region and check digits stay."""
    if not id_number:
        return ""
    if len(id_number) <= 8:
        return "*" * len(id_number)
    return id_number[:4] + "*" * (len(id_number) - 8) + id_number[-4:]


def mask_birth_date(birth_date: date | None) -> str:
    """Only the year stays: ``1950-**-**``."""
    return f"{birth_date.year:04d}-**-**" if birth_date else ""

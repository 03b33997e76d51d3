"""The outside bodies a complainant can take a complaint to, per jurisdiction and language: written once, here (the
default of ``CLAIMFLOW_OUTSIDE_BODIES``), and named by the customer messages, the referral recorded on a case and
the published service standards. No imports beyond the standard library: the settings load it."""

from __future__ import annotations

from collections.abc import Mapping

OutsideBodies = Mapping[str, "str | Mapping[str, str]"]
"""Where a complainant can take a complaint next, per jurisdiction: a name per language, or one name for all."""

OUTSIDE_BODIES: dict[str, dict[str, str]] = {
    "CN": {"zh-CN": "国家金融监督管理总局", "en": "the National Financial Regulatory Administration"},
    "GB": {"zh-CN": "英国金融申诉专员服务机构（Financial Ombudsman Service）", "en": "the Financial Ombudsman Service"},
    "AU": {"zh-CN": "澳大利亚金融投诉管理局（AFCA）", "en": "the Australian Financial Complaints Authority (AFCA)"},
    "US-CA": {
        "zh-CN": "加利福尼亚州保险局（California Department of Insurance）",
        "en": "the California Department of Insurance",
    },
}
"""The outside bodies the desk names by default (``CLAIMFLOW_OUTSIDE_BODIES``): written once, here, and quoted by
the customer messages, the referral recorded on a case and the published service standards."""
OUTSIDE_FALLBACK = {"zh-CN": "保险监管部门", "en": "the insurance regulator"}
"""What a message names for a jurisdiction without a body of its own."""


def outside_body_name(bodies: OutsideBodies, jurisdiction: str | None, language: str) -> str:
    """The outside body of ``jurisdiction`` in ``language`` (its English name when it has none in that language;
    the fallback for a jurisdiction without one)."""
    found = {code.upper(): body for code, body in bodies.items()}.get((jurisdiction or "").strip().upper())
    if isinstance(found, Mapping):
        found = found.get(language) or found.get("en") or next(iter(found.values()), None)
    return str(found) if found else OUTSIDE_FALLBACK.get(language, OUTSIDE_FALLBACK["en"])

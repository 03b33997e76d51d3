"""Honest wording: the compliance check every outbound customer message passes before it is queued (pure).

The service code forbids exaggeration: no promised or guaranteed returns, a rejection states its reasons and
the policy clause it relies on, a decision says how to complain. The rules are data (YAML, default
``policies/wording.yaml``) so that compliance staff edit them without a release; this module only reads and
applies them.

Two kinds of rule:

``forbid``
    The message must not contain any of the patterns. Patterns of *every* language are checked against
    every message (an English letter quoting 保本 is caught too). ``except`` patterns mark honest uses
    (不保证收益, "returns are not guaranteed") that are blanked out before the forbidden patterns are looked
    for.
``require``
    When the rule applies (``templates`` and ``when`` conditions on the context), every key in ``context``
    must be given and not blank, every key in ``mention`` must have its value appear in the text, and each
    pattern of the message's language must be found.

Patterns are regular expressions, matched case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.errors import InvalidInput, describe_validation_error

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "policies" / "wording.yaml"


class WordingRule(BaseModel):
    """One rule of honest wording, as written in the YAML file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)
    kind: Literal["forbid", "require"]
    explanation: dict[str, str] = Field(min_length=1)
    templates: tuple[str, ...] = ()
    when: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    patterns: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    exceptions: dict[str, tuple[str, ...]] = Field(default_factory=dict, alias="except")
    context: tuple[str, ...] = ()
    mention: tuple[str, ...] = ()

    @field_validator("patterns", "exceptions")
    @classmethod
    def _compilable(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for language, patterns in value.items():
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{language} pattern {pattern!r} is not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _has_something_to_check(self) -> WordingRule:
        if self.kind == "forbid" and not any(self.patterns.values()):
            raise ValueError(f"forbid rule {self.id!r} has no patterns")
        if self.kind == "require" and not (self.context or self.mention or any(self.patterns.values())):
            raise ValueError(f"require rule {self.id!r} requires nothing (give context, mention or patterns)")
        return self

    def applies_to(self, template: str, context: Mapping[str, Any]) -> bool:
        """Whether this rule concerns a message made from ``template`` with ``context``."""
        if self.templates and template not in self.templates:
            return False
        return all(str(context.get(key)) in allowed for key, allowed in self.when.items())

    def explain(self, language: str) -> str:
        """The explanation in ``language``, else in English, else the first one written."""
        return self.explanation.get(language) or self.explanation.get("en") or next(iter(self.explanation.values()))


class WordingRules(BaseModel):
    """The whole rule file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[WordingRule, ...]

    @model_validator(mode="after")
    def _unique_ids(self) -> WordingRules:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self


@dataclass(frozen=True)
class Violation:
    """A rule a message breaks.

    Attributes:
        rule_id: the rule's id (``no-promised-returns``).
        explanation: what the rule asks, in the message's language.
        detail: what exactly is wrong with this message (the words found, the value missing).
    """

    rule_id: str
    explanation: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.detail}"


def parse_rules(raw: Any, *, source: str = "wording rules") -> WordingRules:
    """Validate rules read from YAML.

    Raises:
        InvalidInput: the first problem, naming the rule and field.
    """
    if not isinstance(raw, dict):
        raise InvalidInput(f"{source}: expected a mapping with 'rules'")
    try:
        return WordingRules.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, source=source)) from None


def load_rules(path: Path | None = None) -> WordingRules:
    """Read and validate a rule file (default: the shipped ``policies/wording.yaml``).

    Raises:
        InvalidInput: the file is missing, not YAML, or breaks the rule schema.
    """
    path = path or DEFAULT_RULES_PATH
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such wording rule file") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from None
    return parse_rules(raw, source=str(path))


def check_wording(
    rules: WordingRules | Sequence[WordingRule],
    *,
    template: str,
    language: str,
    text: str,
    context: Mapping[str, Any],
) -> list[Violation]:
    """Every rule a message breaks, in rule order; an empty list means the message may be sent.

    Args:
        rules: the rules in force.
        template: the catalogue name of the message.
        language: the language it is written in.
        text: everything the customer reads (subject and body).
        context: the values the message was rendered from.
    """
    items = rules.rules if isinstance(rules, WordingRules) else tuple(rules)
    violations: list[Violation] = []
    for rule in items:
        if not rule.applies_to(template, context):
            continue
        detail = _forbid(rule, text) if rule.kind == "forbid" else _require(rule, language, text, context)
        if detail:
            violations.append(Violation(rule.id, rule.explain(language), detail))
    return violations


def _forbid(rule: WordingRule, text: str) -> str | None:
    cleaned = text
    for pattern in (p for patterns in rule.exceptions.values() for p in patterns):
        cleaned = re.sub(pattern, " ", cleaned, flags=re.IGNORECASE)
    patterns = tuple(p for patterns in rule.patterns.values() for p in patterns)
    joined = _any_of(patterns)
    if joined is not None and joined.search(cleaned) is None:
        return None  # the usual case, a message that may be sent: one pass over it instead of one a pattern
    found: list[str] = []
    for pattern in patterns:
        match = re.search(pattern, cleaned, flags=re.IGNORECASE)
        if match and match.group(0) not in found:
            found.append(match.group(0))
    return f"forbidden wording: {', '.join(repr(f) for f in found)}" if found else None


_BACK_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")
"""A back-reference (``\\1``, ``(?P=name)``) or a conditional group (``(?(1)...)``): each refers to a group, and
joining patterns renumbers the groups."""


@lru_cache(maxsize=256)
def _any_of(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One expression that matches wherever one of ``patterns`` matches (case ignored), or None where they cannot be
    joined: a back-reference or a conditional group would name another pattern's group once joined; a pattern with a
    global flag or a group name another one also uses does not compile joined."""
    if not patterns or any(_BACK_REFERENCE.search(p) for p in patterns):
        return None
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    except re.error:
        return None


def _require(rule: WordingRule, language: str, text: str, context: Mapping[str, Any]) -> str | None:
    problems = [f"{key} not given" for key in rule.context if _blank(context.get(key))]
    for key in rule.mention:
        value = context.get(key)
        if not _blank(value) and str(value).strip() not in text:
            problems.append(f"{key} not stated in the message")
    for pattern in rule.patterns.get(language, ()):
        if not re.search(pattern, text, flags=re.IGNORECASE):
            problems.append(f"no wording matching {pattern!r}")
    return "; ".join(problems) if problems else None


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict | set):
        return len(value) == 0
    return False

"""The honest-wording rules, one case per rule and language, on the shipped rule file."""

from __future__ import annotations

from typing import Any

import pytest

from models.errors import InvalidInput
from models.messages import CATALOGUE, LANGUAGES, SAMPLE_DESK, make_environment
from models.messages import render_message as _render_message
from models.wording import check_wording, load_rules, parse_rules


def render_message(*args: Any, **kwargs: Any) -> Any:
    """The messages as a configured desk renders them (its phone and address set)."""
    return _render_message(*args, **{"desk": SAMPLE_DESK, **kwargs})


RULES = load_rules()
DECISION = dict(CATALOGUE["decision"].sample)


def _broken(
    text: str,
    *,
    template: str = "acknowledgement_claim",
    language: str = "zh-CN",
    context: dict[str, Any] | None = None,
) -> list[str]:
    violations = check_wording(RULES, template=template, language=language, text=text, context=context or {})
    return [v.rule_id for v in violations]


@pytest.mark.parametrize(
    ("text", "language", "broken"),
    [
        pytest.param("本产品保本保息", "zh-CN", ["no-promised-returns"], id="zh-capital-guaranteed"),
        pytest.param("保证收益，年化5%", "zh-CN", ["no-promised-returns"], id="zh-guaranteed-return"),
        pytest.param("稳赚不赔", "zh-CN", ["no-promised-returns"], id="zh-sure-win"),
        pytest.param("投资零风险", "zh-CN", ["no-promised-returns"], id="zh-zero-risk"),
        pytest.param("本产品不保证收益，投资有风险", "zh-CN", [], id="zh-honest-disclaimer-passes"),
        pytest.param("We guarantee a return of 5%.", "en", ["no-promised-returns"], id="en-guarantee-a-return"),
        pytest.param("Your returns are guaranteed.", "en", ["no-promised-returns"], id="en-returns-are-guaranteed"),
        pytest.param("A RISK-FREE plan", "en", ["no-promised-returns"], id="en-risk-free-any-case"),
        pytest.param("Returns are not guaranteed.", "en", [], id="en-honest-disclaimer-passes"),
        pytest.param("We do not guarantee any return.", "en", [], id="en-do-not-guarantee-passes"),
        pytest.param("Dear customer, 保本 product", "en", ["no-promised-returns"], id="zh-words-in-en-message"),
        pytest.param("我们是最好的保险公司，一定赔", "zh-CN", ["no-exaggeration"], id="zh-exaggeration"),
        pytest.param("We are the best insurer and always pay", "en", ["no-exaggeration"], id="en-exaggeration"),
        pytest.param("您的理赔申请已受理", "zh-CN", [], id="zh-plain-message-passes"),
    ],
)
def test_forbidden_wording(text: str, language: str, broken: list[str]) -> None:
    assert _broken(text, language=language) == broken


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    ("changes", "broken"),
    [
        pytest.param({"outcome": "rejected"}, [], id="rejection-with-reasons-and-clause"),
        pytest.param(
            {"outcome": "rejected", "reasons": ""},
            ["rejection-states-reasons-and-clause"],
            id="rejection-without-reasons",
        ),
        pytest.param(
            {"outcome": "rejected", "clause": "  "},
            ["rejection-states-reasons-and-clause"],
            id="rejection-with-blank-clause",
        ),
        pytest.param(
            {"outcome": "partly_approved", "clause": ""},
            ["rejection-states-reasons-and-clause"],
            id="partial-approval-without-clause",
        ),
        pytest.param({"outcome": "approved", "reasons": "", "clause": ""}, [], id="approval-needs-no-reasons"),
    ],
)
def test_a_rejection_states_its_reasons_and_clause(language: str, changes: dict[str, str], broken: list[str]) -> None:
    context = {**DECISION, **changes}
    message = render_message(make_environment(), "decision", language=language, context=context)
    assert _broken(message.subject + message.text, template="decision", language=language, context=context) == broken


@pytest.mark.parametrize(
    ("text", "language", "broken"),
    [
        pytest.param("拒赔理由：X。依据条款：5。如有异议可申诉。", "zh-CN", [], id="zh-with-route"),
        pytest.param("拒赔理由：X。依据条款：5。", "zh-CN", ["decision-states-how-to-complain"], id="zh-no-route"),
        pytest.param("Why: X. Clause: 5. You may appeal.", "en", [], id="en-with-route"),
        pytest.param("Why: X. Clause: 5.", "en", ["decision-states-how-to-complain"], id="en-no-route"),
    ],
)
def test_a_decision_says_how_to_complain(text: str, language: str, broken: list[str]) -> None:
    context = {**DECISION, "outcome": "rejected", "reasons": "X", "clause": "5"}
    assert _broken(text, template="decision", language=language, context=context) == broken


def test_a_reason_given_but_not_printed_is_caught() -> None:
    """The rule reads the message, not only the values: a template that drops the clause fails."""
    context = {**DECISION, "outcome": "rejected"}
    text = f"拒赔理由：{context['reasons']}。如有异议可投诉。"
    violations = check_wording(RULES, template="decision", language="zh-CN", text=text, context=context)
    assert [(v.rule_id, v.detail) for v in violations] == [
        ("rejection-states-reasons-and-clause", "clause not stated in the message")
    ]
    assert violations[0].explanation.startswith("拒赔或部分赔付须写明理由")


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_complaint_outcome_names_the_outside_body(language: str) -> None:
    from models.messages import with_outside_body

    context = with_outside_body(CATALOGUE["complaint_outcome"].sample, language, None)
    message = render_message(make_environment(), "complaint_outcome", language=language, context=context)
    assert _broken(message.text, template="complaint_outcome", language=language, context=context) == []
    without = message.text.replace(context["outside_body"], "")  # a letter that does not name it is caught
    assert _broken(without, template="complaint_outcome", language=language, context=context) == [
        "complaint-names-outside-body"
    ]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", [n for n, s in CATALOGUE.items() if s.audience == "customer"])
def test_every_shipped_customer_message_passes_with_its_sample(name: str, language: str) -> None:
    from models.messages import with_outside_body

    spec = CATALOGUE[name]
    message = render_message(make_environment(), name, language=language, context=spec.sample)
    said = with_outside_body(spec.sample, language, None)  # checked with the values it was rendered from, as queued
    assert _broken(f"{message.subject}\n{message.text}", template=name, language=language, context=said) == []


def test_require_rules_with_patterns_cover_every_language() -> None:
    for rule in RULES.rules:
        if rule.kind == "require" and rule.patterns:
            assert set(rule.patterns) == set(LANGUAGES), rule.id
        assert set(rule.explanation) == set(LANGUAGES), rule.id


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param([], "expected a mapping", id="not-a-mapping"),
        pytest.param(
            {"rules": [{"id": "x", "kind": "forbid", "explanation": {"en": "e"}}]},
            "has no patterns",
            id="forbid-without-patterns",
        ),
        pytest.param(
            {"rules": [{"id": "x", "kind": "forbid", "explanation": {"en": "e"}, "patterns": {"en": ["("]}}]},
            "not a regular expression",
            id="bad-regex",
        ),
        pytest.param({"rules": [{"id": "x", "kind": "shout", "explanation": {"en": "e"}}]}, "kind", id="unknown-kind"),
        pytest.param(
            {"rules": [{"id": "x", "kind": "require", "explanation": {"en": "e"}}]},
            "requires nothing",
            id="require-nothing",
        ),
        pytest.param(
            {"rules": [{"id": "a", "kind": "forbid", "explanation": {"en": "e"}, "patterns": {"en": ["x"]}}] * 2},
            "used twice",
            id="duplicate-id",
        ),
    ],
)
def test_a_broken_rule_file_is_refused_with_the_reason(raw: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_rules(raw, source="wording.yaml")


def _forbid_rule(*patterns: str) -> Any:
    from models.wording import WordingRule

    return WordingRule(id="t", kind="forbid", explanation={"en": "x"}, patterns={"en": patterns})


@pytest.mark.parametrize(
    ("patterns", "text", "found"),
    [
        pytest.param((r"(\w+) \1",), "we pay pay twice", "'pay pay'", id="back-reference-alone"),
        pytest.param(("(n)ever", r"(\w+) \1"), "we pay pay twice", "'pay pay'", id="back-reference-second"),
        pytest.param(("never", r"(?P<w>\w+) (?P=w)"), "so so", "'so so'", id="named-back-reference"),
        pytest.param(("(n)ever", r"(a)?(?(1)b|c)x"), "zz abx", "'abx'", id="conditional-group-second"),
        pytest.param(("never", "(?s)best.insurer"), "best\ninsurer", "'best\\ninsurer'", id="global-flag-second"),
        pytest.param(("(?P<a>best)", "(?P<a>always)"), "we always pay", "'always'", id="one-group-name-twice"),
        pytest.param(("best", "always"), "the BEST, always", "'BEST', 'always'", id="each-word-found"),
    ],
)
def test_forbidden_patterns_that_cannot_be_joined_into_one_expression_are_still_each_applied(
    patterns: tuple[str, ...], text: str, found: str
) -> None:
    """The check looks for all of a rule's patterns at once first; patterns that cannot be joined (a back-reference,
    a conditional group, a global flag, a group name used twice) are looked for one by one, as before."""
    [violation] = check_wording([_forbid_rule(*patterns)], template="x", language="en", text=text, context={})
    assert violation.detail == f"forbidden wording: {found}"


def test_looking_for_all_patterns_at_once_finds_what_looking_for_each_finds() -> None:
    """On the shipped rules and texts made of their own words, exceptions and plain words: the same verdict and the
    same words found as the check that applies each pattern on its own."""
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from models.wording import _forbid

    forbid = [rule for rule in RULES.rules if rule.kind == "forbid"]
    assert forbid, "the shipped rules forbid nothing: the property would check nothing"
    words = sorted({re.sub(r"[\\()?|\[\]^$.*+{}]", "", p) for rule in forbid for ps in
                    (*rule.patterns.values(), *rule.exceptions.values()) for p in ps} - {""})  # fmt: skip
    pieces = st.sampled_from([*words, "不", "not", "do not", " ", "，", "returns", "the", "保险", "最"])

    def one_by_one(rule: Any, text: str) -> str | None:
        cleaned = text
        for pattern in (p for patterns in rule.exceptions.values() for p in patterns):
            cleaned = re.sub(pattern, " ", cleaned, flags=re.IGNORECASE)
        found: list[str] = []
        for pattern in (p for patterns in rule.patterns.values() for p in patterns):
            match = re.search(pattern, cleaned, flags=re.IGNORECASE)
            if match and match.group(0) not in found:
                found.append(match.group(0))
        return f"forbidden wording: {', '.join(repr(f) for f in found)}" if found else None

    verdicts: set[bool] = set()

    @settings(max_examples=400, deadline=None, database=None)
    @given(st.lists(pieces, max_size=12).map("".join), st.sampled_from(forbid))
    def same(text: str, rule: Any) -> None:
        expected = one_by_one(rule, text)
        verdicts.add(expected is None)
        assert _forbid(rule, text) == expected

    same()
    assert verdicts == {True, False}, "the texts made were all clean or all broken: the comparison proved little"

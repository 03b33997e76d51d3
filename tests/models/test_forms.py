"""The decision forms in the desk's language: titles, help and choices as words, read back as codes."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

from flows.inputs import FORMS, ClaimReview, ComplaintDecision, EscalationDecision, form_for
from models.forms import CHOICE_WORDS, LANGUAGES, choice_code, field_words, fit_choices

ALL_FORMS = [*FORMS.values(), EscalationDecision]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("base", ALL_FORMS, ids=lambda f: f.__name__)
def test_every_choice_and_field_of_every_form_has_its_words(base, language) -> None:
    """A code with no word would show as a code (or, worse, vanish from the select): each language names every
    choice of each form, each word once, and every field has a title of its own."""
    schema = form_for(base, language).model_json_schema()
    if "decision" in base.model_fields:
        codes = typing.get_args(base.model_fields["decision"].annotation)
        words = CHOICE_WORDS[base.form][language]
        assert set(words) == set(codes)
        assert len(set(words.values())) == len(words)
        assert schema["properties"]["decision"]["enum"] == [words[c] for c in words]
        assert not set(words.values()) & set(codes) or language == "en"  # zh-CN shows no code
    for name, prop in schema["properties"].items():
        title, help_ = field_words(base.form, name, language)
        assert prop["title"] == title and prop["description"] == help_ and help_
        assert title != name.replace("_", " ").capitalize() or language == "en"


def test_a_choice_given_as_its_word_in_any_language_or_as_its_code_is_read_as_the_code() -> None:
    shown = form_for(ClaimReview, "zh-CN")
    base = {"staff": "li.wei", "approval_code": "123456"}
    assert shown.model_validate({**base, "decision": "部分赔付"}).decision == "approve_partly"
    assert shown.model_validate({**base, "decision": "Approve in part"}).decision == "approve_partly"
    assert ClaimReview.model_validate({**base, "decision": "approve_partly"}).decision == "approve_partly"
    assert form_for(ComplaintDecision, "en").model_validate({**base, "decision": "Do not uphold"}).decision == (
        "not_uphold"
    )
    with pytest.raises(ValidationError):
        shown.model_validate({**base, "decision": "同意"})  # a word of another form is no choice here
    assert choice_code("claim_review", "  拒赔 ") == "reject"
    assert choice_code("claim_review", 7) == 7


def test_the_cli_code_is_sent_as_the_word_the_waiting_form_offers() -> None:
    schema = form_for(EscalationDecision, "zh-CN").model_json_schema()
    answer = {"staff": "zhao.min", "approval_code": "123456", "decision": "extend", "reason": "extend"}
    assert fit_choices("", answer, schema) == {**answer, "decision": "延长期限"}  # only the choice is changed
    assert fit_choices("escalation", {"decision": "延长期限"}, schema) == {"decision": "延长期限"}
    assert fit_choices("", {"decision": "nonsense"}, schema) == {"decision": "nonsense"}  # the server refuses it
    assert fit_choices("", answer, {"properties": {}}) == answer  # a form without choices


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_parameter_of_the_uis_desk_actions_is_titled_and_explained(language) -> None:
    """Prefect titles a Custom-run form's fields by their Python names (``from_staff``, ``outbox_id``): each desk
    action's form gets words in the desk's language instead."""
    from flows.deployments import ACTIONS, desk_deployments
    from models.forms import parameter_words

    pairs = {flow.name: deployment for flow, deployment in desk_deployments() if flow.name in ACTIONS}
    assert set(pairs) == ACTIONS
    for action, deployment in pairs.items():
        properties = deployment._parameter_openapi_schema.properties
        for name, shown in parameter_words(properties, language, action).items():
            assert shown["title"] != name and shown["description"], (action, name)

"""The customer's survey page and the feedback webhook over HTTP, on SQLite and PostgreSQL.

The page: a settled claim's link shows the form in the customer's language (or the one asked for, in large
text if asked), takes one answer, and refuses a forged (403), unknown (404), used or expired (410) link with a
page that says so; a form with a missing field comes back (422) with what was wrong and nothing stored. The
webhook: signed posts of feedback from other channels are recorded once per Idempotency-Key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func
from sqlmodel import Session, select

from claimflow.secrets import survey_key
from claimflow.settings import Settings
from claimflow.web.app import create_app
from claimflow.web.intake import sign_headers
from models.survey import PAGE_TEXT, make_token
from models.tables import Case, CustomerCreate, Feedback, Step, SurveyInvitation
from tasks.feedback import follow_up_step_name
from tests.tasks.test_feedback import settled_claim, token_of

SOURCE, SECRET = "crm", "crm-feedback-secret"
CUSTOMERS = {
    "zh-CN": CustomerCreate(name="张三", email="zhang.san@example.com", language="zh-CN"),
    "en": CustomerCreate(name="Jane Doe", email="jane.doe@example.com", language="en"),
}


def survey_settings(world: Any, **changes: Any) -> Settings:
    """The desk's settings with a webhook source for feedback (and ``changes``)."""
    secrets = {SOURCE: [SecretStr(SECRET)]}
    return world.desk.settings.model_copy(update={"webhook_secrets": secrets, **changes})


def settled(world: Any, language: str, *, by: str | None = None) -> tuple[Case, str]:
    """A settled claim of a customer who speaks ``language`` (filed by the webhook source ``by``, if given), and
    the token of its survey link."""
    from tasks.intake import intake_actor

    case = settled_claim(world, customer=CUSTOMERS[language], **({"actor": intake_actor(by)} if by else {}))
    return case, token_of(world, case)


def stored(world: Any) -> list[Feedback]:
    with Session(world.engine) as session:
        return list(session.exec(select(Feedback)).all())


def title_of(html: str) -> str:
    found = re.search(r"<h1>(.*?)</h1>", html)
    assert found is not None, html
    return found.group(1)


def refused_as(response: httpx.Response, status: int, reason: str, lang: str) -> None:
    """The refusal page: its status, its reason, in ``lang``, naming the desk's phone, no form."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert f'<html lang="{lang}">' in html
    assert f'data-reason="{reason}"' in html
    assert title_of(html) == PAGE_TEXT[lang]["error_title"]
    assert PAGE_TEXT[lang][reason].format(phone="010-0000-0000") in html
    assert 'id="survey"' not in html


@pytest.fixture
def client(world: Any) -> Iterator[TestClient]:
    """The web app on the test's database, its clock the world's (move ``world.now`` to move it)."""
    app = create_app(survey_settings(world), world.engine, clock=lambda: world.now, launch=False)
    with TestClient(app) as client:
        yield client


# --- the page ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_form_shows_the_case_in_the_customers_language(world: Any, client: TestClient, language: str) -> None:
    case, token = settled(world, language)
    response = client.get(f"/survey/{token}")
    assert response.status_code == 200, response.text
    html = response.text
    words = PAGE_TEXT[language]
    assert f'<html lang="{language}">' in html
    assert f"<title>{words['title']}</title>" in html and title_of(html) == words["title"]
    assert words["intro"].format(case=case.number) in html
    assert html.count('type="radio" name="score"') == 5 and html.count('type="radio" name="solved"') == 2
    assert 'class="normal"' in html and '<link rel="stylesheet" href="/static/site.css">' in html
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    # no inline style or script: the page's policy allows its own stylesheet only
    assert (
        "<style" not in html
        and "<script" not in html
        and "style-src 'self'" in response.headers["content-security-policy"]
    )
    css = client.get("/static/site.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":root { --base: 17px; }" in css.text and "body.large { --base: 24px; }" in css.text


def test_the_language_asked_for_in_the_link_wins_over_the_customers(world: Any, client: TestClient) -> None:
    case, token = settled(world, "zh-CN")
    english = client.get(f"/survey/{token}", params={"lang": "en"})
    assert english.status_code == 200
    assert '<html lang="en">' in english.text and title_of(english.text) == PAGE_TEXT["en"]["title"]
    assert case.number in english.text
    assert 'href="?lang=zh-CN&amp;large=0" id="toggle-language"' in english.text  # and back again
    # a language the desk does not have: the customer's own
    other = client.get(f"/survey/{token}", params={"lang": "fr"})
    assert other.status_code == 200 and '<html lang="zh-CN">' in other.text


def test_large_text_is_kept_through_the_links_and_the_form(world: Any, client: TestClient) -> None:
    _, token = settled(world, "en")
    response = client.get(f"/survey/{token}", params={"large": "1"})
    assert response.status_code == 200
    html = response.text
    assert '<body class="large">' in html
    assert f'id="toggle-size">{PAGE_TEXT["en"]["large_off"]}</a>' in html
    assert 'href="?lang=zh-CN&amp;large=1" id="toggle-language"' in html  # the other language, still large
    assert '<input type="hidden" name="large" value="1">' in html


def test_a_good_answer_is_stored_and_thanked(world: Any, client: TestClient) -> None:
    case, token = settled(world, "en")
    response = client.post(f"/survey/{token}", data={"score": "5", "solved": "yes", "comment": "Quick, thanks!",
                                                     "lang": "en", "large": "0"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert title_of(response.text) == PAGE_TEXT["en"]["thanks_title"]
    assert PAGE_TEXT["en"]["thanks"] in response.text
    assert 'id="call-back"' not in response.text
    assert "toggle-size" not in response.text and "toggle-language" not in response.text  # they would say "used"
    [feedback] = stored(world)
    assert (feedback.case_id, feedback.score, feedback.solved, feedback.comment) == (case.id, 5, True, "Quick, thanks!")
    assert (feedback.channel, feedback.classification) == ("survey", "praise")
    assert world.step(case, "follow_up") is None
    with Session(world.engine) as session:
        assert session.exec(select(SurveyInvitation)).one().answered_at == world.now


def test_a_low_score_is_told_a_supervisor_will_call_back(world: Any, client: TestClient) -> None:
    case, token = settled(world, "zh-CN")
    response = client.post(f"/survey/{token}", data={"score": "2", "solved": "no", "lang": "zh-CN"})
    assert response.status_code == 200, response.text
    assert '<html lang="zh-CN">' in response.text
    assert PAGE_TEXT["zh-CN"]["call_back"] in response.text
    [feedback] = stored(world)
    assert (feedback.score, feedback.solved, feedback.comment) == (2, False, None)
    step = world.step(case, follow_up_step_name(case))
    assert step is not None and step.status == "open"


def test_a_form_without_a_score_comes_back_with_the_problem_and_nothing_is_stored(
    world: Any, client: TestClient
) -> None:
    case, token = settled(world, "en")
    comment = "</textarea><script>alert(1)</script> too slow"
    response = client.post(f"/survey/{token}", data={"solved": "no", "comment": comment, "lang": "en", "large": "1"})
    assert response.status_code == 422, response.text
    html = response.text
    assert title_of(html) == PAGE_TEXT["en"]["title"] and case.number in html  # the form again
    assert 'id="problem"' in html and "score: choose 1 to 5" in html
    assert "solved:" not in html  # only what was wrong is named
    assert 'value="no" checked' in html  # what was given is kept
    assert "&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt; too slow</textarea>" in html  # escaped
    assert "<script>" not in html
    assert 'class="large"' in html  # still large
    assert stored(world) == []
    with Session(world.engine) as session:
        assert session.exec(select(SurveyInvitation)).one().answered_at is None
    # the customer corrects it and sends again
    again = client.post(f"/survey/{token}", data={"score": "3", "solved": "no", "comment": "too slow", "lang": "en"})
    assert again.status_code == 200 and len(stored(world)) == 1


def test_a_used_link_is_refused_in_the_customers_language(world: Any, client: TestClient) -> None:
    _, token = settled(world, "en")
    answered = client.post(f"/survey/{token}", data={"score": "4", "solved": "yes"})  # no lang: the customer's
    assert answered.status_code == 200 and '<html lang="en">' in answered.text
    refused_as(client.get(f"/survey/{token}"), 410, "used", "en")
    refused_as(client.post(f"/survey/{token}", data={"score": "1", "solved": "no"}), 410, "used", "en")
    refused_as(client.get(f"/survey/{token}", params={"lang": "zh-CN"}), 410, "used", "zh-CN")
    assert len(stored(world)) == 1


def test_an_expired_link_is_refused_and_nothing_is_stored(world: Any, client: TestClient) -> None:
    _, token = settled(world, "zh-CN")
    assert client.get(f"/survey/{token}").status_code == 200
    world.now += timedelta(days=world.desk.settings.survey_valid_days)
    refused_as(client.get(f"/survey/{token}"), 410, "expired", "zh-CN")
    refused_as(client.post(f"/survey/{token}", data={"score": "5", "solved": "yes"}), 410, "expired", "zh-CN")
    refused_as(client.get(f"/survey/{token}", params={"lang": "en"}), 410, "expired", "en")
    assert stored(world) == []


def test_a_forged_link_is_refused_403(world: Any, client: TestClient) -> None:
    _, token = settled(world, "zh-CN")
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    other_key = make_token("another-desks-survey-key", invitation_id=1, expires_at=world.now + timedelta(days=1))
    for bad in (tampered, other_key, "not-a-token", "x" * 600):
        refused_as(client.get(f"/survey/{bad}"), 403, "forged", "zh-CN")
    refused_as(client.get(f"/survey/{tampered}", params={"lang": "en", "large": "1"}), 403, "forged", "en")
    refused_as(client.post(f"/survey/{tampered}", data={"score": "5", "solved": "yes"}), 403, "forged", "zh-CN")
    refused_as(client.post(f"/survey/{tampered}", data={"solved": "yes"}), 403, "forged", "zh-CN")
    assert stored(world) == []


def test_a_well_signed_link_to_no_invitation_is_refused_404(world: Any, client: TestClient) -> None:
    settled(world, "en")
    expires = world.now + timedelta(days=3)
    token = make_token(survey_key(world.desk.settings), invitation_id=999_999, expires_at=expires)
    refused_as(client.get(f"/survey/{token}"), 404, "unknown", "zh-CN")
    refused_as(client.post(f"/survey/{token}", data={"score": "5", "solved": "yes", "lang": "en"}), 404, "unknown",
               "en")  # fmt: skip
    assert stored(world) == []


# --- the feedback webhook ----------------------------------------------------------------------------------


def post_feedback(
    client: TestClient, world: Any, payload: Any, *, key: str | None = None, secret: str | None = SECRET
) -> httpx.Response:
    """POST ``payload`` to the webhook, signed with ``secret`` (None: unsigned)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers.update(sign_headers(SOURCE, secret, body, now=world.now, path="/v1/feedback", key=key))
    elif key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/v1/feedback", content=body, headers=headers)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def count_feedback(world: Any) -> int:
    with Session(world.engine) as session:
        return session.exec(select(func.count()).select_from(Feedback)).one()


def test_feedback_from_another_channel_is_recorded_and_classified(world: Any, client: TestClient) -> None:
    case, _ = settled(world, "zh-CN", by=SOURCE)
    response = post_feedback(client, world, {"case_number": case.number.lower(), "text": "建议增加微信进度查询",
                                             "channel": "app"})  # fmt: skip
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["case_number"] == case.number
    assert answer["classification"] == "suggestion"
    assert answer["follow_up"] is None and answer["complaint_case_number"] is None
    [feedback] = stored(world)
    assert (feedback.id, feedback.channel, feedback.source) == (answer["feedback_id"], "app", f"webhook {SOURCE}")


def test_a_complaint_posted_about_a_claim_files_a_complaint_once_per_idempotency_key(
    world: Any, client: TestClient
) -> None:
    case, _ = settled(world, "zh-CN", by=SOURCE)
    payload = {"case_number": case.number, "text": "我要投诉，赔款算错了", "score": 1, "solved": False}
    first = post_feedback(client, world, payload, key="crm-ticket-77")
    assert first.status_code == 202, first.text
    answer = first.json()
    assert answer["classification"] == "complaint"
    assert answer["follow_up"] == "follow_up"
    number = answer["complaint_case_number"]
    assert number is not None and number.startswith("CMP-")
    with Session(world.engine) as session:
        complaint = session.exec(select(Case).where(Case.number == number)).one()
    assert complaint.kind == "complaint" and complaint.related_case_id == case.id
    assert complaint.customer_id == case.customer_id

    again = post_feedback(client, world, payload, key="crm-ticket-77")
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == answer  # the first answer again
    assert count_feedback(world) == 1
    with Session(world.engine) as session:
        assert len(session.exec(select(Case).where(Case.kind == "complaint")).all()) == 1
        assert len(session.exec(select(Step).where(Step.name == "follow_up")).all()) == 1

    # without a key every post is a new piece of feedback
    assert post_feedback(client, world, {"case_number": case.number, "text": "谢谢"}).status_code == 202
    assert count_feedback(world) == 2


def test_racing_posts_of_feedback_about_one_case_record_each_once(world: Any, client: TestClient) -> None:
    """Eight posts at once: four retries under one key and four without; the case's row is held while each is
    recorded, so the key answers once and the chain of events stays whole."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tasks.audit import verify_cases

    case, _ = settled(world, "zh-CN", by=SOURCE)
    before = count_feedback(world)
    barrier = threading.Barrier(8)

    def post(index: int) -> tuple[int, Any]:
        payload = {"case_number": case.number, "text": f"谢谢 {index}", "score": 4}
        barrier.wait()
        response = post_feedback(client, world, payload if index % 2 else {**payload, "text": "谢谢"},
                                 key=None if index % 2 else "crm-ticket-9")  # fmt: skip
        return response.status_code, response.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    keyed = [answer for index, answer in enumerate(answers) if index % 2 == 0]
    assert sorted(status for status, _ in keyed) == [200, 200, 200, 202], answers
    assert all(body == keyed[0][1] for _, body in keyed)
    assert all(status == 202 for index, (status, _) in enumerate(answers) if index % 2), answers
    assert count_feedback(world) == before + 5
    with Session(world.engine) as session:
        assert not verify_cases(session).breaks


def test_feedback_posts_that_cannot_be_recorded_are_refused_and_store_nothing(world: Any, client: TestClient) -> None:
    case, _ = settled(world, "en", by=SOURCE)
    unknown = problem(post_feedback(client, world, {"case_number": "CLM-2026-999999", "score": 3}), 422)
    assert unknown["errors"][0]["field"] == "case_number"
    empty = problem(post_feedback(client, world, {"case_number": case.number}), 422)
    assert "needs a score" in empty["errors"][0]["message"]
    wrong = problem(post_feedback(client, world, {"case_number": case.number, "score": 9}), 422)
    assert wrong["errors"][0]["field"] == "score"
    assert "not valid JSON" in problem(post_feedback(client, world, b'{"case_number": '), 400)["detail"]
    unsigned = post_feedback(client, world, {"case_number": case.number, "score": 5}, secret=None)
    assert problem(unsigned, 401)["title"] == "Signature refused"
    assert "www-authenticate" in unsigned.headers
    problem(post_feedback(client, world, {"case_number": case.number, "score": 5}, secret="not-the-secret"), 401)
    assert count_feedback(world) == 0


def test_a_source_cannot_probe_or_post_about_cases_it_did_not_file(world: Any, client: TestClient) -> None:
    """Another channel's case answers exactly as a case that does not exist: no enumeration, and no complaint
    filed against another source's customer."""
    others, _ = settled(world, "zh-CN")  # filed by another channel
    mine, _ = settled(world, "zh-CN", by=SOURCE)
    foreign = problem(post_feedback(client, world, {"case_number": others.number, "text": "我要投诉"}), 422)
    missing = problem(post_feedback(client, world, {"case_number": "CLM-2026-999999", "text": "我要投诉"}), 422)
    assert foreign["errors"] == [{"field": "case_number",
                                  "message": f"no case numbered {others.number!r} filed by this source"}]  # fmt: skip
    assert missing["errors"][0]["message"] == "no case numbered 'CLM-2026-999999' filed by this source"
    assert post_feedback(client, world, {"case_number": mine.number, "text": "谢谢"}).status_code == 202
    assert count_feedback(world) == 1


def test_hostile_feedback_bodies_get_clear_answers_and_store_nothing(world: Any, client: TestClient) -> None:
    case, _ = settled(world, "en", by=SOURCE)
    huge = b'{"case_number": "' + case.number.encode() + b'", "score": ' + b"9" * 5000 + b"}"
    assert "number that cannot be read" in problem(post_feedback(client, world, huge), 400)["detail"]
    deep = b'{"case_number": "x", "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert problem(post_feedback(client, world, deep), 400)["title"] == "Malformed request"
    nul = problem(post_feedback(client, world, {"case_number": case.number, "text": "a\x00b"}), 422)
    assert nul["errors"] == [{"field": "text", "message": "must not contain NUL characters"}]
    extra = problem(post_feedback(client, world, {"case_number": case.number, "score": 3, "customer_id": 7}), 422)
    assert extra["errors"][0]["field"] == "customer_id"  # an unknown key is refused, not dropped
    long_key = problem(post_feedback(client, world, {"case_number": case.number, "score": 3}, key="k" * 201), 400)
    assert "Idempotency-Key must be 1 to 200" in long_key["detail"]
    assert count_feedback(world) == 0
    # the same key again with another body is a conflict, not the first answer again
    assert post_feedback(client, world, {"case_number": case.number, "score": 3}, key="t-1").status_code == 202
    conflict = problem(post_feedback(client, world, {"case_number": case.number, "score": 1}, key="t-1"), 409)
    assert conflict["title"] == "Idempotency conflict"
    assert post_feedback(client, world, {"case_number": case.number, "score": 3}, key="t-1").status_code == 200
    assert count_feedback(world) == 1


def test_an_integer_of_thousands_of_digits_is_a_400_on_the_case_endpoints_too(world: Any, client: TestClient) -> None:
    from claimflow.web.intake import sign_headers

    body = b'{"customer": {"name": "x"}, "amount_claimed": ' + b"1" * 5000 + b"}"
    headers = {
        "Content-Type": "application/json",
        **sign_headers(SOURCE, SECRET, body, now=world.now, path="/v1/claims"),
    }
    answer = client.post("/v1/claims", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert "number that cannot be read" in answer.json()["detail"]


def test_a_survey_answer_posted_from_another_site_is_refused_and_not_recorded(world: Any, client: TestClient) -> None:
    _, token = settled(world, "en")
    answer = {"score": "1", "solved": "no", "comment": "forged", "lang": "en"}
    refused_as(client.post(f"/survey/{token}", data=answer, headers={"Origin": "https://evil.example"}), 403,
               "forged", "en")  # fmt: skip
    refused_as(client.post(f"/survey/{token}", data=answer, headers={"Sec-Fetch-Site": "cross-site", "Origin": "null"}),
               403, "forged", "en")  # fmt: skip
    refused_as(client.post(f"/survey/{token}", data=answer, headers={"Referer": "https://evil.example/x"}), 403,
               "forged", "en")  # fmt: skip
    assert stored(world) == []
    own = client.post(f"/survey/{token}", data={"score": "5", "solved": "yes"}, headers={"Origin": "http://testserver"})
    assert own.status_code == 200 and len(stored(world)) == 1


def test_a_too_long_comment_or_language_gets_the_page_not_a_json_problem(world: Any, client: TestClient) -> None:
    _, token = settled(world, "en")
    long = client.post(f"/survey/{token}", data={"score": "4", "solved": "yes", "comment": "x" * 10_000,
                                                 "lang": "x" * 100})  # fmt: skip
    assert long.status_code == 422 and long.headers["content-type"].startswith("text/html")  # the form again
    assert "comment: at most 2000 characters (10000 given)" in long.text
    assert stored(world) == []


def test_feedback_with_no_case_is_recorded_a_complaint_files_a_case_and_retries_answer_once(
    world: Any, client: TestClient
) -> None:
    """A hotline or social-media channel posts what a customer said about the desk, naming no case."""
    praise = post_feedback(client, world, {"text": "服务很好，谢谢", "score": 5, "channel": "phone"})
    assert praise.status_code == 202, praise.text
    assert praise.json()["case_number"] is None and praise.json()["classification"] == "praise"

    payload = {"text": "我要投诉：电话一直打不通", "channel": "app",
               "customer": {"name": "李四", "phone": "13900001111", "language": "zh-CN"}}  # fmt: skip
    first = post_feedback(client, world, payload, key="weibo-post-881")
    assert first.status_code == 202, first.text
    number = first.json()["complaint_case_number"]
    assert first.json()["classification"] == "complaint" and number.startswith("CMP-")
    again = post_feedback(client, world, payload, key="weibo-post-881")
    assert (again.status_code, again.json()) == (200, first.json())  # the first answer, nothing filed twice
    other = post_feedback(client, world, {**payload, "text": "另一条"}, key="weibo-post-881")
    assert problem(other, 409)["title"] == "Idempotency conflict"
    with Session(world.engine) as session:
        complaints = session.exec(select(Case).where(Case.kind == "complaint")).all()
        assert [c.number for c in complaints] == [number]
        general = session.exec(select(Feedback).where(Feedback.case_id == None)).all()  # noqa: E711
        assert len(general) == 2 and all(f.handled_at is None for f in general)


def test_feedback_with_no_case_and_a_bad_customer_is_refused_and_stores_nothing(world: Any, client: TestClient) -> None:
    case, _ = settled(world, "zh-CN", by=SOURCE)
    who = {"name": "李四", "phone": "13900001111"}
    mixed = problem(post_feedback(client, world, {"case_number": case.number, "text": "x", "customer": who}), 422)
    assert "only for feedback with no case_number" in mixed["errors"][0]["message"]
    unreachable = problem(post_feedback(client, world, {"text": "投诉", "customer": {"name": "李四"}}), 422)
    assert "phone number or an e-mail" in unreachable["errors"][0]["message"]
    unknown = problem(post_feedback(client, world, {"text": "x", "customer": {**who, "id_number": "1234"}}), 422)
    assert unknown["errors"][0]["field"].startswith("customer")
    bad_phone = problem(post_feedback(client, world, {"text": "x", "customer": {**who, "phone": "call me"}}), 422)
    assert bad_phone["errors"][0]["field"].startswith("customer")
    assert count_feedback(world) == 0

"""The intake webhook API, on SQLite and PostgreSQL: signed posts file cases once, errors are problem+json.

Prefect is never reachable here (``PREFECT_API_URL`` points at a closed port): the 202 still comes and the
case waits for the reconciler without a flow run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from claimflow.settings import Settings, get_settings
from claimflow.web.app import create_app
from claimflow.web.intake import sign_headers
from models.tables import Attachment, Case, Event, IntakeRequest, Outbox
from tasks.intake import body_digest
from tests.conftest import NOW
from tests.ports import free_port

SECRETS = {"webform": ["new-secret", "old-secret"], "partner": ["partner-secret"]}


pytestmark = pytest.mark.usefixtures("no_prefect")


def make_settings(**changes: Any) -> Settings:
    secrets = {source: [SecretStr(s) for s in values] for source, values in SECRETS.items()}
    return get_settings().model_copy(update={"webhook_secrets": secrets, **changes})


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def app(world: Any, engine: Engine, settings: Settings) -> FastAPI:
    return create_app(settings, engine, clock=lambda: NOW)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def claim(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer": {"name": "王小明", "phone": "13812345678", "email": "wang@example.com", "language": "zh-CN"},
        "policy_number": "P-778899",
        "product_line": "motor",
        "description": "Rear-ended at a traffic light",
        "incident_date": "2026-03-01",
        "amount": "12800.50",
    }
    body.update(changes)
    return body


def post(
    client: TestClient,
    path: str,
    payload: Any,
    *,
    source: str = "webform",
    secret: str = "new-secret",
    key: str | None = None,
    headers: dict[str, str] | None = None,
    now: datetime = NOW,
) -> httpx.Response:
    """A signed POST, signed at ``now`` (the app's clock in these tests)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {**sign_headers(source, secret, body, now=now, path=path, key=key), "Content-Type": "application/json"}
    sent.update(headers or {})
    return client.post(path, content=body, headers=sent)


def get(client: TestClient, path: str, *, source: str = "webform", secret: str = "new-secret") -> httpx.Response:
    return client.get(path, headers=sign_headers(source, secret, b"", now=NOW, method="GET", path=path))


def count(engine: Engine, model: Any) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def wait_idle(app: FastAPI) -> None:
    launcher = app.state.intake.launcher
    deadline = time.monotonic() + 15
    while not launcher.idle and time.monotonic() < deadline:
        time.sleep(0.05)
    assert launcher.idle


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("urn:claimflow:problem:")
    assert body["title"] and body["detail"]
    return body


# --- filing ------------------------------------------------------------------------------------------------


def test_a_signed_claim_is_filed_committed_and_answered_202(client: TestClient, app: FastAPI, engine: Engine) -> None:
    document = b"%PDF-1.4 police report"
    payload = claim(attachments=[{"filename": "report.pdf", "content_type": "application/pdf",
                                  "content_base64": base64.b64encode(document).decode(),
                                  "document_type": "police_report"}])  # fmt: skip
    response = post(client, "/v1/claims", payload, key="order-1")

    assert response.status_code == 202, response.text
    answer = response.json()
    number = answer["case_number"]
    assert number.startswith("CLM-2026-")
    assert answer["status_url"] == f"/v1/cases/{number}" == response.headers["location"]
    assert answer["attachments"] == 1
    with Session(engine) as session:
        case = session.exec(select(Case).where(Case.number == number)).one()
        assert (case.kind, case.channel, case.product_line, str(case.amount_claimed)) == (
            "claim", "webhook", "motor", "12800.50")  # fmt: skip
        first = session.exec(select(Event).where(Event.case_id == case.id).order_by(col(Event.sequence))).first()
        assert first is not None and (first.type, first.actor) == ("filed", "webhook:webform")
        assert session.exec(select(Outbox.template).where(Outbox.case_id == case.id)).all().count(
            "acknowledgement_claim") == 1  # fmt: skip
        stored = session.exec(select(Attachment).where(Attachment.case_id == case.id)).one()
        record = session.exec(select(IntakeRequest)).one()
    assert (stored.filename, stored.size, stored.document_type, stored.source) == (
        "report.pdf", len(document), "police_report", "webhook")  # fmt: skip
    assert stored.sha256 == hashlib.sha256(document).hexdigest()
    path = app.state.intake.settings.data_dir / stored.storage_path
    assert path.parent.name == number and path.read_bytes() == document
    assert (record.source, record.idempotency_key, record.case_id, record.status_code) == ("webform", "order-1",
                                                                                          case.id, 202)  # fmt: skip
    assert record.response == answer


def test_prefect_unreachable_still_answers_202_and_leaves_the_run_to_the_reconciler(
    client: TestClient, app: FastAPI, engine: Engine
) -> None:
    started = time.monotonic()
    response = post(client, "/v1/complaints", claim(amount=None))
    assert response.status_code == 202
    assert time.monotonic() - started < 5  # the answer does not wait for Prefect
    wait_idle(app)
    assert app.state.intake.launcher.failed == 1
    with Session(engine) as session:
        case = session.exec(select(Case).where(Case.number == response.json()["case_number"])).one()
    assert case.kind == "complaint" and case.flow_run_id is None


@pytest.mark.parametrize(("path", "prefix"), [("/v1/claims", "CLM"), ("/v1/complaints", "CMP"),
                                              ("/v1/inquiries", "INQ")])  # fmt: skip
def test_each_kind_has_its_path(client: TestClient, path: str, prefix: str) -> None:
    response = post(client, path, claim())
    assert response.status_code == 202 and response.json()["case_number"].startswith(prefix)


def test_the_previous_secret_still_signs_during_rotation(client: TestClient) -> None:
    assert post(client, "/v1/claims", claim(), secret="old-secret").status_code == 202


def test_a_related_case_is_linked(client: TestClient, engine: Engine) -> None:
    first = post(client, "/v1/claims", claim()).json()["case_number"]
    complaint = post(client, "/v1/complaints", claim(related_case_number=first)).json()["case_number"]
    with Session(engine) as session:
        cases = {c.number: c for c in session.exec(select(Case))}
    assert cases[complaint].related_case_id == cases[first].id


# --- idempotency -------------------------------------------------------------------------------------------


def test_same_key_same_body_replays_the_answer_and_files_once(client: TestClient, engine: Engine) -> None:
    first = post(client, "/v1/claims", claim(), key="k-1")
    again = post(client, "/v1/claims", claim(), key="k-1")
    assert again.status_code == 202 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count(engine, Case) == 1


def test_same_key_different_body_is_409(client: TestClient, engine: Engine) -> None:
    post(client, "/v1/claims", claim(), key="k-1")
    body = problem(post(client, "/v1/claims", claim(amount="1.00"), key="k-1"), 409)
    assert "different body" in body["detail"]
    assert count(engine, Case) == 1


def test_keys_belong_to_their_source(client: TestClient, engine: Engine) -> None:
    post(client, "/v1/claims", claim(), key="k-1")
    other = post(client, "/v1/claims", claim(), key="k-1", source="partner", secret="partner-secret")
    assert other.status_code == 202
    assert count(engine, Case) == 2


def test_racing_twins_with_one_key_file_one_case(app: FastAPI, engine: Engine, settings: Settings) -> None:
    from claimflow.web.intake import CaseSubmission, to_case
    from models.enums import CaseKind

    intake = app.state.intake
    body = json.dumps(claim()).encode()
    data = to_case(CaseKind.claim, CaseSubmission.model_validate(claim()))
    barrier = threading.Barrier(8)

    def file(_: int) -> dict[str, Any]:
        barrier.wait()
        answer = intake.file(source="webform", data=data, attachments=[], key="race", digest=body_digest(body))
        return dict(answer.body)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(file, range(8)))
    assert all(a == answers[0] for a in answers)
    assert count(engine, Case) == 1 and count(engine, IntakeRequest) == 1


# --- authentication ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"X-Claimflow-Source": "nobody"}, "does not match the request", id="unknown-source-as-wrong"),
        pytest.param({"X-Claimflow-Source": ""}, "Source is missing", id="no-source"),
        pytest.param({"X-Claimflow-Signature": "0" * 64}, "does not match", id="wrong-signature"),
        pytest.param({"X-Claimflow-Timestamp": str(int(NOW.timestamp()) - 301)}, "away from", id="replayed-late"),
        pytest.param({"X-Claimflow-Timestamp": "yesterday"}, "Unix seconds", id="timestamp-not-a-number"),
    ],
)
def test_unauthenticated_posts_are_401(client: TestClient, engine: Engine, change: dict[str, str], reason: str) -> None:
    body = problem(post(client, "/v1/claims", claim(), headers=change), 401)
    assert reason in body["detail"]
    assert count(engine, Case) == 0


def test_a_stale_timestamp_is_refused_even_when_signed(client: TestClient) -> None:
    body = json.dumps(claim()).encode()
    headers = {**sign_headers("webform", "new-secret", body, now=NOW - timedelta(minutes=6)),
               "Content-Type": "application/json"}  # fmt: skip
    assert "360 s away" in problem(client.post("/v1/claims", content=body, headers=headers), 401)["detail"]


def test_a_signature_of_another_source_is_refused(client: TestClient) -> None:
    problem(post(client, "/v1/claims", claim(), source="partner", secret="new-secret"), 401)


# --- errors ------------------------------------------------------------------------------------------------


def test_not_json_is_415(client: TestClient) -> None:
    problem(post(client, "/v1/claims", claim(), headers={"Content-Type": "text/plain"}), 415)


def test_malformed_json_is_400(client: TestClient) -> None:
    assert "not valid JSON" in problem(post(client, "/v1/claims", b'{"customer": '), 400)["detail"]


def test_a_malformed_idempotency_key_is_400(client: TestClient) -> None:
    problem(post(client, "/v1/claims", claim(), key="x" * 201), 400)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param(claim(customer={"name": "x", "phone": "call me"}), "customer.phone", id="bad-phone"),
        pytest.param({k: v for k, v in claim().items() if k != "customer"}, "customer", id="no-customer"),
        pytest.param(claim(amount="-1"), "amount", id="negative-amount"),
        pytest.param(claim(amount="1.234"), "amount", id="three-decimals"),
        pytest.param(claim(incident_date="yesterday"), "incident_date", id="bad-date"),
        pytest.param(claim(colour="red"), "colour", id="unknown-field"),
        pytest.param(claim(customer={"name": "a\x00b"}), "customer.name", id="nul-character"),
        pytest.param(claim(attachments=[{"filename": "a.pdf", "content_base64": "not base64!"}]),
                     "attachments[0].content_base64", id="bad-base64"),
        pytest.param(claim(related_case_number="CLM-2026-999999"), "related_case_number", id="unknown-related"),
        pytest.param([1, 2], "body", id="not-an-object"),
    ],
)  # fmt: skip
def test_invalid_fields_are_422_naming_the_field(client: TestClient, engine: Engine, payload: Any, field: str) -> None:
    body = problem(post(client, "/v1/claims", payload), 422)
    assert field in [e["field"] for e in body["errors"]], body
    assert count(engine, Case) == 0


def test_a_body_over_the_limit_is_413(world: Any, engine: Engine) -> None:
    app = create_app(make_settings(api_max_body_bytes=2048), engine, clock=lambda: NOW)
    with TestClient(app) as client:
        problem(post(client, "/v1/claims", claim(description="x" * 3000)), 413)


def test_an_attachment_over_the_limit_is_413_and_nothing_is_stored(world: Any, engine: Engine) -> None:
    settings = make_settings(api_attachment_max_bytes=100, api_attachments_max_total_bytes=150)
    app = create_app(settings, engine, clock=lambda: NOW)

    def attachment(size: int) -> dict[str, str]:
        return {"filename": "a.bin", "content_base64": base64.b64encode(b"x" * size).decode()}

    with TestClient(app) as client:
        assert "per file" in problem(post(client, "/v1/claims", claim(attachments=[attachment(101)])), 413)["detail"]
        assert "in all" in problem(post(client, "/v1/claims", claim(attachments=[attachment(80)] * 2)), 413)["detail"]
        assert post(client, "/v1/claims", claim(attachments=[attachment(100)])).status_code == 202
    assert count(engine, Case) == 1 and count(engine, Attachment) == 1


def test_a_failed_transaction_leaves_no_attachment_file(
    app: FastAPI, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claimflow.web.intake import CaseSubmission, to_case
    from models.enums import CaseKind
    from tasks.intake import IncomingAttachment

    class Broken(Exception):
        pass

    def broken(number: str) -> str:
        raise Broken(number)

    # a fault after the file was written, before the commit: the whole filing rolls back, its file too
    monkeypatch.setattr("tasks.intake.status_path", broken)
    intake = app.state.intake
    data = to_case(CaseKind.claim, CaseSubmission.model_validate(claim()))
    with pytest.raises(Broken):
        intake.file(source="webform", data=data, attachments=[IncomingAttachment("a.txt", "text/plain", b"hi")],
                    key="k", digest="d")  # fmt: skip
    assert count(engine, Case) == 0 and count(engine, IntakeRequest) == 0
    assert not [p for p in (intake.settings.data_dir / "attachments").rglob("*") if p.is_file()]


def test_unknown_path_is_a_problem_not_html(client: TestClient) -> None:
    problem(client.get("/v1/nothing"), 404)


# --- status ------------------------------------------------------------------------------------------------


def test_the_filing_source_sees_the_status_without_personal_data(client: TestClient) -> None:
    number = post(client, "/v1/claims", claim()).json()["case_number"]
    response = get(client, f"/v1/cases/{number}")
    assert response.status_code == 200
    status = response.json()
    assert status["case_number"] == number and status["status"] == "under_review"
    assert status["open_steps"][0]["name"] == "review" and status["open_steps"][0]["due_at"]
    for personal in ("王小明", "13812345678", "wang@example.com", "P-778899", "Rear-ended"):
        assert personal not in response.text


def test_another_source_cannot_see_the_case(client: TestClient) -> None:
    number = post(client, "/v1/claims", claim()).json()["case_number"]
    problem(get(client, f"/v1/cases/{number}", source="partner", secret="partner-secret"), 404)
    problem(get(client, "/v1/cases/CLM-2026-424242"), 404)


def test_a_status_signature_is_bound_to_its_path(client: TestClient) -> None:
    number = post(client, "/v1/claims", claim()).json()["case_number"]
    headers = sign_headers("webform", "new-secret", b"/v1/cases/CLM-2026-000999", now=NOW)
    problem(client.get(f"/v1/cases/{number}", headers=headers), 401)


def test_openapi_is_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/v1/claims", "/v1/complaints", "/v1/inquiries", "/v1/cases/{number}"} <= set(schema["paths"])
    body = schema["paths"]["/v1/claims"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CaseSubmission"}
    assert "CustomerCreate" in schema["components"]["schemas"]


# --- a real server -----------------------------------------------------------------------------------------


def test_end_to_end_over_http_with_uvicorn(world: Any, engine: Engine, database_url: str) -> None:
    """The thread ``claimflow up`` serves the API from: a real uvicorn server on a real port, the real clock."""
    from claimflow.cli.api import ApiThread

    api = ApiThread(make_settings(database_url=database_url), host="127.0.0.1", port=free_port())
    api.start()
    try:
        body = json.dumps(claim()).encode()
        with httpx.Client(base_url=f"http://127.0.0.1:{api.port}") as http:
            headers = {**sign_headers("webform", "new-secret", body), "Content-Type": "application/json",
                       "Idempotency-Key": "e2e-1"}  # fmt: skip
            answers = [http.post("/v1/claims", content=body, headers=headers) for _ in range(2)]
            assert [a.status_code for a in answers] == [202, 202]
            assert answers[0].json() == answers[1].json()
            path = answers[0].json()["status_url"]
            status = http.get(path, headers=sign_headers("webform", "new-secret", path.encode()))
        assert status.status_code == 200 and status.json()["case_number"] == answers[0].json()["case_number"]
        assert count(engine, Case) == 1
        from models.errors import InvalidInput

        with pytest.raises(InvalidInput, match="could not listen"):
            ApiThread(make_settings(database_url=database_url), host="127.0.0.1", port=api.port).start()
    finally:
        api.stop()
    assert api.thread is not None and not api.thread.is_alive()


def test_an_outage_is_a_503_and_one_log_line_per_refused_request_not_a_traceback(
    world: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The case database gone (nothing listens where it was): every post is a 503 with Retry-After, logged as one
    line with a running count, and the count starts again once the database answers."""
    import logging

    from claimflow.db import create_db_engine
    from claimflow.web.http import OUTAGE

    gone = create_db_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone", pool=False)
    app = create_app(settings, gone, clock=lambda: NOW)
    body = json.dumps(claim()).encode()
    with TestClient(app) as down, caplog.at_level(logging.WARNING, logger="claimflow.api"):
        for attempt in range(3):  # a client retrying under its key, as the 503 asks
            signed = sign_headers("webform", "new-secret", body, now=NOW, path="/v1/claims", key=f"outage-{attempt}")
            answer = down.post("/v1/claims", content=body, headers={"Content-Type": "application/json", **signed})
            assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    lines = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert [r.getMessage().split("; ")[1].split(" ")[0] for r in lines] == ["1", "2", "3"]
    assert all(r.exc_info is None for r in lines) and "webhook webform" in lines[0].getMessage()
    OUTAGE.over()
    assert OUTAGE.refused == 0
    gone.dispose()


def test_a_commit_whose_acknowledgement_is_lost_keeps_the_committed_cases_documents(
    client: TestClient, engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops right after the database committed: the client gets a 503 and retries with its key;
    the case was committed, so its documents must still be there (before, they were deleted as if the transaction
    had failed)."""
    import sqlite3

    import psycopg

    from models.tables import Attachment

    dialect = engine.dialect
    real_commit = dialect.do_commit

    def commit_then_lose_the_answer(dbapi_connection: Any) -> None:
        real_commit(dbapi_connection)
        monkeypatch.setattr(dialect, "do_commit", real_commit)  # once
        lost = sqlite3.OperationalError if dialect.name == "sqlite" else psycopg.OperationalError
        raise lost("server closed the connection unexpectedly")

    document = b"%PDF-1.4 repair invoice"
    payload = claim(attachments=[{"filename": "invoice.pdf", "content_type": "application/pdf",
                                  "content_base64": base64.b64encode(document).decode()}])  # fmt: skip
    monkeypatch.setattr(dialect, "do_commit", commit_then_lose_the_answer)
    first = post(client, "/v1/claims", payload, key="lost-ack-1")
    assert first.status_code == 503, first.text
    retried = post(client, "/v1/claims", payload, key="lost-ack-1")
    assert retried.status_code == 202 and retried.headers.get("idempotent-replayed") == "true"
    with Session(engine) as session:
        [stored] = session.exec(select(Attachment)).all()
    assert (settings.data_dir / stored.storage_path).read_bytes() == document


# --- version 2 signatures: the whole request, once ---------------------------------------------------------------


def test_a_v2_signature_binds_the_endpoint_the_key_and_the_source(client: TestClient, engine: Engine) -> None:
    """A captured request cannot be sent to another endpoint (a claim re-filed as a complaint), under another or no
    Idempotency-Key, or as another source; the same request without a key is accepted once."""
    body = json.dumps(claim()).encode()
    signed = sign_headers("webform", "new-secret", body, now=NOW, path="/v1/claims", key="order-9")
    json_type = {"Content-Type": "application/json"}
    assert client.post("/v1/complaints", content=body, headers={**signed, **json_type}).status_code == 401
    other_key = {**signed, **json_type, "Idempotency-Key": "order-10"}
    assert client.post("/v1/claims", content=body, headers=other_key).status_code == 401
    no_key = {k: v for k, v in {**signed, **json_type}.items() if k != "Idempotency-Key"}
    assert client.post("/v1/claims", content=body, headers=no_key).status_code == 401
    refused = client.post("/v1/claims", content=body, headers={**signed, **json_type, "X-Claimflow-Source": "partner"})
    assert refused.status_code == 401 and "does not match the request" in refused.json()["detail"]
    assert client.post("/v1/claims", content=body, headers={**signed, **json_type}).status_code == 202
    again = client.post("/v1/claims", content=body, headers={**signed, **json_type})  # a retry under its key
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    once = sign_headers("webform", "new-secret", body, now=NOW, path="/v1/claims")  # no key
    assert client.post("/v1/claims", content=body, headers={**once, **json_type}).status_code == 202
    replayed = client.post("/v1/claims", content=body, headers={**once, **json_type})
    assert replayed.status_code == 401 and "used before" in replayed.json()["detail"]
    assert count(engine, Case) == 2


def test_version_1_signatures_are_accepted_until_the_stated_day_only(world: Any, engine: Engine) -> None:
    body = json.dumps(claim()).encode()
    v1 = {**sign_headers("webform", "new-secret", body, now=NOW), "Content-Type": "application/json",
          "Idempotency-Key": "v1-1"}  # fmt: skip
    for until, status in ((NOW.date(), 202), (NOW.date() - timedelta(days=1), 401)):
        app = create_app(make_settings(webhook_v1_until=until), engine, clock=lambda: NOW)
        with TestClient(app) as client:
            answer = client.post("/v1/claims", content=body, headers=v1)
            assert answer.status_code == status, answer.text
    assert "version 1 signatures are no longer accepted" in answer.json()["detail"]


def test_the_openapi_document_describes_the_feedback_body_and_the_keys_limits(app: FastAPI) -> None:
    spec = app.openapi()
    feedback = spec["paths"]["/v1/feedback"]["post"]
    assert feedback["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FeedbackIn"
    }
    assert set(spec["components"]["schemas"]["FeedbackIn"]["properties"]) >= {"case_number", "text", "score"}
    [key] = [p for p in spec["paths"]["/v1/claims"]["post"]["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["schema"]["maxLength"] == 200
    assert key["required"] is False


def test_the_openapi_document_names_the_signature_headers_every_intake_operation_requires(app: FastAPI) -> None:
    """The headers are read by the request's authentication, not by FastAPI: the document lists them itself."""
    spec = app.openapi()
    signed = {"X-Claimflow-Source", "X-Claimflow-Timestamp", "X-Claimflow-Signature"}
    operations = [spec["paths"][f"/v1/{kind}"]["post"] for kind in ("claims", "complaints", "inquiries")]
    operations.append(spec["paths"]["/v1/cases/{number}"]["get"])
    for operation in operations:
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        assert signed <= set(headers), operation["summary"]
        assert all(headers[name]["required"] and headers[name]["description"] for name in signed)
    assert [p["name"] for p in operations[-1]["parameters"] if p["in"] == "path"] == ["number"]
    assert "Idempotency-Key" not in {p["name"] for p in operations[-1]["parameters"]}


@pytest.mark.parametrize("freeze", [True, False])
@pytest.mark.parametrize("frozen_before", [False, True])
def test_the_api_keeps_its_start_up_objects_out_of_the_cycle_collector_while_it_runs(
    world: Any, engine: Engine, freeze: bool, frozen_before: bool
) -> None:
    """A full collection over what start-up made stalled every request for about 110 ms (``bench/intake.py``'s
    p99): once started the API freezes them (``gc.freeze``). When it stops it lets them go again, unless another
    part of the process had frozen first (the desk runner, in ``claimflow up``): that freeze stays."""
    import gc

    gc.unfreeze()  # whatever an earlier test of this process froze (a desk runner run in-process)
    if frozen_before:
        gc.freeze()
    before = gc.get_freeze_count()
    try:
        app = create_app(make_settings(api_freeze_heap=freeze), engine, clock=lambda: NOW)
        with TestClient(app) as running:
            frozen = gc.get_freeze_count()
            assert running.get("/standards").status_code == 200
        # the count moves by a few hundred on its own (frozen objects freed or tracked again): compared in thousands
        if freeze and not frozen_before:
            assert frozen > 50_000, frozen  # the modules, Prefect's client, the mappers
        elif not freeze:
            assert abs(frozen - before) < 5_000, (frozen, before)
        if frozen_before:
            assert gc.get_freeze_count() > before - 5_000  # the other part's freeze is kept
        else:
            assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()

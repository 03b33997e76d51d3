"""Fuzzing the intake API from its own OpenAPI document (schemathesis): whatever a signed source sends, valid
or not, the answer is never a 5xx. Every generated request is signed, so the fuzzing reaches past the
signature check into parsing, validation and the database (both backends)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from sqlalchemy import Engine

from claimflow.settings import get_settings
from claimflow.web.app import create_app
from claimflow.web.intake import sign_headers

pytestmark = pytest.mark.slow
SECRET = "fuzz-secret"
EXAMPLES = int(os.environ.get("CLAIMFLOW_FUZZ_EXAMPLES", "60"))


@pytest.fixture
def fuzz_client(world: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    config = get_settings().model_copy(update={"webhook_secrets": {"fuzz": [SecretStr(SECRET)]}})
    with TestClient(create_app(config, engine, launch=False), raise_server_exceptions=False) as client:
        yield client


def _spec() -> Any:
    """The OpenAPI document of the app (it does not depend on the database, which is never touched here: the app is
    not started, so no schema is checked)."""
    from claimflow.db import create_db_engine

    return schemathesis.openapi.from_dict(create_app(engine=create_db_engine("sqlite://"), launch=False).openapi())


SPEC = _spec()
OPERATIONS = [
    pytest.param(method, path, mode, id=f"{method}-{path}-{mode.value}")
    for method, path in (("POST", "/v1/claims"), ("POST", "/v1/complaints"), ("POST", "/v1/inquiries"),
                         ("GET", "/v1/cases/{number}"))
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (method == "GET" and mode is GenerationMode.NEGATIVE)  # a free-form path segment has no invalid value
]  # fmt: skip


def _ascii_headers(headers: dict[str, Any] | None) -> dict[str, str]:
    out = {}
    for name, value in (headers or {}).items():
        text = str(value)
        if name.lower().startswith("x-claimflow-") or not (text.isascii() and text.isprintable()):
            continue
        out[name] = text
    return out


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
def test_no_request_gets_a_server_error(method: str, path: str, mode: GenerationMode, fuzz_client: TestClient) -> None:
    strategy = SPEC[path][method].as_strategy(generation_mode=mode)

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case: Any) -> None:
        statuses.append(send(case, fuzz_client))

    statuses: list[int] = []
    fuzz()
    print(method, path, mode.value, {code: statuses.count(code) for code in sorted(set(statuses))})
    if method == "POST" and mode is GenerationMode.POSITIVE:
        assert 202 in statuses  # the signed, valid requests got through to the database


def send(case: Any, fuzz_client: TestClient) -> int:
    path = case.path
    for name, value in (case.path_parameters or {}).items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    body = b""
    if case.method.upper() != "GET" and case.body is not None:
        body = json.dumps(case.body, ensure_ascii=False, default=str).encode()
    given = _ascii_headers(case.headers)
    key = next((v for k, v in given.items() if k.lower() == "idempotency-key"), None)
    headers = {**given, **sign_headers("fuzz", SECRET, body, method=case.method.upper(), path=path, key=key)}
    if case.method.upper() == "POST":
        headers["Content-Type"] = case.media_type or "application/json"
    response = fuzz_client.request(case.method, path, content=body or None, headers=headers)
    assert response.status_code < 500, f"{case.method} {path} -> {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", response.text[:200]
    return response.status_code

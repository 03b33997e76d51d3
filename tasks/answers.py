"""Giving a suspended run its answer, through the Prefect server's REST API with httpx.

``claimflow decide`` answers a waiting form from the terminal. Loading Prefect's client costs about a second, and
the command itself needs three requests, so this module talks to the server directly:
- read the run (is it suspended, and with which form);
- read the form's schema (to send each choice as the word the form offers, ``models.forms.fit_choices``);
- resume the run with the answer.

Where Prefect is already loaded (the desk runner, the demo, the tests), its settings in force name the server;
otherwise the environment does (``PREFECT_API_URL``, ``PREFECT_API_AUTH_STRING``, as ``claimflow`` sets them).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import anyio
import httpx
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from models.errors import InvalidInput
from models.forms import fit_choices
from models.tables import Case, Event, Step
from tasks.cases import get_case

BUSY_STATUSES = (429, 502, 503, 504)  # the server (on SQLite: "database is locked") asks to be asked again
ATTEMPTS = 10
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})


def prefect_api() -> tuple[str, tuple[str, str] | None]:
    """The Prefect server's API address and basic-auth pair (user, password) in force."""
    if "prefect.settings" in sys.modules:  # Prefect is loaded: its settings (a test's, the runner's) decide
        from prefect.settings import get_current_settings

        api = get_current_settings().api
        url = str(api.url or "")
        secret = api.auth_string
        auth = secret.get_secret_value() if secret is not None else None
    else:
        url, auth = os.environ.get("PREFECT_API_URL", ""), os.environ.get("PREFECT_API_AUTH_STRING")
    if not url:
        raise InvalidInput("no Prefect server is set (PREFECT_API_URL): is 'claimflow up' running?")
    user, _, password = (auth or "").partition(":")
    return url.rstrip("/"), (user, password) if auth else None


async def _request(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    for attempt in range(ATTEMPTS):
        response = await client.request(method, path, **kwargs)
        if response.status_code not in BUSY_STATUSES or attempt == ATTEMPTS - 1:
            response.raise_for_status()
            return response
        await anyio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _client() -> httpx.AsyncClient:
    url, auth = prefect_api()
    return httpx.AsyncClient(base_url=url, auth=auth, timeout=30)


async def _run(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = (await _request(client, "GET", f"/flow_runs/{UUID(run_id)}")).json()
    return run


async def waiting_run(engine: Engine, *, number: str, patience: float = 0.0) -> tuple[str, str]:
    """The run driving a case and the key it is suspended on; ``InvalidInput`` if it waits for nobody.

    A run busy with a leg (just filed, or taking up the answer before) asks for its next decision a moment later:
    with ``patience`` this waits up to that many seconds for the run to be suspended on the case's waiting step.
    """
    deadline = anyio.current_time() + patience

    def read() -> tuple[Case, str | None]:
        with Session(engine) as session:
            case = get_case(session, number)
            step = session.exec(
                select(Step)
                .where(Step.case_id == case.id, col(Step.waiting_key).is_not(None))
                .order_by(col(Step.id).desc())
            ).first()
        if case.closed_at is not None:
            raise InvalidInput(f"{case.number} is {case.status}: there is nothing to decide")
        if case.flow_run_id is None:
            raise InvalidInput(f"{case.number} has no run yet: is 'claimflow up' running? (its reconciler starts it)")
        return case, step.waiting_key if step is not None else None

    case, key = read()
    async with _client() as client:
        while True:
            state = (await _run(client, str(case.flow_run_id))).get("state") or {}
            paused_on = (state.get("state_details") or {}).get("pause_key")
            if state.get("type") == "PAUSED" and key and paused_on in (None, key):
                return str(case.flow_run_id), key
            if anyio.current_time() >= deadline or state.get("type") in TERMINAL:
                break
            await anyio.sleep(0.5)
            case, key = read()
    if key is None:
        raise InvalidInput(f"{case.number} is not waiting for a decision")
    name = state.get("name") or "unknown"
    raise InvalidInput(f"{case.number}: its run is {name}, not waiting for a decision; try again shortly")


@dataclass(frozen=True)
class Outcome:
    """What a run made of an answer: the events written since it was given, the case's status, and the reason
    if the answer was refused."""

    events: tuple[str, ...]
    status: str
    refused: str | None = None


def event_count(session: Session, case_id: int) -> int:
    """How many events the case has: taken just before an answer is given, for ``outcome``."""
    return len(session.exec(select(Event.id).where(Event.case_id == case_id)).all())


def moved_off(case_id: int, key: str) -> Callable[[Session], bool]:
    """Whether the run took up the answer given under ``key``: every answer taken up (applied or refused) moves
    the case's step off that key (a new key, or none once the step is done)."""

    def taken_up(session: Session) -> bool:
        return session.exec(select(Step.id).where(Step.case_id == case_id, Step.waiting_key == key)).first() is None

    return taken_up


def outcome(
    session: Session, case_id: int, *, key: str, before: int, taken_up: Callable[[Session], bool] | None = None
) -> Outcome | None:
    """What the run did with the answer given under ``key`` (``before``: the case's ``event_count`` when it was
    given), or None while it has not taken it up. It is read from the answer's own traces (``taken_up``, by
    default the step moved off the key, and a refusal recorded under the key), never from whatever event comes
    next: the outbox and the watcher write events on the same case meanwhile.

    ``taken_up`` is read before the events. On PostgreSQL each statement sees what was committed before it, so
    events read first could miss a refusal committed just before the key is read, and the refused answer would
    read as taken up.
    """
    done = (taken_up or moved_off(case_id, key))(session)
    events = list(session.exec(select(Event).where(Event.case_id == case_id).order_by(col(Event.sequence))))
    new = events[before:]
    case = session.get(Case, case_id)
    status = case.status if case is not None else ""
    refused = [e for e in new if e.type == "decision_refused" and e.data.get("key") == key]
    if refused:
        return Outcome(tuple(e.type for e in new), status, str(refused[0].data.get("reason")))
    return Outcome(tuple(e.type for e in new), status) if done else None


async def give_input(run_id: str, answer: dict[str, Any], *, attempts: int = ATTEMPTS) -> None:
    """Resume a suspended run with a person's answer, each choice in the words of the form it waits with (the
    server checks the answer against that form's schema and accepts only its own values).

    Prefect marks a run Suspended a moment before it stores the form's schema; a resume in that gap is refused
    with "Run input schema not found", so that answer is tried again briefly.

    Raises:
        RuntimeError: the server refused the answer (the run is not suspended, cannot be resumed any more, or the
            answer does not fit the form), with its reason.
    """
    async with _client() as client:
        for attempt in range(attempts):
            state = (await _run(client, run_id)).get("state") or {}
            if state.get("type") != "PAUSED":
                raise RuntimeError(f"Cannot resume a run that isn't paused! (it is {state.get('name')})")
            keyset = (state.get("state_details") or {}).get("run_input_keyset") or {}
            fitted = answer
            if keyset.get("schema"):
                try:
                    found = await _request(client, "GET", f"/flow_runs/{UUID(run_id)}/input/{keyset['schema']}")
                    schema = json.loads(found.text)
                except (httpx.HTTPStatusError, ValueError):  # not stored yet: the resume below says so, and is retried
                    schema = None
                fitted = fit_choices("", answer, schema) if isinstance(schema, dict) else answer
            result = (await _request(client, "POST", f"/flow_runs/{UUID(run_id)}/resume",
                                     json={"run_input": fitted})).json()  # fmt: skip
            if result.get("status") != "REJECT":
                return
            reason = str((result.get("details") or {}).get("reason") or "")
            if ((result.get("state") or {}).get("type")) == "FAILED":
                raise RuntimeError("Flow run can no longer be resumed.")
            if "schema not found" not in reason.lower() or attempt == attempts - 1:
                raise RuntimeError(f"Cannot resume this run: {reason}")
            await anyio.sleep(0.3)


WAKE_MESSAGE = "the case no longer waits for this form (e.g. the customer sent the last document): reading it again"


def waiting_keys(session: Session, *, case_ids: list[int]) -> dict[int, set[str]]:
    """The decision keys each case's steps wait on now (a case waiting for nobody has none)."""
    keys: dict[int, set[str]] = {case_id: set() for case_id in case_ids}
    rows = session.exec(
        select(Step.case_id, Step.waiting_key).where(
            col(Step.case_id).in_(case_ids), col(Step.waiting_key).is_not(None)
        )
    )
    for case_id, key in rows:
        keys[case_id].add(str(key))
    return keys


async def wake_if_stale(run_id: str, keys: set[str]) -> bool:
    """Send a run suspended on a form the case no longer waits for (its key is none of ``keys``) back to its
    runner, as a resume does, so it reads the case again and asks what the case waits for now; True if it was.

    The state is read first and the move proposed under the server's rules (Suspended to Scheduled, as Prefect's
    own resume does), never forced: a run that was answered or finished meanwhile is left as it is.
    """
    async with _client() as client:
        state = (await _run(client, run_id)).get("state") or {}
        paused_on = (state.get("state_details") or {}).get("pause_key")
        if state.get("type") != "PAUSED" or not paused_on or paused_on in keys:
            return False
        proposed = {"type": "SCHEDULED", "name": "Resuming", "message": WAKE_MESSAGE}
        response = await _request(client, "POST", f"/flow_runs/{UUID(run_id)}/set_state",
                                  json={"state": proposed, "force": False})  # fmt: skip
    return bool(response.json().get("status") == "ACCEPT")


async def wake_case(engine: Engine, *, case_id: int) -> bool:
    """``wake_if_stale`` for one case's run, with the keys its steps wait on now."""
    with Session(engine) as session:
        case = session.get(Case, case_id)
        keys = waiting_keys(session, case_ids=[case_id])[case_id]
    if case is None or case.flow_run_id is None:
        return False
    return await wake_if_stale(str(case.flow_run_id), keys)

"""The customer's last missing document, sent from the status page while the case's run waits on the handler's
documents form: the case goes back under review (``tasks.status.upload_document``) and the run, suspended on a
form the case has moved past, is sent back to its runner to ask for the review instead: by the web app right
after the upload (``Launcher``), or by the reconciler's next pass when the web app could not reach Prefect. A
real Prefect server, the desk runner and the web app."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect.client.schemas.objects import StateType
from sqlmodel import Session, select

from claimflow.web.app import create_app
from flows.watch import reconcile
from models.tables import DocumentRequirement
from tasks.runs import launch_case, run_states
from tasks.status import status_url

PDF = b"%PDF-1.7\n" + b"0" * 2000 + b"\n%%EOF\n"


@pytest.mark.parametrize("woken_by", ["the web app", "the reconciler"])
def test_the_last_upload_sends_the_waiting_run_on_to_the_review(live: Any, kit: Any, woken_by: str) -> None:
    world = live
    case = world.file(product_line="motor")
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    handler = kit.handler_of(world, case)
    kit.give(world, case, handler, decision="request_documents")
    _, key = kit.wait_for("the run to wait for the documents form", lambda: kit.waiting(world, case))
    assert key.startswith("documents-") and world.case(case).status == "awaiting_documents"

    with Session(world.engine) as session:
        missing = [r.document_type for r in session.exec(select(DocumentRequirement)
                                                          .where(DocumentRequirement.case_id == case.id))]  # fmt: skip
    link = status_url(world.desk.settings, case_id=case.id, now=world.now)
    path = link[link.index("/status/") :]
    app = create_app(world.desk.settings, world.engine, launch=woken_by == "the web app")
    with TestClient(app) as client:
        for document in missing:
            sent = client.post(f"{path}/documents", data={"document": document},
                               files={"file": ("scan.pdf", PDF, "application/pdf")}, follow_redirects=False)  # fmt: skip
            assert sent.status_code == 303, sent.text
        assert world.case(case).status == "under_review"  # the case moved on in the upload's own transaction
        if woken_by == "the reconciler":  # no launcher: the run still waits on the form the case moved past
            [state] = asyncio.run(run_states([run_id])).values()
            assert state is not None and state.type == StateType.PAUSED and state.pause_key == key
            assert asyncio.run(reconcile())["woken"] == 1
        _, asked = kit.wait_for(
            "the run to ask for the review",
            lambda: (waiting := kit.waiting(world, case)) and waiting[1].startswith("claim-review-") and waiting,
        )
    assert asked != key
    assert asyncio.run(reconcile())["woken"] == 0  # a run that waits on what the case waits for is left alone
    # the handler decides the review the run now asks for
    assert kit.give(world, case, handler, decision="reject", reasons="Racing is excluded", clause="4.2")
    kit.wait_for("the run to close the case", lambda: kit.run_state(run_id) == StateType.COMPLETED)
    events = kit.events(world, case)
    assert events.index("documents_received") < events.index("clock_resumed") < events.index("reject")

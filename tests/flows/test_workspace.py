"""The case on its run's page: the desk runner's publisher writes each changed case's artifact and run tags to a
real Prefect server, as the case moves (a decision, a refusal, a breach raised by the watcher)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import ArtifactSort

from claimflow.db import session_scope
from flows.workspace import CaseViewPublisher
from tasks.answers import give_input
from tasks.caseview import artifact_key
from tasks.escalations import watch_pass
from tasks.runs import launch_case


def _publish(publisher: CaseViewPublisher) -> int:
    async def go() -> int:
        async with get_client() as client:
            return (await publisher.publish_changed(client)).cases

    return asyncio.run(go())


def _page(run_id: str, number: str) -> tuple[str, list[str], int]:
    """The run's newest case artifact, its tags, and how many versions of the artifact it has."""

    async def read() -> tuple[str, list[str], int]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run_id)]),
                                               key=ArtifactFilterKey(any_=[artifact_key(number)])),
                sort=ArtifactSort.CREATED_DESC,
            )  # fmt: skip
            run = await client.read_flow_run(UUID(run_id))
            return (str(found[0].data) if found else ""), sorted(run.tags or []), len(found)

    return asyncio.run(read())


def test_a_waiting_case_shows_on_its_run_and_follows_decisions_refusals_and_breaches(live, kit) -> None:
    world = live
    case = world.file(product_line="motor")
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    handler = kit.handler_of(world, case)
    kit.wait_for("the run to suspend", lambda: kit.run_state(run_id) == StateType.PAUSED)
    publisher = CaseViewPublisher(every=1)
    assert _publish(publisher) == 1  # the first pass: every open case with a run
    page, tags, versions = _page(run_id, case.number)
    assert page.startswith(f"# {case.number} · claim · under_review")
    assert f"**等待处理:** `claim_review` (review) · 可决定的人: {handler}（经办人），或经理或主管" in page  # zh-CN
    assert f"claimflow decide {case.number} --staff USERNAME --code CODE --decision approve|" in page
    assert "张三" not in page and "zhang.san@example.com" not in page  # the customer masked, as the CLI shows
    assert {f"assignee:{handler}", "waiting:claim-review", "kind:claim", "product:motor"} <= set(tags)
    assert any(t.startswith("due:") for t in tags) and "sla:breached" not in tags
    assert _publish(publisher) == 0 and _page(run_id, case.number)[2] == versions  # nothing changed: no new version

    # a refused answer: the run asks again, and its page says why first
    _, key = kit.waiting(world, case)
    asyncio.run(give_input(run_id, {"staff": handler, "approval_code": "000000", "decision": "investigate"}))
    kit.wait_for("the refusal", lambda: "decision_refused" in kit.events(world, case))
    kit.wait_for("the run to ask again", lambda: (kit.waiting(world, case) or (None, key))[1] != key)
    assert _publish(publisher) == 1
    page, _, _ = _page(run_id, case.number)
    assert page.splitlines()[2].startswith(f"> **⚠ 上一次提交被拒绝:** `{handler}: the approval code is wrong")

    # a breach raised by the watcher, outside the run: the tag and the step's line follow
    due = world.step(case, "review").due_at
    with session_scope(world.engine) as session:
        watch_pass(session, now=due + timedelta(minutes=1))
    assert _publish(publisher) == 1
    page, tags, _ = _page(run_id, case.number)
    assert "sla:breached" in tags and "已升级至第 1 级" in page

    # the decision: the case moves on and the page with it
    kit.give(world, case, handler, decision="investigate")
    kit.wait_for("the run to suspend again", lambda: kit.waiting(world, case))
    assert _publish(publisher) == 1
    page, tags, _ = _page(run_id, case.number)
    assert page.startswith(f"# {case.number} · claim · investigating") and "上一次提交被拒绝" not in page
    assert f"assignee:{handler}" in tags and "waiting:claim-review" in tags  # the investigation's own review form


def _latest(key: str) -> str:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                                sort=ArtifactSort.CREATED_DESC, limit=1)  # fmt: skip
            return str(found[0].data) if found else ""

    return asyncio.run(read())


def _worklists(publisher: CaseViewPublisher) -> int:
    async def go() -> int:
        async with get_client() as client:
            return await publisher.publish_worklists(client)

    return asyncio.run(go())


def test_worklists_breached_list_and_desk_summary_are_artifacts_written_when_the_desk_changes(live, kit) -> None:
    from models.worklists import artifact_key as list_key

    world = live
    first, second = world.file(product_line="motor"), world.file(product_line="motor")
    runs = {c.number: asyncio.run(launch_case(world.engine, case_id=c.id)) for c in (first, second)}
    for run_id in runs.values():
        kit.wait_for("the run to suspend", lambda r=run_id: kit.run_state(r) == StateType.PAUSED)
    handler = kit.handler_of(world, first)
    publisher = CaseViewPublisher(every=1, language="en")
    assert _worklists(publisher) >= 4  # a worklist per active member, per team, the breached list, the summary
    mine = _latest(list_key("worklist", handler))
    assert f"[{first.number}](" in mine and f"/runs/flow-run/{runs[first.number]})" in mine
    assert second.number not in mine  # routed to the other handler
    team = _latest("team-claims-motor")
    assert first.number in team and second.number in team
    summary = _latest("desk-summary")
    assert "| open cases | 2 |" in summary and "| cases filed in the last hour | 2 |" in summary
    assert _worklists(publisher) == 0  # nothing changed: no new versions

    due = world.step(first, "review").due_at
    with session_scope(world.engine) as session:
        watch_pass(session, now=due + timedelta(minutes=1))
    assert _worklists(publisher) >= 2
    breached = _latest("desk-breached")
    assert f"{first.number}-escalation-1" in breached and "| review | 1 | supervisor |" in breached
    assert "| breached now | 2 |" in _latest("desk-summary")  # both were due at the same time


def test_a_case_whose_publish_failed_is_published_in_the_next_pass_without_a_new_change(live, kit, monkeypatch) -> None:
    """The Prefect server refused one publish (restarting): the case is not left stale until it changes again."""
    import flows.workspace

    world = live
    case = world.file(product_line="motor")
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    kit.wait_for("the run to suspend", lambda: kit.run_state(run_id) == StateType.PAUSED)
    real = flows.workspace.publish

    async def refused(*args, **kwargs):
        raise ConnectionError("the server is restarting")

    monkeypatch.setattr(flows.workspace, "publish", refused)
    monkeypatch.setattr(flows.workspace, "OVERLAP", 0)  # its events are out of the window that is read again
    publisher = CaseViewPublisher(every=1)
    assert _publish(publisher) == 0 and _page(run_id, case.number)[2] == 0
    monkeypatch.setattr(flows.workspace, "publish", real)
    assert _publish(publisher) == 1  # nothing changed on the case meanwhile
    assert _page(run_id, case.number)[0].startswith(f"# {case.number}")
    assert _publish(publisher) == 0


def test_a_case_seen_before_its_run_was_launched_is_published_once_the_run_exists(live, kit, monkeypatch) -> None:
    """Intake commits the case and its events, the run is launched a moment later, and the launch appends no event:
    a pass that saw the case in between must not take it as published (the demo's complaint showed no tags)."""
    import flows.workspace

    world = live
    publisher = CaseViewPublisher(every=1)
    assert _publish(publisher) == 0  # the first pass: nothing filed yet
    monkeypatch.setattr(flows.workspace, "OVERLAP", 0)  # its events are out of the window that is read again
    case = world.file(product_line="motor")
    assert _publish(publisher) == 0  # its events are seen, but it has no run to publish to yet
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    kit.wait_for("the run to suspend", lambda: kit.run_state(run_id) == StateType.PAUSED)
    assert _publish(publisher) == 1
    page, tags, _ = _page(run_id, case.number)
    assert page.startswith(f"# {case.number}") and "waiting:claim-review" in tags
    assert _publish(publisher) == 0

    # a runner started while a case waits for its run (the server was down at intake; the reconciler launches it)
    later = world.file(product_line="motor")
    restarted = CaseViewPublisher(every=1)
    assert _publish(restarted) == 1  # the first pass: the case with a run
    run_id = asyncio.run(launch_case(world.engine, case_id=later.id))
    kit.wait_for("the run to suspend", lambda: kit.run_state(run_id) == StateType.PAUSED)
    assert _publish(restarted) == 1 and _page(run_id, later.number)[0].startswith(f"# {later.number}")
    assert _publish(restarted) == 0 and not restarted.awaiting

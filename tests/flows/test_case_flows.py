"""Case flows on a real Prefect server: suspended for people, resumed with their decisions, restartable.

The desk runner executes the runs in this process (as ``claimflow up`` does), against a throwaway Prefect
server; the case database is SQLite and PostgreSQL in turn.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import StateType
from prefect.states import Crashed, Pending, Running
from sqlmodel import Session, col, select

from claimflow.db import session_scope
from flows.feedback import satisfaction_survey
from flows.watch import reconcile, sla_watch
from models.enums import CaseKind
from models.survey import SurveyAnswer
from models.tables import Case, Escalation, Outbox, SurveyInvitation
from tasks.answers import give_input
from tasks.feedback import answer_survey
from tasks.runs import RunState, crash_if_still, launch_case, run_states, start_case_run
from tasks.survey import link_token


def test_a_claim_is_driven_by_its_run_from_filing_to_closure(live, kit) -> None:
    world = live
    case = world.file(product_line="motor", amount_claimed=Decimal("8000"))
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    assert world.case(case).flow_run_id == run_id
    who = kit.handler_of(world, case)

    kit.give(world, case, who, decision="request_documents")
    assert world.case(case).status == "awaiting_documents"
    assert kit.wait_for("the run to suspend", lambda: kit.run_state(run_id) == StateType.PAUSED)
    kit.give(world, case, "zhao.min", documents=["repair invoice", "police report"])
    assert world.case(case).status == "under_review"
    kit.give(world, case, who, decision="approve", amount="7800")
    kit.give(world, case, "zhao.min", amount="7800", reference="PAY-1", account_hint="6789")
    kit.wait_for("the run to finish", lambda: kit.run_state(run_id) == StateType.COMPLETED)

    assert world.case(case).status == "closed"
    log = kit.events(world, case)
    expected = [
        "filed",
        "assigned",
        "start_review",
        "step_opened",
        "step_opened",
        "request_documents",
        "clock_paused",
        "documents_received",
        "clock_resumed",
        "approve",
        "step_completed",
        "step_completed",
        "step_opened",
        "record_payment",
        "step_completed",
        "request_feedback",
        "survey_invited",
        "close",
    ]  # fmt: skip  (the review and the advance payment open; the approval meets both)
    assert [e for e in log if e in expected] == expected
    stored = world.case(case)
    with Session(world.engine) as session:
        templates = sorted(o.template for o in session.exec(select(Outbox)))
        token = link_token(session, world.desk.settings, case=stored)
    assert templates.count("missing_documents") == 1  # one complete list, sent once
    assert templates.count("survey_invitation") == 1
    # the customer answers the survey the run sent: recorded on the closed case, after its closing
    with session_scope(world.engine) as session:
        answer_survey(session, world.desk, token=token, answer=SurveyAnswer(5, True, "quick, thanks"),
                      now=datetime.now(UTC))  # fmt: skip
    assert kit.events(world, case)[-2:] == ["close", "feedback_received"]


def test_a_refused_code_is_recorded_and_the_run_asks_again(live, kit) -> None:
    world = live
    case = world.file(CaseKind.inquiry, product_line="health")
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    who = kit.handler_of(world, case)
    _, first_key = kit.wait_for("the run to ask", lambda: kit.waiting(world, case))
    # the run's page says what it waits for: its state's message
    assert kit.state_message(run_id) == f"{case.number} waits for inquiry_answer"
    asyncio.run(give_input(run_id, {"staff": who, "approval_code": "000000", "answer": "Yes."}))
    kit.wait_for("the refusal", lambda: kit.events(world, case)[-1] == "decision_refused")
    _, second_key = kit.wait_for("the run to ask again", lambda: kit.waiting(world, case) if kit.waiting(world, case) and
                             kit.waiting(world, case)[1] != first_key else None)  # fmt: skip
    assert second_key.endswith("-2")
    # ... and after the refused answer, the refusal first: the page does not look as if the answer was taken
    assert kit.state_message(run_id) == (f"{case.number}: decision refused: the approval code is wrong or has expired; "
                                     "waits for a new answer (inquiry_answer)")  # fmt: skip
    kit.give(world, case, who, answer="Yes, physiotherapy is covered.")
    kit.wait_for("the run to finish", lambda: kit.run_state(run_id) == StateType.COMPLETED)
    assert world.case(case).status == "closed"
    log = kit.events(world, case)
    assert log.count("decision_refused") == 1 and log.count("answer") == 1
    assert world.outbox().count("inquiry_answer") == 1  # the customer is sent the answer, once
    # the refused attempt's task run does not look like a success on the run's page: Failed, with the reason, once
    states = {name: (state_type, message) for name, state_type, message in kit.task_runs(run_id)}
    assert states[first_key] == (StateType.FAILED, "refused: the approval code is wrong or has expired")
    assert states[second_key][0] == StateType.COMPLETED


def test_the_launcher_and_the_reconciler_racing_start_a_case_s_first_run_once(live, kit) -> None:
    """Under a surge the API's launcher falls behind and the reconciler starts the same cases' first runs: both ask
    under one idempotency key, so the server creates the run once (a surge of 1,000 claims had left 402 cases with
    two or three runs, each waiting for the same decision)."""
    world = live
    case = world.file(product_line="motor")
    unstarted = world.case(case)
    assert unstarted.flow_run_id is None

    async def runs_named() -> set[str]:  # the file's tests share one Prefect server: other desks' runs too
        async with get_client() as client:
            found = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[case.number]))
            )
            return {str(run.id) for run in found}

    before = asyncio.run(runs_named())

    async def race() -> list[str]:
        return list(await asyncio.gather(start_case_run(unstarted), start_case_run(unstarted),
                                         launch_case(world.engine, case_id=case.id)))  # fmt: skip

    first, second, launched = asyncio.run(race())
    assert first == second == launched
    asyncio.run(launch_case(world.engine, case_id=case.id))  # the launcher, late: the case's run is recorded
    assert world.case(case).flow_run_id == first
    assert asyncio.run(reconcile())["started"] == 0  # nothing left to start
    assert asyncio.run(runs_named()) - before == {first}
    kit.wait_for("the run to suspend", lambda: kit.run_state(first) == StateType.PAUSED)


def test_a_crashed_run_is_replaced_and_nothing_is_done_twice(live, kit) -> None:
    world = live
    case = world.file(product_line="motor")
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    who = kit.handler_of(world, case)
    kit.give(world, case, who, decision="investigate")
    kit.wait_for("the run to suspend", lambda: kit.run_state(run_id) == StateType.PAUSED)
    before = kit.events(world, case)

    async def crash() -> None:  # what the server records when a process dies
        async with get_client() as client:
            await client.set_flow_run_state(UUID(run_id), Crashed(message="killed"), force=True)

    asyncio.run(crash())
    result = asyncio.run(reconcile())
    assert result == {"assigned": 0, "started": 0, "restarted": 1, "checked": 1, "released": 0, "woken": 0}
    new_run = world.case(case).flow_run_id
    assert new_run != run_id
    kit.wait_for("the new run to suspend", lambda: kit.run_state(new_run) == StateType.PAUSED)
    assert kit.events(world, case) == before  # the new run read the case and repeated nothing
    kit.give(world, case, who, decision="reject", reasons="Racing is excluded", clause="4.2")
    kit.wait_for("the new run to finish", lambda: kit.run_state(new_run) == StateType.COMPLETED)
    assert world.case(case).status == "closed"
    assert kit.events(world, case).count("start_investigation") == 1


def test_a_run_stranded_by_a_dead_runner_is_marked_crashed_and_replaced_once_it_is_overdue(live, kit) -> None:
    world = live
    case = world.file(product_line="motor")
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    kit.wait_for("the run to suspend", lambda: kit.run_state(run_id) == StateType.PAUSED)
    before = kit.events(world, case)

    async def strand() -> None:  # a runner took the run and was killed mid-leg: nobody moves it on
        async with get_client() as client:
            await client.set_flow_run_state(UUID(run_id), Running(), force=True)

    asyncio.run(strand())
    # a leg in progress is left alone
    assert asyncio.run(reconcile())["restarted"] == 0
    assert kit.run_state(run_id) == StateType.RUNNING
    # a state read before the run moved on is not acted on
    [held] = asyncio.run(run_states([run_id])).values()
    assert held is not None and held.type == StateType.RUNNING
    stale = RunState(StateType.RUNNING, held.since - timedelta(minutes=30) if held.since else None)
    assert asyncio.run(crash_if_still(run_id, stale, "test")) is False
    assert kit.run_state(run_id) == StateType.RUNNING
    # past the stranded limit (15 minutes by default) it is the runner's death, not a slow leg
    later = datetime.now(UTC) + timedelta(minutes=16)
    result = asyncio.run(reconcile(now=later))
    assert result["restarted"] == 1 and result["checked"] >= 1
    assert kit.run_state(run_id) == StateType.CRASHED
    new_run = world.case(case).flow_run_id
    assert new_run != run_id
    kit.wait_for("the new run to suspend", lambda: kit.run_state(new_run) == StateType.PAUSED)
    assert kit.events(world, case) == before  # the new run read the case and repeated nothing
    assert asyncio.run(reconcile(now=later))["restarted"] == 0  # the new run waits for a person: alive


def test_a_reconcile_pass_leaves_alone_a_run_it_has_just_started_whatever_its_clock(live, kit) -> None:
    """A pass made "as if later" starts a case's missing run, a runner takes it up at once (Pending), and the same
    pass then walks the open cases: that run is fresh, not stranded. Judged by the shifted clock it was marked
    crashed and started again while the runner went on with it (two runs waiting; the chaos test caught it)."""
    from prefect import flow

    from flows.watch import _replace_dead_runs

    world = live
    case = world.file(product_line="motor")
    run_id = asyncio.run(launch_case(world.engine, case_id=case.id))
    kit.wait_for("the run to suspend", lambda: kit.run_state(run_id) == StateType.PAUSED)
    case = world.case(case)
    started: list[int | None] = []

    async def start(item: Case) -> str:
        started.append(item.id)
        return "never"

    @flow
    async def walk(fresh: set[str] | None) -> tuple[int, int, int]:
        async def page(after_id: int) -> list[Case]:
            return [case] if after_id == 0 else []

        return await _replace_dead_runs(page, lambda c: (c.id, c.flow_run_id, c.number), start,
                                        now=datetime.now(UTC) + timedelta(minutes=16),
                                        stranded_after=timedelta(minutes=15), fresh=fresh)  # fmt: skip

    async def taken_up() -> None:  # as a runner taking the run up: Pending, now
        async with get_client() as client:
            await client.set_flow_run_state(UUID(run_id), Pending(), force=True)

    asyncio.run(taken_up())
    assert asyncio.run(walk({run_id})) == (0, 1, 0)
    assert kit.run_state(run_id) == StateType.PENDING and started == []
    # the same run, not started by this pass: judged by the clock given, crashed and replaced
    assert asyncio.run(walk(set())) == (1, 1, 0)
    assert kit.run_state(run_id) == StateType.CRASHED and started == [case.id]


def test_an_escalation_run_stranded_by_a_dead_runner_is_replaced_and_still_waits_for_the_supervisor(live, kit) -> None:
    world = live
    case = world.file(product_line="motor")
    case_run = asyncio.run(launch_case(world.engine, case_id=case.id))
    kit.wait_for("the case run to suspend", lambda: kit.run_state(case_run) == StateType.PAUSED)
    asyncio.run(sla_watch(now=world.step(case, "review").due_at + timedelta(minutes=1)))
    with Session(world.engine) as session:
        [raised] = session.exec(select(Escalation)).all()
    old = raised.flow_run_id
    assert old
    kit.wait_for("the escalation run to suspend", lambda: kit.run_state(old) == StateType.PAUSED)

    async def strand() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(UUID(old), Running(), force=True)

    asyncio.run(strand())
    assert asyncio.run(reconcile())["restarted"] == 0  # a leg in progress
    result = asyncio.run(reconcile(now=datetime.now(UTC) + timedelta(minutes=16)))
    assert result["restarted"] == 1 and result["checked"] == 2  # the escalation's run; the case's waits, alive
    assert kit.run_state(old) == StateType.CRASHED
    with Session(world.engine) as session:
        again = session.get(Escalation, raised.id)
        assert again is not None and again.decision is None
        new = again.flow_run_id
    assert new and new != old
    kit.wait_for("the new escalation run to suspend", lambda: kit.run_state(new) == StateType.PAUSED)
    assert world.case(case).flow_run_id == case_run


def test_a_breach_is_escalated_extended_and_the_next_level_reached_when_nobody_decides(live, kit) -> None:
    world = live
    first = world.file(product_line="motor")
    second = world.file(product_line="motor")
    for case in (first, second):
        run = asyncio.run(launch_case(world.engine, case_id=case.id))
        # on PostgreSQL the watcher skips a case whose row a run holds (until its next pass): wait until the
        # runs wait for their reviews, as a breach a day later finds them
        kit.wait_for("the case run to suspend", lambda run=run: kit.run_state(run) == StateType.PAUSED)
    due = world.step(first, "review").due_at
    asyncio.run(sla_watch(now=due + timedelta(minutes=1)))
    with Session(world.engine) as session:
        escalations = list(session.exec(select(Escalation).order_by(col(Escalation.id))))
    assert [(e.level, e.role) for e in escalations] == [(1, "supervisor"), (1, "supervisor")]
    # both steps are due at the same time: which escalation is raised first is not a rule
    raised = sorted(escalations, key=lambda e: [first.id, second.id].index(e.case_id))
    runs = [e.flow_run_id for e in raised]
    assert all(runs)
    for run in runs:
        kit.wait_for("the escalation run to suspend", lambda run=run: kit.run_state(run) == StateType.PAUSED)
    # the supervisor extends the first; nobody decides the second
    asyncio.run(
        give_input(
            runs[0],
            {
                "staff": "zhao.min",
                "approval_code": world.live_code("zhao.min"),
                "decision": "extend",
                "reason": "Waiting for the assessor's report",
            },
        )
    )
    kit.wait_for("the extension", lambda: "escalation_decided" in kit.events(world, first))
    kit.wait_for("the first escalation run to finish", lambda: kit.run_state(runs[0]) == StateType.COMPLETED)
    assert world.step(first, "review").due_at > due
    decide_by = raised[1].decide_by
    asyncio.run(sla_watch(now=decide_by + timedelta(minutes=1)))
    with Session(world.engine) as session:
        levels = [
            (e.case_id, e.level, e.role, e.decision)
            for e in session.exec(select(Escalation).order_by(col(Escalation.id)))
        ]
    assert [level for level in levels if level[0] == second.id] == [
        (second.id, 1, "supervisor", "superseded"),
        (second.id, 2, "manager", None),
    ]
    assert [level for level in levels if level[0] == first.id] == [(first.id, 1, "supervisor", "extend")]


def test_the_satisfaction_survey_flow_invites_a_sample_of_closed_cases(live, kit) -> None:
    world = live
    closed = [world.file(CaseKind.inquiry, product_line="health") for _ in range(3)]
    with session_scope(world.engine) as session:
        for case in closed:
            stored = session.get(Case, case.id)
            stored.status, stored.closed_at = "closed", datetime.now(UTC) - timedelta(days=1)
            session.add(stored)
    result = asyncio.run(satisfaction_survey())
    assert result["closed"] == 3 and 1 <= result["invited"] <= 3  # 20% per handler and product line, at least one
    with Session(world.engine) as session:
        invited = session.exec(select(SurveyInvitation)).all()
    assert len(invited) == result["invited"] and {i.reason for i in invited} == {"periodic"}
    again = asyncio.run(satisfaction_survey())  # the rest of the population; no case is invited twice
    assert again["closed"] == 3 - result["invited"]
    with Session(world.engine) as session:
        assert len(session.exec(select(SurveyInvitation)).all()) == result["invited"] + again["invited"] <= 3

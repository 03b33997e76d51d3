"""The SLA watcher and supervisors' escalation decisions, on a real database."""

from __future__ import annotations

import itertools
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event
from sqlmodel import Session, col, select

import tasks.escalations
from claimflow.db import session_scope
from models.otp import code_at
from models.tables import Approval, Escalation, Event, Outbox, Staff
from tasks.audit import verify_cases
from tasks.cases import append_event
from tasks.escalations import decide_escalation, escalation_view, watch_pass
from tasks.outbox import enqueue
from tests.tasks.test_cases import rewind_ids, table_rows

REVIEW_DUE = datetime(2026, 3, 5, 16, 0, tzinfo=UTC)  # 3 working days after Monday 2 March 2026 (Shanghai)


def _watch(world, at: datetime):
    with session_scope(world.engine) as session:
        return watch_pass(session, now=at)


def _escalations(world) -> list[Escalation]:
    with Session(world.engine) as session:
        return list(session.exec(select(Escalation).order_by(col(Escalation.id))))


def _decide(world, escalation_id: int, who: str, at: datetime, **answer):
    with session_scope(world.engine) as session:
        key = escalation_view(session, escalation_id=escalation_id).key
    code = answer.pop("code", None) or code_at(world.secrets[who], at)
    with session_scope(world.engine) as session:
        return decide_escalation(
            session,
            world.desk,
            escalation_id=escalation_id,
            key=key,
            answer={"staff": who, "approval_code": code, **answer},
            now=at,
        )


def _handler(world, case) -> str:
    with Session(world.engine) as session:
        return session.get(Staff, world.case(case).handler_id).username


def test_reminders_then_breach_then_the_manager_when_nobody_decides(world) -> None:
    case = world.file(product_line="motor")
    assert _watch(world, REVIEW_DUE - timedelta(days=3)).steps_checked == 0
    half = _watch(world, datetime(2026, 3, 4, 4, 0, tzinfo=UTC))
    assert [r[2] for r in half.reminders] == [0.5]
    assert _watch(world, datetime(2026, 3, 4, 4, 0, tzinfo=UTC)).steps_checked == 0  # nothing twice
    breach = _watch(world, REVIEW_DUE + timedelta(minutes=1))
    assert [r[2] for r in breach.reminders] == [0.75]
    [first] = _escalations(world)
    assert breach.escalations == [first.id]
    assert (first.level, first.role) == (1, "supervisor")
    assert first.decide_by == datetime(2026, 3, 6, 16, 0, tzinfo=UTC)  # one working day later
    assert "staff_breach_escalation" in world.outbox()
    assert _watch(world, REVIEW_DUE + timedelta(hours=3)).steps_checked == 0
    manager = _watch(world, first.decide_by + timedelta(minutes=1))
    first, second = _escalations(world)
    assert (second.level, second.role) == (2, "manager")
    assert first.decision == "superseded"
    assert manager.lines == [f"{case.number} review: breached, escalated to level 2 (manager)"]
    # the superseded level-1 run can no longer decide; the manager can
    assert _decide(world, first.id, "zhao.min", first.decide_by + timedelta(hours=1), decision="take_over").stale
    assert (
        "needs a manager"
        in _decide(world, second.id, "zhao.min", first.decide_by + timedelta(hours=1), decision="take_over").refused
    )
    assert _decide(
        world,
        second.id,
        "zhou.qiang",
        first.decide_by + timedelta(hours=2),
        decision="reassign",
        reassign_to="wang.fang" if _handler(world, case) == "li.wei" else "li.wei",
        reason="load",
    ).applied


def test_a_supervisor_extends_and_the_customer_is_told(world) -> None:
    case = world.file(product_line="motor")
    _watch(world, REVIEW_DUE + timedelta(minutes=1))
    [escalation] = _escalations(world)
    at = REVIEW_DUE + timedelta(hours=1)
    handler = _handler(world, case)
    refused = _decide(world, escalation.id, handler, at, decision="extend", reason="assessor")
    assert refused.refused == f"{handler} is a handler; this escalation decision needs a manager or supervisor"
    assert "states its reason" in _decide(world, escalation.id, "zhao.min", at, decision="extend").refused
    done = _decide(
        world,
        escalation.id,
        "zhao.min",
        at + timedelta(minutes=2),
        decision="extend",
        reason="The assessor's report is due on Monday",
    )
    assert done.applied
    review = world.step(case, "review")
    assert review.due_at == datetime(2026, 3, 9, 16, 0, tzinfo=UTC)  # Friday 6 and Monday 9 March
    assert review.extensions == ["supervisor-extension"]
    assert review.next_check_at is not None and review.next_check_at > at
    with Session(world.engine) as session:
        approval = session.exec(select(Approval).where(Approval.subject == "escalation")).one()
        approver = session.get(Staff, approval.approver_id).username
        notice = session.exec(select(Outbox).where(Outbox.template == "extension_notice")).one()
    assert (approval.decision, approver) == ("approved", "zhao.min")
    assert approval.requested_by_id != approval.approver_id
    assert notice.context["due_at"].startswith("2026-03-09T16:00")
    assert "escalation_decided" in world.events(case)
    # a decided escalation does not go to the manager
    assert _watch(world, datetime(2026, 3, 6, 16, 1, tzinfo=UTC)).escalations == []


def test_the_supervisor_takes_over(world) -> None:
    case = world.file(product_line="motor")
    _watch(world, REVIEW_DUE + timedelta(minutes=1))
    [escalation] = _escalations(world)
    assert _decide(world, escalation.id, "zhao.min", REVIEW_DUE + timedelta(hours=1), decision="take_over").applied
    assert world.step(case, "review").assignee_id == world.case(case).handler_id
    with Session(world.engine) as session:
        assert session.get(Staff, world.case(case).handler_id).username == "zhao.min"


def test_the_watcher_looks_only_at_what_is_due(world) -> None:
    for _ in range(5):
        world.file(product_line="motor")
    world.now += timedelta(days=1)
    world.file(product_line="motor")  # filed a day later: its reminders come later
    report = _watch(world, datetime(2026, 3, 4, 4, 0, tzinfo=UTC))
    assert report.steps_checked == 5


def test_an_escalation_is_decided_once(world) -> None:
    case = world.file(product_line="motor")
    _watch(world, REVIEW_DUE + timedelta(minutes=1))
    [escalation] = _escalations(world)
    assert _decide(world, escalation.id, "zhao.min", REVIEW_DUE + timedelta(hours=1), decision="take_over").applied
    world.step(case, "review")
    # zhao.min now handles it; if it breaches again after an extension, she cannot approve her own case
    with session_scope(world.engine) as session:
        refused = decide_escalation(
            session,
            world.desk,
            escalation_id=escalation.id,
            key="escalation-1-1",
            answer={"staff": "zhao.min"},
            now=REVIEW_DUE + timedelta(hours=2),
        )
    assert refused.stale  # an escalation is decided once


# --- one pass over many steps ---------------------------------------------------------------------------------


def _expected(world, at: datetime) -> dict[int, tuple]:
    """What the pure rule says each due step's pass must record at ``at`` (steps whose check has come)."""
    from models.tables import Step
    from models.watch import Schedule, what_is_due

    expected = {}
    with Session(world.engine) as session:
        for step in session.exec(select(Step).where(Step.status == "open", col(Step.next_check_at) <= at)):
            last = session.exec(
                select(Escalation).where(Escalation.step_id == step.id).order_by(col(Escalation.level).desc())
            ).first()
            outcome = what_is_due(
                Schedule.from_json(step.schedule),
                reminders_done=step.reminders_done,
                escalation_level=step.escalation_level,
                now=at,
                last_escalation_decided=last is not None and last.decision is not None,
            )
            expected[step.id] = (
                [r.fraction for r in outcome.reminders],
                [e.level for e in outcome.escalations],
                (outcome.reminders_done, outcome.escalation_level, outcome.next_check_at),
            )
    return expected


def test_one_pass_over_steps_in_different_states_records_each_as_the_rule_says(world) -> None:
    from models.tables import Step
    from tasks.audit import verify_cases

    first = world.file(product_line="motor")
    _watch(world, REVIEW_DUE + timedelta(minutes=1))  # first: reminders and the supervisor (undecided)
    world.now += timedelta(days=1)
    second = world.file(product_line="motor")
    world.now += timedelta(days=2)
    third = world.file(product_line="motor")
    at = datetime(2026, 3, 6, 16, 1, tzinfo=UTC)  # first: the manager is due; second: its deadline passed
    expected = _expected(world, at)
    assert len(expected) >= 2
    before = {e.id for e in _escalations(world)}
    report = _watch(world, at)
    assert report.steps_checked == len(expected)
    with Session(world.engine) as session:
        for step_id, (_reminders, levels, progress) in expected.items():
            step = session.get(Step, step_id)
            assert (step.reminders_done, step.escalation_level, step.next_check_at) == progress
            raised = session.exec(
                select(Escalation).where(Escalation.step_id == step_id, col(Escalation.id).not_in(before))
            ).all()
            assert sorted(e.level for e in raised) == levels
            ladder = session.exec(select(Escalation).where(Escalation.step_id == step_id)).all()
            undecided = [e.level for e in ladder if e.decision is None]
            assert undecided == ([max(e.level for e in ladder)] if ladder else [])  # the rest superseded
        assert not verify_cases(session).breaks
    assert sorted(r[2] for r in report.reminders) == sorted(f for r, _, _ in expected.values() for f in r)
    assert len(report.escalations) == sum(len(levels) for _, levels, _ in expected.values())
    assert world.events(first).count("escalated") == 2
    assert "escalated" in world.events(second)
    assert world.step(third, "review").escalation_level == 0
    assert _watch(world, at).steps_checked == 0  # nothing twice


def test_a_pass_reads_cases_staff_and_escalations_once_whatever_is_due(world) -> None:
    reads: list[str] = []

    def count(_conn, _cursor, statement: str, *_args) -> None:
        head = statement.lstrip().upper()
        if head.startswith("SELECT") and any(f"FROM {t}" in head for t in ('"CASE"', "STAFF", "ESCALATION")):
            reads.append(statement)

    def reads_in_a_pass(at: datetime) -> tuple[int, int]:
        reads.clear()
        event.listen(world.engine, "before_cursor_execute", count)
        try:
            checked = _watch(world, at).steps_checked
        finally:
            event.remove(world.engine, "before_cursor_execute", count)
        return checked, len(reads)

    world.file(product_line="motor")
    one = reads_in_a_pass(datetime(2026, 3, 4, 4, 0, tzinfo=UTC))
    for _ in range(4):
        world.file(product_line="motor")
    five = reads_in_a_pass(REVIEW_DUE + timedelta(minutes=1))
    assert (one[0], five[0]) == (1, 5)
    assert five[1] == one[1] <= 3


# --- a batched pass writes what the per-row path writes ---------------------------------------------------------

WRITTEN = ("event", "outbox", "escalation", "step")


def _one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pass writing each event and each message on its own, through ``append_event`` and ``enqueue``, each
    write waited for."""

    def append_each(session, events, *, now, tips=None):
        for e in events:
            append_event(session, case=e.case, actor=e.actor, type=e.type, data=e.data, now=now)

    def enqueue_each(session, prepared, *, now, actor="system"):
        for m in prepared.looked_up.messages:
            enqueue(session, template=m.template, recipient=m.recipient, context=m.context, now=now, case=m.case,
                    idempotency_key=m.idempotency_key, language=m.language, actor=actor)  # fmt: skip

    monkeypatch.setattr(tasks.escalations, "deferred_writes", lambda session: nullcontext())
    monkeypatch.setattr(tasks.escalations, "append_events", append_each)
    monkeypatch.setattr(tasks.escalations, "queue_messages", enqueue_each)


def _steps_in_every_state(world) -> datetime:
    """Five cases; returns the time of a pass that meets, in the order of their checks: both levels at once
    (never watched before), a breach, a first reminder, and the manager (supervisor undecided); and one case
    with nothing due yet."""
    world.file(product_line="motor")
    _watch(world, REVIEW_DUE + timedelta(minutes=1))  # reminders and the supervisor
    for filed in (-timedelta(days=4), -timedelta(days=3), -timedelta(days=2), timedelta(hours=1)):
        world.now = REVIEW_DUE + filed
        world.file(product_line="motor")
    return datetime(2026, 3, 6, 16, 1, tzinfo=UTC)


def test_a_batched_pass_writes_what_the_per_row_path_writes(world, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _steps_in_every_state(world)

    def same_run_keys() -> None:  # random by design: the same sequence for both ways of writing
        keys = (f"{n:032x}" for n in itertools.count(1))
        monkeypatch.setattr("tasks.escalations.new_run_key", lambda: next(keys))

    same_run_keys()
    with monkeypatch.context() as patched, Session(world.engine) as session:
        _one_at_a_time(patched)
        per_row = watch_pass(session, now=at)
        expected = table_rows(session, *WRITTEN)
        session.rollback()
        rewind_ids(session, *WRITTEN)
    same_run_keys()
    batched = _watch(world, at)
    with Session(world.engine) as session:
        assert table_rows(session, *WRITTEN) == expected
        assert not verify_cases(session).breaks
    assert batched == per_row
    assert batched.steps_checked == 4
    assert [r[2] for r in batched.reminders] == [0.5, 0.75, 0.5, 0.75, 0.5]
    escalations = _escalations(world)
    assert [(e.level, e.decision) for e in escalations] == [
        (1, "superseded"),  # the first case's supervisor, from the earlier pass
        (1, "superseded"), (2, None),  # both levels at once: the lower one is superseded as it is raised
        (1, None),  # the breach
        (2, None),  # the first case's manager
    ]  # fmt: skip
    assert batched.escalations == [e.id for e in escalations[1:]]
    with Session(world.engine) as session:
        keys = {o.idempotency_key for o in session.exec(select(Outbox))}
    assert {f"escalation:{e.id}" for e in escalations} <= keys


def test_a_repeated_pass_writes_nothing(world) -> None:
    at = _steps_in_every_state(world)
    assert _watch(world, at).steps_checked == 4
    with Session(world.engine) as session:
        written = table_rows(session, *WRITTEN)
    again = _watch(world, at)
    assert (again.steps_checked, again.reminders, again.escalations, again.lines) == (0, [], [], [])
    with Session(world.engine) as session:
        assert table_rows(session, *WRITTEN) == written


def test_the_statements_of_a_pass_do_not_grow_with_what_is_due(world) -> None:
    statements: list[str] = []

    def count(_conn, _cursor, statement: str, *_args) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            statements.append(statement)

    def statements_in_a_pass(at: datetime) -> tuple[int, int, int]:
        statements.clear()
        event.listen(world.engine, "before_cursor_execute", count)
        try:
            report = _watch(world, at)
        finally:
            event.remove(world.engine, "before_cursor_execute", count)
        return report.steps_checked, len(report.escalations), len(statements)

    world.file(product_line="motor")
    one = statements_in_a_pass(REVIEW_DUE + timedelta(minutes=1))
    for _ in range(6):
        world.file(product_line="motor")
    seven = statements_in_a_pass(REVIEW_DUE + timedelta(minutes=1))
    assert (one[:2], seven[:2]) == ((1, 1), (6, 6))
    assert seven[2] == one[2] <= 12


# --- the watcher beside other writers of the same case (PostgreSQL's row locks) ------------------------------


# SQLite runs one writer at a time (BEGIN IMMEDIATE): there is no row lock to race for, so these run on PostgreSQL
POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@POSTGRES_ONLY
def test_a_due_step_whose_case_someone_holds_waits_for_the_next_pass(world) -> None:
    """A person deciding on the case holds its row: the watcher skips the step instead of racing them for the
    case's next event, and takes it on the pass after they commit."""
    from concurrent.futures import ThreadPoolExecutor

    from tasks.cases import get_case

    busy, free = world.file(product_line="motor"), world.file(product_line="motor")
    at = REVIEW_DUE + timedelta(minutes=1)
    with ThreadPoolExecutor(1) as pool, Session(world.engine) as person:  # the person's rollback, then the pool
        held = get_case(person, busy.number, for_update=True)
        append_event(person, case=held, actor="li.wei", type="note", data={"text": "calling the garage"}, now=at)
        # in a thread: a pass that waited on the person would otherwise hang the test (it fails after 30 s)
        report = pool.submit(_watch, world, at).result(timeout=30)
        assert {number for number, *_ in report.reminders} == {free.number}
        person.commit()
    later = _watch(world, at + timedelta(minutes=1))
    assert {number for number, *_ in later.reminders} == {busy.number}
    with Session(world.engine) as session:
        assert not verify_cases(session).breaks


@POSTGRES_ONLY
def test_a_decision_and_a_watcher_pass_on_one_case_at_once_both_land(world) -> None:
    """The supervisor decides the level-1 escalation while a pass raises level 2 on the same step: the two
    take the case's row in turn (no deadlock, no broken chain), whichever comes first."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    case = world.file(product_line="motor")
    _watch(world, REVIEW_DUE + timedelta(minutes=1))
    [first] = _escalations(world)
    barrier = threading.Barrier(2)
    later = first.decide_by + timedelta(minutes=1)

    def decide() -> object:
        barrier.wait()
        return _decide(world, first.id, "zhao.min", later, decision="extend", reason="Assessor's report due")

    def watch() -> object:
        barrier.wait()
        return _watch(world, later)

    with ThreadPoolExecutor(2) as pool:
        decided, watched = pool.submit(decide), pool.submit(watch)
        result, _ = decided.result(timeout=60), watched.result(timeout=60)
    escalations = [(e.level, e.decision) for e in _escalations(world)]
    if result.applied:  # the decision first: the deadline moved, so nothing was due for the manager
        assert escalations == [(1, "extend")]
    else:  # the pass first: the manager's escalation supersedes the supervisor's, whose answer comes too late
        assert result.stale and escalations == [(1, "superseded"), (2, None)]
    with Session(world.engine) as session:
        assert not verify_cases(session).breaks
        assert [e.type for e in session.exec(select(Event).where(Event.case_id == case.id))].count("escalated") == (
            1 if result.applied else 2
        )


# --- a breach after an extension, and one bad step among many ------------------------------------------------


def test_an_extended_step_that_breaches_again_is_escalated_again_and_the_pass_goes_on(world) -> None:
    """An extension restarts the step's ladder: when the new deadline passes too, the supervisor is called again
    (a new round of the ladder, not the first round's level 1 a second time), and other cases' steps in the same
    pass are watched as usual."""
    case = world.file(product_line="motor")
    _watch(world, REVIEW_DUE + timedelta(minutes=1))
    [first] = _escalations(world)
    at = REVIEW_DUE + timedelta(hours=1)
    assert _decide(world, first.id, "zhao.min", at, decision="extend", reason="The assessor's report is due").applied
    new_due = world.step(case, "review").due_at
    assert new_due == datetime(2026, 3, 9, 16, 0, tzinfo=UTC)
    world.now = REVIEW_DUE - timedelta(days=1)
    other = world.file(product_line="motor")  # due later: its reminder falls in the same pass as the new breach
    breach = _watch(world, new_due + timedelta(minutes=1))
    assert {number for number, *_ in breach.reminders} >= {other.number}
    assert f"{case.number} review: breached, escalated to level 1 (supervisor)" in breach.lines
    first, again = _escalations(world)
    assert (first.level, first.decision, again.level, again.decision) == (1, "extend", 1, None)
    assert breach.escalations == [again.id]
    assert world.step(case, "review").escalation_level == 1
    # the second round climbs to the manager when nobody decides, as the first round would have
    manager = _watch(world, again.decide_by + timedelta(minutes=1))
    assert f"{case.number} review: breached, escalated to level 2 (manager)" in manager.lines
    ladder = [(e.level, e.decision) for e in _escalations(world) if e.case_id == first.case_id]
    assert ladder == [(1, "extend"), (1, "superseded"), (2, None)]
    with Session(world.engine) as session:
        assert not verify_cases(session).breaks


def test_a_refused_extension_changes_nothing_on_the_step(world) -> None:
    """An extension the packs do not allow (here: the same named extension twice) is refused and leaves the step
    as it was: deadline, extensions, ladder; the next pass raises nothing twice."""
    case = world.file(product_line="motor")
    _watch(world, REVIEW_DUE + timedelta(minutes=1))
    [first] = _escalations(world)
    at = REVIEW_DUE + timedelta(hours=1)
    before = world.step(case, "review")
    refused = _decide(world, first.id, "zhao.min", at, decision="extend", extension="no-such-extension",
                      reason="Waiting for the police report")  # fmt: skip
    assert refused.refused and "does not move the deadline" in refused.refused
    after = world.step(case, "review")
    assert (after.due_at, after.extensions, after.escalation_level, after.next_check_at, after.schedule) == (
        before.due_at, before.extensions, before.escalation_level, before.next_check_at, before.schedule
    )  # fmt: skip
    assert "decision_refused" in world.events(case)
    assert _watch(world, at + timedelta(minutes=1)).escalations == []
    # the manager is still called when the supervisor's time passes undecided
    manager = _watch(world, first.decide_by + timedelta(minutes=1))
    assert manager.lines == [f"{case.number} review: breached, escalated to level 2 (manager)"]


@pytest.mark.parametrize("fault", ["schedule", "escalation"])
def test_one_step_that_cannot_be_watched_is_recorded_on_its_case_and_the_pass_goes_on(world, fault: str) -> None:
    """A step whose schedule cannot be read, or whose escalation the database refuses (a row someone else wrote),
    does not stop the pass: every other due step is watched, the failure is an event on that case (the step and
    the kind of fault, no personal data), the step is looked at again later, and the next pass goes on too."""
    from models.tables import Step

    broken, fine = world.file(product_line="motor"), world.file(product_line="motor")
    step_id = world.step(broken, "review").id
    with session_scope(world.engine) as session:
        step = session.get(Step, step_id)
        if fault == "schedule":
            step.schedule = {**step.schedule, "escalations": [{"level": "one", "role": "supervisor", "at": "soon"}]}
        else:  # an escalation of this step at level 1 in its current round, raised by someone else meanwhile
            session.add(Escalation(step_id=step_id, case_id=step.case_id, level=1, role="supervisor",
                                   reason="written by hand", raised_at=REVIEW_DUE, round=step.ladder_round))  # fmt: skip
        session.add(step)
    at = REVIEW_DUE + timedelta(minutes=1)
    report = _watch(world, at)
    assert {number for number, *_ in report.reminders} == {fine.number}
    assert world.step(fine, "review").escalation_level == 1
    [failure] = report.failures
    assert failure.startswith(f"{broken.number} review: not watched (")
    with Session(world.engine) as session:
        [failed] = session.exec(select(Event).where(Event.case_id == world.case(broken).id,
                                                    Event.type == "watch_failed")).all()  # fmt: skip
        assert failed.data["step"] == "review" and failed.data["error"]
        assert not {"张三", "zhang.san@example.com"} & set(str(failed.data).split("'"))
        assert not verify_cases(session).breaks
    retried = world.step(broken, "review").next_check_at
    assert retried is not None and retried > at  # looked at again later, not in every pass
    assert _watch(world, at + timedelta(minutes=1)).steps_checked == 0


@POSTGRES_ONLY
def test_one_approval_code_given_to_two_cases_at_the_same_moment_decides_one(world) -> None:
    """A supervisor's code is good once: sent to two escalations at the same instant (a replayed form, two tabs),
    one decision applies and the other is refused as already used, however the two interleave."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    world.file(product_line="motor"), world.file(product_line="motor")
    _watch(world, REVIEW_DUE + timedelta(minutes=1))
    first, second = _escalations(world)
    at = REVIEW_DUE + timedelta(hours=1)
    code = code_at(world.secrets["zhao.min"], at)
    barrier = threading.Barrier(2)

    def decide(escalation_id: int):
        barrier.wait()
        return _decide(world, escalation_id, "zhao.min", at, decision="take_over", code=code)

    with ThreadPoolExecutor(2) as pool:
        results = [f.result(timeout=60) for f in [pool.submit(decide, first.id), pool.submit(decide, second.id)]]
    assert sorted(r.applied for r in results) == [False, True]
    [refused] = [r for r in results if not r.applied]
    assert "already used" in refused.refused


def test_a_supervisor_cannot_extend_the_breach_of_a_step_they_hold(world) -> None:
    """A step assigned to a supervisor (a follow-up, a complaint review) breaches: that supervisor may not extend or
    take over its escalation (four eyes: the check compared the case's handler only); another supervisor may."""
    from models.tables import Step

    case = world.file(product_line="motor")
    with session_scope(world.engine) as session:
        step = session.get(Step, world.step(case, "review").id)
        step.assignee_id = session.exec(select(Staff).where(Staff.username == "zhao.min")).one().id
        session.add(step)
    _watch(world, REVIEW_DUE + timedelta(minutes=1))
    [escalation] = _escalations(world)
    at = REVIEW_DUE + timedelta(hours=1)
    refused = _decide(world, escalation.id, "zhao.min", at, decision="extend", reason="I need more time")
    assert refused.refused == "zhao.min holds the breached step and cannot decide its escalation (four eyes)"
    assert world.step(case, "review").due_at == REVIEW_DUE
    manager = _decide(world, escalation.id, "zhou.qiang", at + timedelta(minutes=2), decision="extend",
                      reason="Assessor's report due Monday")  # fmt: skip
    assert manager.applied

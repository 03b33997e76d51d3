"""The operators' workspace, kept current from the desk runner: each case's view published to its run.

``CaseViewPublisher`` runs beside the desk runner's poll loop (``DeskRunner(background=...)``, as ``claimflow up``
and ``claimflow runner`` start it): every ``CLAIMFLOW_CASE_VIEW_SECONDS`` it finds the cases with new events
(``tasks.caseview.changed_cases``) and publishes each one's artifact and run tags. It is not a flow run: a loop
every few seconds would fill the Runs page with housekeeping. Its first pass publishes every open case that has a
run, so a restarted runner shows the desk as it stands.

Events committed out of the order of their ids (two transactions in flight at once) are not missed: each pass
reads again the last ``OVERLAP`` event ids before its mark, and a case whose newest sequence was published already
is skipped.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import anyio
from sqlmodel import Session, col, select

from claimflow.settings import get_settings
from flows.common import transaction
from models.tables import Case, Department, Staff
from models.worklists import (
    UNASSIGNED_TITLE,
    artifact_key,
    render_breached,
    render_summary,
    render_worklist,
    team_title,
    words,
    worklist_title,
)
from tasks.cases import chain_tips
from tasks.caseview import Changed, Published, changed_cases, last_event_id, publish, snapshot
from tasks.worklists import desk_lists

logger = logging.getLogger("claimflow.workspace")
OVERLAP = 200
TAGS_REMEMBERED = 20_000


class CaseViewPublisher:
    """Publishes changed cases' views to their runs; ``loop`` is a desk runner background job."""

    def __init__(self, *, every: float | None = None, batch: int = 500, language: str | None = None) -> None:
        settings = get_settings()
        self.every = every if every is not None else settings.case_view_seconds
        self.batch = batch
        self.tz = ZoneInfo(settings.office_timezone)
        self.language = language or settings.default_language
        self.tags: dict[str, list[str]] = {}
        """Run id -> its tags as this publisher last set them (read from the server once per run)."""
        self.worklist_every = 60.0
        self.worklists: dict[str, str] = {}
        """Artifact key -> the text last written under it."""
        self.mark: int | None = None
        self.retry: set[int] = set()
        """Cases whose last publish failed (the server restarting): tried again in every pass until one succeeds."""
        self.awaiting: set[int] = set()
        """Open cases without a run yet (intake commits the case before its run is launched, the reconciler launches
        it later when the server was down, and a launch appends no event): published in the pass that finds their
        run, looked up together in one query per pass."""
        self.published: dict[int, int] = {}
        """Case id -> the newest event sequence published, for the cases in the last pass's window."""

    async def publish_changed(self, client: Any) -> Published:
        """One pass: the cases changed since the last one (the first pass: every open case with a run)."""
        if self.mark is None:
            mark = await transaction(last_event_id)
            todo, self.awaiting = await transaction(_open_cases)
        else:
            changed, mark = await transaction(changed_cases, after_event_id=max(0, self.mark - OVERLAP),
                                              limit=self.batch)  # fmt: skip
            todo = [c for c in changed if self.published.get(c.case_id, 0) < c.sequence]
            self.published = {c.case_id: max(c.sequence, self.published.get(c.case_id, 0)) for c in changed}
            mark = max(mark, self.mark)
            waiting = {c.case_id for c in todo}
            todo += [Changed(case_id, 0) for case_id in sorted(self.retry - waiting)]  # failed last time
            if self.awaiting:
                launched, gone = await transaction(_launched, case_ids=sorted(self.awaiting))
                self.awaiting -= set(launched) | gone
                queued = {c.case_id for c in todo}
                todo += [Changed(case_id, 0) for case_id in launched if case_id not in queued]
        result = Published()
        if len(self.tags) > TAGS_REMEMBERED:  # a long-running desk: forget, and read each run's tags once again
            self.tags.clear()
        for item in todo:
            case_id, sequence = item.case_id, item.sequence
            try:
                run_id, view, awaits_run = await transaction(_read, case_id=case_id, language=self.language)
                if awaits_run:  # filed, its run not launched yet: nothing to publish to until it is
                    self.awaiting.add(case_id)
                if run_id is not None:
                    self.tags[run_id] = await publish(client, run_id=run_id, view=view, now=datetime.now(UTC),
                                                      tz=self.tz, language=self.language,
                                                      known_tags=self.tags.get(run_id))  # fmt: skip
                    result.cases += 1
                self.published[case_id] = max(sequence, self.published.get(case_id, 0))
                self.retry.discard(case_id)
            except Exception as exc:  # one case never stops the pass; it is tried again in the next one
                self.published.pop(case_id, None)
                self.retry.add(case_id)
                self.tags.clear()  # read the runs' tags again: one may have changed under us
                result.failed.append(f"case {case_id}: {type(exc).__name__}")
        if result.failed:
            logger.warning("case views not published (tried again in the next pass): %s", "; ".join(result.failed))
        self.mark = mark
        return result

    async def publish_worklists(self, client: Any) -> int:
        """The worklists (per handler and per team), the supervisors' breached list and the desk summary, as keyed
        artifacts (``models.worklists``); a list whose text has not changed since the last pass is not written
        again. Returns how many were written."""
        from prefect.client.schemas.actions import ArtifactCreate

        now = datetime.now(UTC)
        day_start = now.astimezone(self.tz).replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
        lists = await transaction(desk_lists, ui=get_settings().resolved_ui_url, now=now, day_start=day_start)
        active = await transaction(_active_staff)
        texts: dict[str, tuple[str, str]] = {}
        for username, _team in active:
            mine = [r for r in lists.waiting if r.assignee == username]
            title = worklist_title(username, self.language)
            texts[artifact_key("worklist", username)] = (title, render_worklist(
                title, mine, now=now, tz=self.tz, language=self.language))  # fmt: skip
        for team in sorted({t for _, t in active if t} | {r.team for r in lists.waiting if r.team}):
            rows = [r for r in lists.waiting if r.team == team]
            title = team_title(team, self.language)
            texts[artifact_key("team", team)] = (title, render_worklist(
                title, rows, now=now, tz=self.tz, language=self.language))  # fmt: skip
        nobody = [r for r in lists.waiting if r.assignee is None]  # triage, and cases no handler had room for
        title = words(UNASSIGNED_TITLE, self.language)
        texts["desk-unassigned"] = (title, render_worklist(title, nobody, now=now, tz=self.tz, language=self.language))
        breached = [r for r in lists.waiting if (r.due_at is not None and r.due_at < now) or r.escalation_level]
        texts["desk-breached"] = (words("Breached steps and undecided escalations", self.language), render_breached(
            breached, lists.escalations, now=now, tz=self.tz, language=self.language))  # fmt: skip
        texts["desk-summary"] = (words("The desk at a glance", self.language), render_summary(
            lists.counts, now=now, tz=self.tz, language=self.language))  # fmt: skip
        written = 0
        for key, (description, text) in texts.items():
            if self.worklists.get(key) == text:
                continue
            await client.create_artifact(ArtifactCreate(key=key, type="markdown", description=description, data=text))
            self.worklists[key] = text
            written += 1
        return written

    async def loop(self, client: Any, stop: anyio.Event) -> None:
        """Publish every ``every`` seconds, and the worklists every ``worklist_every``, until ``stop``; a pass that
        fails (the server restarting) is logged and the next one tries again."""
        next_lists = 0.0
        while not stop.is_set():
            try:
                await self.publish_changed(client)
                if anyio.current_time() >= next_lists:
                    next_lists = anyio.current_time() + self.worklist_every
                    await self.publish_worklists(client)
            except Exception:
                logger.exception("publishing case views failed; trying again in %.0f s", self.every)
            with anyio.move_on_after(self.every):
                await stop.wait()


def _open_cases(session: Session) -> tuple[list[Changed], set[int]]:
    """Every open case with a run, with its last event's sequence; and the ids of the open cases without one."""
    rows = session.exec(
        select(Case.id, Case.flow_run_id).where(col(Case.closed_at).is_(None)).order_by(col(Case.id))
    ).all()
    ids = [int(case_id or 0) for case_id, run in rows if run is not None]
    tips = chain_tips(session, ids)
    without = {int(case_id or 0) for case_id, run in rows if run is None}
    return [Changed(case_id, tips[case_id].sequence if case_id in tips else 0) for case_id in ids], without


def _launched(session: Session, *, case_ids: list[int], chunk: int = 1000) -> tuple[list[int], set[int]]:
    """Of these cases without a run when last looked at: those that have one now, and those closed or gone."""
    launched: list[int] = []
    still: set[int] = set()
    for start in range(0, len(case_ids), chunk):
        part = case_ids[start : start + chunk]
        for case_id, run, closed in session.exec(
            select(Case.id, Case.flow_run_id, Case.closed_at).where(col(Case.id).in_(part))
        ):
            if closed is None and run is not None:
                launched.append(int(case_id or 0))
            elif closed is None:
                still.add(int(case_id or 0))
    return launched, set(case_ids) - still - set(launched)


def _read(session: Session, *, case_id: int, language: str) -> tuple[str | None, Any, bool]:
    """The case's run and view; the flag says it is open and waits for its run to be launched."""
    case = session.get(Case, case_id)
    if case is None or case.flow_run_id is None:
        return None, None, case is not None and case.closed_at is None
    return case.flow_run_id, snapshot(session, case_id=case_id, language=language), False


def _active_staff(session: Session) -> list[tuple[str, str | None]]:
    """(username, department code) of every active member of staff."""
    teams = {d.id: d.code for d in session.exec(select(Department))}
    return [(m.username, teams.get(m.department_id)) for m in session.exec(select(Staff).where(col(Staff.active)))]

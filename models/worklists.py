"""Worklists and the desk at a glance, as markdown artifacts of the Prefect UI (pure).

The desk runner refreshes them every minute (``flows.workspace``) under fixed keys, so each has a page of its
own on the UI's Artifacts page (``/artifacts/key/<key>``), newest version first:

- ``worklist-<user>``: what waits for one handler, nearest deadline first, each case linked to its run;
- ``team-<department>``: the same for a team;
- ``desk-breached``: for supervisors, the breached steps and the undecided escalations with their age;
- ``desk-summary``: the backlog by state and team, breached now, the oldest waiting case, messages dead-lettered
  today and cases filed in the last hour.

Only facts about cases (numbers, states, steps, times, staff usernames): no customer data. Times are in the
office's zone; nothing says "in 3 h", so a list changes only when the desk does (a new version is written only
then).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from models.caseview import _key_part, office_time

SHOWN = 200
"""Rows of a list at most; the rest is counted."""


@dataclass(frozen=True)
class WaitingRow:
    number: str
    kind: str
    status: str
    priority: str
    step: str
    form: str | None
    assignee: str | None
    team: str | None
    due_at: datetime | None
    escalation_level: int
    link: str


@dataclass(frozen=True)
class EscalationRow:
    number: str
    step: str
    level: int
    role: str
    raised_at: datetime
    link: str


@dataclass(frozen=True)
class DeskCounts:
    by_status: Mapping[str, int]
    by_team: Mapping[str, int]
    breached: int
    oldest_waiting: tuple[str, datetime] | None
    dead_today: int
    filed_last_hour: int
    mail_rejected_today: int = 0


def artifact_key(kind: str, name: str) -> str:
    """An artifact key Prefect takes (lower-case letters, digits and dashes): ``worklist-li-wei``."""
    return f"{kind}-{_key_part(name)}"


def _when(at: datetime | None, tz: ZoneInfo, language: str) -> str:
    return office_time(at, tz=tz, language=language) if at else "-"


def _age(raised: datetime, now: datetime) -> str:
    hours = int((now - raised).total_seconds() // 3600)
    return f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h"


def _more(rows: Sequence[object]) -> list[str]:
    return ["", f"... and {len(rows) - SHOWN} more"] if len(rows) > SHOWN else []


def render_worklist(title: str, rows: Sequence[WaitingRow], *, now: datetime, tz: ZoneInfo, language: str) -> str:
    """A worklist: the waiting cases, nearest deadline first (breached ones marked), each linked to its run."""
    lines = [f"# {title}", "", f"{len(rows)} waiting · times in {tz.key}", ""]
    if not rows:
        return "\n".join([*lines, "Nothing waits."]) + "\n"
    lines += ["| case | kind | priority | step | waiting for | assignee | due | |", "|---|---|---|---|---|---|---|---|"]
    for r in rows[:SHOWN]:
        late = "**breached**" if (r.due_at is not None and r.due_at < now) or r.escalation_level else ""
        lines.append(f"| [{r.number}]({r.link}) | {r.kind} | {r.priority} | {r.step} | {r.form or '-'} | "
                     f"{r.assignee or 'unassigned'} | {_when(r.due_at, tz, language)} | {late} |")  # fmt: skip
    return "\n".join([*lines, *_more(rows)]) + "\n"


def render_breached(
    breached: Sequence[WaitingRow], escalations: Sequence[EscalationRow], *, now: datetime, tz: ZoneInfo, language: str
) -> str:
    """For supervisors: the steps past their deadline, and the escalations nobody has decided, oldest first."""
    lines = ["# Breached steps and undecided escalations", "", f"times in {tz.key}", "",
             f"## Breached steps ({len(breached)})", ""]  # fmt: skip
    if breached:
        lines += ["| case | step | assignee | team | was due | escalated |", "|---|---|---|---|---|---|"]
        lines += [
            f"| [{r.number}]({r.link}) | {r.step} | {r.assignee or 'unassigned'} | {r.team or '-'} | "
            f"{_when(r.due_at, tz, language)} | level {r.escalation_level} |"
            for r in breached[:SHOWN]
        ]
        lines += _more(breached)
    else:
        lines.append("None.")
    lines += ["", f"## Undecided escalations ({len(escalations)})", ""]
    if escalations:
        lines += ["| escalation run | step | level | decided by | raised | age |", "|---|---|---|---|---|---|"]
        lines += [f"| [{e.number}]({e.link}) | {e.step} | {e.level} | {e.role} | {_when(e.raised_at, tz, language)} | "
                  f"{_age(e.raised_at, now)} |" for e in escalations[:SHOWN]]  # fmt: skip
        lines += _more(escalations)
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def _oldest(counts: DeskCounts, tz: ZoneInfo, language: str) -> str:
    if counts.oldest_waiting is None:
        return "-"
    number, since = counts.oldest_waiting
    return f"{number} since {_when(since, tz, language)}"


def render_summary(counts: DeskCounts, *, now: datetime, tz: ZoneInfo, language: str) -> str:
    """The desk at a glance."""
    lines = ["# The desk at a glance", "", f"times in {tz.key}", "",
             "| | |", "|---|---|", f"| open cases | {sum(counts.by_status.values())} |",
             f"| breached now | {counts.breached} |",
             f"| oldest waiting | {_oldest(counts, tz, language)} |",
             f"| messages dead-lettered today | {counts.dead_today} |",
             f"| cases filed in the last hour | {counts.filed_last_hour} |",
             f"| mails rejected today (claimflow mail list --status rejected) | {counts.mail_rejected_today} |",
             ""]  # fmt: skip
    lines += ["## Backlog by state", "", "| state | cases |", "|---|---|"]
    lines += [f"| {state} | {n} |" for state, n in sorted(counts.by_status.items())] or ["| - | 0 |"]
    lines += ["", "## Backlog by team", "", "| team | cases |", "|---|---|"]
    lines += [f"| {team} | {n} |" for team, n in sorted(counts.by_team.items())] or ["| - | 0 |"]
    return "\n".join(lines) + "\n"

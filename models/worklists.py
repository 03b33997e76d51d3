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


ZH: dict[str, str] = {
    "Waiting for {}": "{} 的待办", "Team {}: waiting cases": "{} 团队的待办",
    "{} waiting · times in {}": "待办 {} 件 · 时间为 {}",
    "Nothing waits.": "没有待办。", "case": "案件", "kind": "类型", "priority": "优先级", "step": "环节",
    "waiting for": "等待", "assignee": "负责人", "due": "截止", "**breached**": "**已超时**", "unassigned": "未分配",
    "... and {} more": "……另有 {} 件", "Breached steps and undecided escalations": "超时环节与未决升级",
    "times in {}": "时间为 {}", "Breached steps ({})": "超时环节（{}）", "team": "团队", "was due": "原截止",
    "escalated": "升级", "level {}": "第 {} 级", "None.": "无。", "Undecided escalations ({})": "未决升级（{}）",
    "escalation run": "升级流程", "level": "级别", "decided by": "决定人", "raised": "发起", "age": "已等待",
    "{} since {}": "{}，自 {}", "The desk at a glance": "服务台概览", "open cases": "未结案件",
    "breached now": "当前超时",
    "oldest waiting": "等待最久", "messages dead-lettered today": "今日投递失败的消息", "cases filed in the last hour":
    "近一小时受理的案件", "mails rejected today (claimflow mail list --status rejected)":
    "今日拒收的邮件（claimflow mail list --status rejected）", "Backlog by state": "按状态的积压",
    "Backlog by team": "按团队的积压",
    "Cases nobody holds: claims to sort (claimflow case triage) and cases no handler had room for":
    "无人负责的案件：待分拣的理赔（claimflow case triage）与暂无经办人可接手的案件",
    "state": "状态", "cases": "案件数", "{} d {} h": "{}天{}小时", "{} h": "{}小时",
}  # fmt: skip
"""The lists' words in Chinese; English is the key (``CLAIMFLOW_DEFAULT_LANGUAGE`` chooses)."""


def words(text: str, language: str, *values: object) -> str:
    """``text`` in the desk's language, with ``values`` put in its ``{}``."""
    return (ZH.get(text, text) if language == "zh-CN" else text).format(*values)


UNASSIGNED_TITLE = "Cases nobody holds: claims to sort (claimflow case triage) and cases no handler had room for"


def worklist_title(username: str, language: str) -> str:
    return words("Waiting for {}", language, username)


def team_title(team: str, language: str) -> str:
    return words("Team {}: waiting cases", language, team)


def artifact_key(kind: str, name: str) -> str:
    """An artifact key Prefect takes (lower-case letters, digits and dashes): ``worklist-li-wei``."""
    return f"{kind}-{_key_part(name)}"


def _when(at: datetime | None, tz: ZoneInfo, language: str) -> str:
    return office_time(at, tz=tz, language=language) if at else "-"


def _age(raised: datetime, now: datetime, language: str) -> str:
    hours = int((now - raised).total_seconds() // 3600)
    return words("{} d {} h", language, hours // 24, hours % 24) if hours >= 24 else words("{} h", language, hours)


def _more(rows: Sequence[object], language: str) -> list[str]:
    return ["", words("... and {} more", language, len(rows) - SHOWN)] if len(rows) > SHOWN else []


def _header(language: str, *names: str) -> list[str]:
    return ["| " + " | ".join(words(n, language) if n else "" for n in names) + " |", "|---" * len(names) + "|"]


def render_worklist(title: str, rows: Sequence[WaitingRow], *, now: datetime, tz: ZoneInfo, language: str) -> str:
    """A worklist: the waiting cases, nearest deadline first (breached ones marked), each linked to its run."""
    w = language
    lines = [f"# {title}", "", words("{} waiting · times in {}", w, len(rows), tz.key), ""]
    if not rows:
        return "\n".join([*lines, words("Nothing waits.", w)]) + "\n"
    lines += _header(w, "case", "kind", "priority", "step", "waiting for", "assignee", "due", "")
    for r in rows[:SHOWN]:
        late = words("**breached**", w) if (r.due_at is not None and r.due_at < now) or r.escalation_level else ""
        lines.append(f"| [{r.number}]({r.link}) | {r.kind} | {r.priority} | {r.step} | {r.form or '-'} | "
                     f"{r.assignee or words('unassigned', w)} | {_when(r.due_at, tz, w)} | {late} |")  # fmt: skip
    return "\n".join([*lines, *_more(rows, w)]) + "\n"


def render_breached(
    breached: Sequence[WaitingRow], escalations: Sequence[EscalationRow], *, now: datetime, tz: ZoneInfo, language: str
) -> str:
    """For supervisors: the steps past their deadline, and the escalations nobody has decided, oldest first."""
    w = language
    lines = ["# " + words("Breached steps and undecided escalations", w), "", words("times in {}", w, tz.key), "",
             "## " + words("Breached steps ({})", w, len(breached)), ""]  # fmt: skip
    if breached:
        lines += _header(w, "case", "step", "assignee", "team", "was due", "escalated")
        lines += [
            f"| [{r.number}]({r.link}) | {r.step} | {r.assignee or words('unassigned', w)} | {r.team or '-'} | "
            f"{_when(r.due_at, tz, w)} | {words('level {}', w, r.escalation_level)} |"
            for r in breached[:SHOWN]
        ]
        lines += _more(breached, w)
    else:
        lines.append(words("None.", w))
    lines += ["", "## " + words("Undecided escalations ({})", w, len(escalations)), ""]
    if escalations:
        lines += _header(w, "escalation run", "step", "level", "decided by", "raised", "age")
        lines += [f"| [{e.number}]({e.link}) | {e.step} | {e.level} | {e.role} | {_when(e.raised_at, tz, w)} | "
                  f"{_age(e.raised_at, now, w)} |" for e in escalations[:SHOWN]]  # fmt: skip
        lines += _more(escalations, w)
    else:
        lines.append(words("None.", w))
    return "\n".join(lines) + "\n"


def _oldest(counts: DeskCounts, tz: ZoneInfo, language: str) -> str:
    if counts.oldest_waiting is None:
        return "-"
    number, since = counts.oldest_waiting
    return words("{} since {}", language, number, _when(since, tz, language))


def render_summary(counts: DeskCounts, *, now: datetime, tz: ZoneInfo, language: str) -> str:
    """The desk at a glance."""
    w = language
    rows = [("open cases", sum(counts.by_status.values())), ("breached now", counts.breached),
            ("oldest waiting", _oldest(counts, tz, w)), ("messages dead-lettered today", counts.dead_today),
            ("cases filed in the last hour", counts.filed_last_hour),
            ("mails rejected today (claimflow mail list --status rejected)", counts.mail_rejected_today)]  # fmt: skip
    lines = ["# " + words("The desk at a glance", w), "", words("times in {}", w, tz.key), "", "| | |", "|---|---|"]
    lines += [f"| {words(name, w)} | {value} |" for name, value in rows] + [""]
    lines += ["## " + words("Backlog by state", w), "", *_header(w, "state", "cases")]
    lines += [f"| {state} | {n} |" for state, n in sorted(counts.by_status.items())] or ["| - | 0 |"]
    lines += ["", "## " + words("Backlog by team", w), "", *_header(w, "team", "cases")]
    lines += [f"| {team} | {n} |" for team, n in sorted(counts.by_team.items())] or ["| - | 0 |"]
    return "\n".join(lines) + "\n"

"""What the SLA watcher must do for one step at ``now``: pure, over the step's stored schedule.

When a step starts (or its clock resumes, or it is extended) its deadline is computed from the policy packs
and stored on the step as a *schedule*: the due time, the reminder points and the escalation ladder, each
with its time. The watcher then needs no policy and no calendar: it compares times. ``next_check_at`` is
the earliest time in the schedule not yet acted on, which is what the watcher's indexed query looks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from models.sla import Deadline


class ScheduledReminder(NamedTuple):
    """A reminder point: its fraction of the step's time and when it falls. (Named tuples: the watcher reads
    a thousand schedules a pass, and a tuple is made several times faster than a frozen dataclass.)"""

    fraction: float
    at: datetime


class ScheduledEscalation(NamedTuple):
    """A level of the escalation ladder: who is told, and when."""

    level: int
    role: str
    at: datetime


@dataclass(frozen=True)
class Schedule:
    due: datetime | None
    reminders: tuple[ScheduledReminder, ...]
    escalations: tuple[ScheduledEscalation, ...]
    rule: str

    def to_json(self) -> dict[str, Any]:
        return {
            "due": self.due.isoformat() if self.due else None,
            "reminders": [{"fraction": r.fraction, "at": r.at.isoformat()} for r in self.reminders],
            "escalations": [{"level": e.level, "role": e.role, "at": e.at.isoformat()} for e in self.escalations],
            "rule": self.rule,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Schedule:
        parse = datetime.fromisoformat
        due = data.get("due")
        return cls(
            due=parse(due) if due else None,
            reminders=tuple([ScheduledReminder(float(r["fraction"]), parse(r["at"]))
                             for r in data.get("reminders", ())]),
            escalations=tuple([ScheduledEscalation(int(e["level"]), str(e["role"]), parse(e["at"]))
                               for e in data.get("escalations", ())]),
            rule=str(data.get("rule", "")),
        )  # fmt: skip


NO_SCHEDULE = Schedule(due=None, reminders=(), escalations=(), rule="no deadline applies")


def schedule_from(deadline: Deadline) -> Schedule:
    """The stored form of a deadline: only the points that have a time (a stopped clock has none)."""
    return Schedule(
        due=deadline.due,
        reminders=tuple(ScheduledReminder(r.fraction, r.at) for r in deadline.reminders if r.at is not None),
        escalations=tuple(ScheduledEscalation(e.level, e.role, e.at) for e in deadline.escalations if e.at is not None),
        rule=deadline.rule.text,
    )


@dataclass(frozen=True)
class WatchOutcome:
    """What to record now, and when to look again."""

    reminders: tuple[ScheduledReminder, ...]
    escalations: tuple[ScheduledEscalation, ...]
    reminders_done: int
    escalation_level: int
    next_check_at: datetime | None


def what_is_due(
    schedule: Schedule,
    *,
    reminders_done: int,
    escalation_level: int,
    now: datetime,
    last_escalation_decided: bool = False,
) -> WatchOutcome:
    """The reminders and escalation levels that have come due at ``now`` and are not yet recorded.

    Args:
        schedule: the step's stored schedule.
        reminders_done: how many reminder points have been recorded already.
        escalation_level: the highest escalation level raised already (0: none).
        now: the watcher's time.
        last_escalation_decided: the highest escalation raised has been decided; the ladder stops there
            (a supervisor who reassigned or took over the step has acted: no manager alert follows).

    Returns:
        What to record now (every point passed since the last pass, in order) and the next time to look.
    """
    reminders = schedule.reminders
    new_reminders = [r for r in reminders[reminders_done:] if r.at <= now]
    done = reminders_done + len(new_reminders)
    pending = [r.at for r in reminders[done:]]
    new_escalations: list[ScheduledEscalation] = []
    level = escalation_level
    if not (escalation_level > 0 and last_escalation_decided):
        for escalation in schedule.escalations:
            if escalation.level <= escalation_level:
                continue
            if escalation.at <= now:
                new_escalations.append(escalation)
                level = max(level, escalation.level)
            else:
                pending.append(escalation.at)
    return WatchOutcome(
        reminders=tuple(new_reminders),
        escalations=tuple(new_escalations),
        reminders_done=done,
        escalation_level=level,
        next_check_at=min(pending, default=None),
    )


def progress_after_reschedule(schedule: Schedule, *, now: datetime) -> tuple[int, datetime | None]:
    """After an extension or a resumed clock: reminder points already past count as done (they are not
    sent again), the escalation ladder starts afresh, and the next check is the next point ahead."""
    done = sum(1 for r in schedule.reminders if r.at <= now)
    outcome = what_is_due(schedule, reminders_done=done, escalation_level=0, now=now)
    first_escalation = min((e.at for e in schedule.escalations), default=None)
    candidates = [t for t in (outcome.next_check_at, first_escalation) if t is not None]
    return done, min(candidates, default=None)


def escalation_run_name(case_number: str, *, level: int, ladder_round: int) -> str:
    """The name of an escalation's flow run: the case and the level, and the round from the second breach of the
    same step on (``CLM-2026-000001-escalation-1``, ``CLM-2026-000001-escalation-1-round-2``)."""
    name = f"{case_number}-escalation-{level}"
    return f"{name}-round-{ladder_round + 1}" if ladder_round else name


def at_most(lines: list[str], limit: int) -> list[str]:
    """The first ``limit`` lines and, when there are more, one line saying how many were left out: what a
    run's log shows of a watcher pass (a burst after an outage can be thousands of lines; each case's own
    events record every reminder and escalation)."""
    if len(lines) <= limit:
        return list(lines)
    return [*lines[:limit], f"... and {len(lines) - limit} more (each case's events list them)"]

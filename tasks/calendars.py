"""Importing the year's official CN calendar (the State Council's notice) and re-timing what was assumed.

Until a year's notice is in ``policies/data/cn.yaml``, a deadline reaching into it is counted on the fallback
(weekends and the statutory holidays) and its rule says ``[assumed calendar ...]``. ``import_years`` validates a
notice file (``models.calendar.year_problems``) and keeps it in ``<data dir>/calendars/CN.yaml``, which
``tasks.deadlines.desk_rules`` reads; ``retime_assumed`` counts every open step whose due time was assumed again on
the official calendar: a step whose due time moved gets a ``step_retimed`` event and its assignee is told.
A running desk runner reads the file when it is restarted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import yaml
from sqlmodel import Session, col, select

from claimflow.settings import Settings
from models.calendar import LAST_YEAR, parse_site_years, region_calendar
from models.errors import InvalidInput
from models.tables import Case, Staff, Step
from tasks.cases import append_event
from tasks.deadlines import site_calendar_path
from tasks.outbox import enqueue
from tasks.workflow import OPEN, Desk, _apply_schedule, _schedule, staff_links_for

ASSUMED = "[assumed calendar"


def import_years(settings: Settings, text: str) -> list[int]:
    """Validate the years in ``text`` and add them to the desk's calendar file; returns the years now imported.

    Raises:
        InvalidInput: a year that does not hold, one the shipped data already has, or one that leaves a gap after
            the official years.
    """
    path = site_calendar_path(settings)
    kept = parse_site_years(path.read_text(encoding="utf-8")) if path.exists() else {}
    shipped = region_calendar("CN")
    known_last = max([shipped.official_last_year, *kept])
    for year in sorted(_year_numbers(text)):  # which years first: a wrong year is named before its details
        if year <= shipped.official_last_year:
            raise InvalidInput(f"{year} is already official (the shipped data covers up to "
                               f"{shipped.official_last_year})")  # fmt: skip
        if year > known_last + 1 and year not in kept:
            raise InvalidInput(f"{year}: import {known_last + 1} first (the official years run without a gap)")
        if year > LAST_YEAR:
            raise InvalidInput(f"{year}: the calendar ends in {LAST_YEAR}")
        known_last = max(known_last, year)
    new = parse_site_years(text)
    if not new:
        raise InvalidInput("the calendar file names no year")
    merged = {**kept, **new}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump({"region": "CN", "years": merged}, allow_unicode=True, sort_keys=True),
                         encoding="utf-8")  # fmt: skip
    temporary.replace(path)
    return sorted(merged)


def _year_numbers(text: str) -> list[int]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return []  # parse_site_years names what is wrong
    years = data.get("years") if isinstance(data, dict) else None
    return [year for year in years if isinstance(year, int)] if isinstance(years, dict) else []


@dataclass(frozen=True)
class Retimed:
    number: str
    step: str
    previous: datetime | None
    due: datetime | None


def retime_assumed(session: Session, desk: Desk, *, now: datetime) -> list[Retimed]:
    """Count again every open step whose due time was assumed; ``desk`` is built after the import. The caller
    commits. Returns the steps whose due time moved."""
    moved: list[Retimed] = []
    steps = session.exec(
        select(Step).where(col(Step.status).in_(OPEN), col(Step.policy_rule).contains(ASSUMED)).order_by(col(Step.id))
    ).all()
    for step in steps:
        case = session.get(Case, step.case_id, with_for_update=True)
        if case is None:
            continue
        previous = step.due_at
        schedule = _schedule(session, desk, case=case, step=step, now=now)
        _apply_schedule(step, schedule, now=now)
        session.add(step)
        if schedule.due == previous:
            continue
        moved.append(Retimed(case.number, step.name, previous, schedule.due))
        append_event(session, case=case, actor="system", type="step_retimed",
                     data={"step": step.name, "from": previous, "to": schedule.due, "rule": step.policy_rule},
                     now=now)  # fmt: skip
        assignee = session.get(Staff, step.assignee_id) if step.assignee_id else None
        if assignee is not None and schedule.due is not None and previous is not None:
            enqueue(session, template="staff_step_retimed", recipient=f"staff:{assignee.username}",
                    context={"case_number": case.number, "step": step.name, "handler_name": assignee.name,
                             "previous_due_at": previous, "due_at": schedule.due,
                             "case_url": staff_links_for(case.number, assignee.username)["case_url"]},
                    idempotency_key=f"retimed:{step.id}:{schedule.due.isoformat()}", now=now, case=case)  # fmt: skip
    return moved

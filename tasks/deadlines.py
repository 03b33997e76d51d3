"""The desk's deadline rules in force: which packs and which calendar apply to a case.

Built once per process from the settings; the computation itself is the pure ``models.sla``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from claimflow.settings import Settings
from models.calendar import Calendar, NoOfficialCalendar, region_calendar
from models.clock import Pause
from models.sla import NoRule, Pack, load_pack, strictest
from models.watch import NO_SCHEDULE, Schedule, schedule_from


@dataclass(frozen=True)
class DeskRules:
    """The house pack, the regulators' packs per jurisdiction, and the office calendar."""

    house: Pack
    regulators: dict[str, tuple[Pack, ...]]
    calendar: Calendar
    fallback_calendar: Calendar

    def packs_for(self, jurisdiction: str) -> tuple[Pack, ...]:
        return (self.house, *self.regulators.get(jurisdiction.upper(), ()))

    def schedule(
        self,
        *,
        kind: str,
        step: str,
        jurisdiction: str,
        channel: str | None,
        start: datetime,
        pauses: Sequence[Pause] = (),
        extensions: Sequence[str] = (),
        ladder_packs: Sequence[Pack] = (),
    ) -> Schedule:
        """The step's deadline, reminders and escalations under every pack that applies (strictest wins).

        A step no pack gives a number for has no deadline. Where the period reaches a year without official
        calendar data, the fallback calendar (weekends and statutory holidays) is used and the rule says so: never
        a silent guess, and never a case that cannot move because next year's notice is not yet published.
        """
        packs = self.packs_for(jurisdiction)
        arguments = {
            "kind": kind,
            "step": step,
            "start": start,
            "channel": channel,
            "pauses": pauses,
            "extensions": extensions,
            "ladder_packs": ladder_packs,
        }
        try:
            deadline = strictest(packs, calendar=self.calendar, **arguments)  # type: ignore[arg-type]
        except NoRule:
            return NO_SCHEDULE
        except NoOfficialCalendar as missing:
            deadline = strictest(packs, calendar=self.fallback_calendar, **arguments)  # type: ignore[arg-type]
            schedule = schedule_from(deadline)
            return Schedule(
                schedule.due,
                schedule.reminders,
                schedule.escalations,
                f"{schedule.rule} [assumed calendar, weekends and statutory holidays only: {missing}]",
            )
        return schedule_from(deadline)


@lru_cache(maxsize=4)
def _rules(
    house: str, regulators: tuple[tuple[str, tuple[str, ...]], ...], region: str, tz: str, site_years: str = ""
) -> DeskRules:
    return DeskRules(
        house=load_pack(house),
        regulators={j: tuple(load_pack(name) for name in names) for j, names in regulators},
        calendar=region_calendar(region, timezone=tz, site_years=site_years),
        fallback_calendar=region_calendar(region, timezone=tz, unknown_years="weekends", site_years=site_years),
    )


def site_calendar_path(settings: Settings) -> Path:
    """Where ``claimflow calendar import`` keeps the official years the desk added (China's next notice)."""
    return settings.data_dir / "calendars" / "CN.yaml"


def desk_rules(settings: Settings) -> DeskRules:
    """The rules for these settings (loaded once per distinct configuration and imported calendar)."""
    regulators = tuple(sorted((j.upper(), tuple(names)) for j, names in settings.jurisdiction_packs.items()))
    site = site_calendar_path(settings)
    site_years = site.read_text(encoding="utf-8") if site.exists() else ""
    return _rules(settings.policy_pack, regulators, settings.region, settings.office_timezone, site_years)

"""SLA policy packs and due-time computation.

A policy pack (YAML in ``policies/``) says, for each case kind and step: the limit (value and unit, per
channel where it depends on the channel), the event that starts the clock, the states that pause it, the
events that restart it, reminder points, the escalation ladder, extension rules, repeating notices,
duties that carry no number, and — for every number — the text it comes from. Packs are validated with
pydantic; a broken pack is reported with the YAML key path that is wrong.

``due`` turns one rule into a ``Deadline`` (due time, reminder times, escalation times and the rule that
set them); ``strictest`` applies several packs to one case (the house standard and a regulator's) and
keeps the earliest due time, saying which rule set it. Both are pure: ``start``, pauses and calendars
are arguments; nothing here reads the clock or the database.

Case kinds are ``claim``, ``complaint`` and ``inquiry``. Steps are ``intake``, ``review``,
``investigation``, ``resolution``, ``payment``, ``feedback``, plus ``answer`` (answering an inquiry,
whose limit depends on the channel), ``advance_payment`` (paying the amount already certain while
the rest is still being assessed, PRC Insurance Law art. 25), and ``follow_up`` / ``complaint_review`` (a
supervisor calling back a customer who was not satisfied, after the case was closed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from models.calendar import Calendar, UnknownYears, region_calendar
from models.clock import (
    Pause,
    Unit,
    advance,
    at_fraction,
    clock_for,
    due_time,
    exact,
    units_to_us,
)
from models.enums import CaseKind, Channel
from models.errors import InvalidInput


class StepName(StrEnum):
    """Steps a case goes through (``answer`` and ``advance_payment`` as documented in the module)."""

    INTAKE = "intake"
    REVIEW = "review"
    INVESTIGATION = "investigation"
    RESOLUTION = "resolution"
    PAYMENT = "payment"
    ADVANCE_PAYMENT = "advance_payment"
    ANSWER = "answer"
    FEEDBACK = "feedback"
    FOLLOW_UP = "follow_up"
    COMPLAINT_REVIEW = "complaint_review"


class PolicyError(InvalidInput):
    """A policy pack that does not validate; the message starts with the YAML key path."""


class NoRule(InvalidInput):
    """No pack has a rule (with a number) for the kind, step and channel asked about."""


_Strict = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Amount(BaseModel):
    """A quantity of counted time, with the text it comes from."""

    model_config = _Strict

    value: float = Field(gt=0)
    unit: Unit
    source: str = Field(min_length=1)

    @property
    def text(self) -> str:
        """``3 working days``."""
        return self.unit.describe(self.value)


class Limit(Amount):
    """A limit on a step.

    ``roll`` applies to calendar days: whether a last day that is a rest day moves to the next working
    day. ``window`` marks a limit whose end is not a breach but closes an option (FCA summary resolution
    by the third business day): it has no escalation.
    """

    roll: bool = True
    window: bool = False


class Reminders(BaseModel):
    """Fractions of the limit at which the handler is reminded (0.5 = half the allowed time used)."""

    model_config = _Strict

    at: tuple[float, ...]
    source: str = Field(min_length=1)

    @field_validator("at")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        for fraction in value:
            if not 0 < fraction < 1:
                raise ValueError(f"reminder point {fraction} is not between 0 and 1")
        if list(value) != sorted(set(value)):
            raise ValueError("reminder points must be increasing and distinct")
        return value


class EscalationLevel(BaseModel):
    """One rung of the escalation ladder: who is alerted, at breach or a time after it."""

    model_config = _Strict

    level: int = Field(ge=1)
    role: str = Field(min_length=1)
    at: Literal["breach"] | None = None
    after: Amount | None = None
    condition: str | None = None
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_time(self) -> EscalationLevel:
        if (self.at is None) == (self.after is None):
            raise ValueError("give exactly one of 'at: breach' or 'after: {value, unit, source}'")
        return self


class Extension(BaseModel):
    """A way to extend a limit: by an amount or to a new total, how often, approved by whom, told how."""

    model_config = _Strict

    name: str = Field(min_length=1, pattern=r"^[a-z0-9-]+$")
    condition: str = Field(min_length=1)
    by: Amount | None = None
    to: Amount | None = None
    times: int = Field(default=1, ge=1)
    approved_by: str | None = None
    tell_customer: str | None = None
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _at_most_one_amount(self) -> Extension:
        if self.by is not None and self.to is not None:
            raise ValueError("give at most one of 'by' and 'to'")
        return self


class RepeatingNotice(BaseModel):
    """A notice the customer must get repeatedly (e.g. every 30 days while the claim is undecided)."""

    model_config = _Strict

    every: Amount
    first_by: Literal["due"] = "due"
    while_in: tuple[str, ...] = Field(min_length=1)
    tell: str = Field(min_length=1)
    content: str = Field(min_length=1)
    source: str = Field(min_length=1)


class Duty(BaseModel):
    """A duty with no number ("promptly", "in one complete notice"), kept apart from hard limits."""

    model_config = _Strict

    text: str = Field(min_length=1)
    source: str = Field(min_length=1)


class StepRule(BaseModel):
    """Everything a pack says about one step of one kind of case."""

    model_config = _Strict

    description: str = Field(min_length=1)
    starts_on: str | None = None
    limit: Limit | None = None
    limit_by_channel: dict[Channel, Limit] | None = None
    paused_in: tuple[str, ...] = ()
    pause_source: str | None = None
    restarted_by: tuple[str, ...] = ()
    restart_source: str | None = None
    reminders: Reminders | None = None
    escalation: tuple[EscalationLevel, ...] | None = None
    extensions: tuple[Extension, ...] = ()
    notices: tuple[RepeatingNotice, ...] = ()
    duties: tuple[Duty, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> StepRule:
        if self.limit is not None and self.limit_by_channel is not None:
            raise ValueError("give 'limit' or 'limit_by_channel', not both")
        has_limit = self.limit is not None or bool(self.limit_by_channel)
        if not has_limit and not self.duties:
            raise ValueError("a step needs a limit, a limit_by_channel or at least one duty")
        if has_limit and not self.starts_on:
            raise ValueError("a step with a limit needs 'starts_on' (the event that starts the clock)")
        if self.paused_in and not self.pause_source:
            raise ValueError("'paused_in' needs 'pause_source' (the text that stops the clock)")
        if self.restarted_by and not self.restart_source:
            raise ValueError("'restarted_by' needs 'restart_source' (the text that restarts the clock)")
        if self.escalation:
            levels = [rung.level for rung in self.escalation]
            if levels != sorted(set(levels)):
                raise ValueError("escalation levels must be increasing and distinct")
        names = [extension.name for extension in self.extensions]
        if len(names) != len(set(names)):
            raise ValueError("extension names must be distinct")
        return self

    def limit_for(self, channel: Channel | None) -> Limit | None:
        """The limit that applies on ``channel`` (None: a duty-only step).

        Raises:
            NoRule: the limit depends on the channel and ``channel`` is missing or not listed.
        """
        if self.limit_by_channel is None:
            return self.limit
        if channel is None:
            raise NoRule(
                "this limit depends on the channel; give one of " + ", ".join(str(c) for c in self.limit_by_channel)
            )
        limit = self.limit_by_channel.get(channel)
        if limit is None:
            raise NoRule(
                f"no limit for channel {channel}; the pack lists " + ", ".join(str(c) for c in self.limit_by_channel)
            )
        return limit


class Defaults(BaseModel):
    """Reminders and escalation ladder for every step that does not set its own."""

    model_config = _Strict

    reminders: Reminders | None = None
    escalation: tuple[EscalationLevel, ...] | None = None


class Pack(BaseModel):
    """One SLA policy pack."""

    model_config = _Strict

    name: str = Field(pattern=r"^[a-z0-9-]+$")
    title: str = Field(min_length=1)
    description: str = ""
    region: str | None = None
    timezone: str | None = None
    unknown_years: UnknownYears = "raise"
    defaults: Defaults = Defaults()
    steps: dict[CaseKind, dict[StepName, StepRule]]
    _resolved: dict[tuple[str, str], StepRule | None] = PrivateAttr(default_factory=dict)

    def rule(self, kind: CaseKind | str, step: StepName | str) -> StepRule | None:
        """The rule for ``kind`` / ``step``, with the pack defaults filled in (None: no rule)."""
        key = (kind, step)
        if key in self._resolved:
            return self._resolved[key]
        resolved = self._resolve(kind, step)
        self._resolved[key] = resolved
        return resolved

    def _resolve(self, kind: CaseKind | str, step: StepName | str) -> StepRule | None:
        try:
            rule = self.steps.get(CaseKind(kind), {}).get(StepName(step))
        except ValueError:
            return None
        if rule is None:
            return None
        updates: dict[str, Any] = {}
        if rule.reminders is None and self.defaults.reminders is not None:
            updates["reminders"] = self.defaults.reminders
        if rule.escalation is None and self.defaults.escalation is not None:
            updates["escalation"] = self.defaults.escalation
        return rule.model_copy(update=updates) if updates else rule

    def rules(self) -> Iterable[tuple[CaseKind, StepName, StepRule]]:
        """Every (kind, step, rule) of the pack, defaults filled in."""
        for kind, steps in self.steps.items():
            for step in steps:
                rule = self.rule(kind, step)
                assert rule is not None
                yield kind, step, rule


# -- loading and validation ------------------------------------------------------------------------


def _describe_error(error: Mapping[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    is_key = bool(loc) and loc[-1] == "[key]"
    if is_key:
        loc = loc[:-1]
    # drop pydantic's union-branch tags such as 'literal['breach']' or 'function-after[...]'
    loc = [part for part in loc if "[" not in part and "(" not in part]
    path = ".".join(loc) or "(top level)"
    kind = error["type"]
    value = error.get("input")
    if kind in ("enum", "literal_error"):
        expected = str(error.get("ctx", {}).get("expected", ""))
        options = ", ".join(part.strip(" '") for part in expected.replace(" or ", ", ").split(","))
        return f"{path}: {value!r} is not one of {options}"
    if kind == "extra_forbidden":
        return f"{path}: unknown key"
    if kind == "missing":
        return f"{path}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{path}: {message}"


def parse_pack(text: str, *, origin: str = "policy pack") -> Pack:
    """Validate a policy pack given as YAML text.

    Raises:
        PolicyError: the YAML is malformed or does not describe a pack. The message names the key path
            and the reason, e.g. ``steps.claim.review.limit.unit: 'weeks' is not one of hours,
            business_hours, calendar_days, working_days``.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"{origin}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{origin}: a policy pack is a YAML mapping with 'name', 'title' and 'steps'")
    try:
        pack = Pack.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise PolicyError(f"{_describe_error(errors[0])}{more}") from exc
    if pack.region is not None or pack.timezone is not None:
        try:
            region_calendar(pack.region or "CN", timezone=pack.timezone)
        except InvalidInput as exc:
            key = "region" if pack.region is not None else "timezone"
            raise PolicyError(f"{key}: {exc}") from exc
    return pack


def load_pack_file(path: Path) -> Pack:
    """Validate the policy pack in ``path``.

    Raises:
        PolicyError: unreadable or invalid (message with the key path).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_pack(text, origin=str(path))


@cache
def shipped_pack_names() -> list[str]:
    """Names of the SLA packs shipped in the ``policies`` package.

    Other YAML files live there too (wording rules, say); an SLA pack is one with a ``steps`` mapping.
    """
    names = []
    for entry in resources.files("policies").iterdir():
        if not entry.name.endswith(".yaml"):
            continue
        try:
            data = yaml.safe_load(entry.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict) and "steps" in data:
            names.append(entry.name.removesuffix(".yaml"))
    return sorted(names)


@cache
def load_pack(name: str) -> Pack:
    """A shipped pack by name (``service-standard``, ``cn-regulatory``, ``uk-fca``, ``au-asic``, ``us-ca``).

    Raises:
        InvalidInput: no shipped pack has that name.
        PolicyError: the shipped file is broken.
    """
    resource = resources.files("policies").joinpath(f"{name}.yaml")
    if "/" in name or not resource.is_file() or name not in shipped_pack_names():
        raise InvalidInput(f"unknown policy pack {name!r}; shipped: {', '.join(shipped_pack_names())}")
    pack = parse_pack(resource.read_text(encoding="utf-8"), origin=f"policies/{name}.yaml")
    if pack.name != name:
        raise PolicyError(f"policies/{name}.yaml: name is {pack.name!r}, expected {name!r}")
    return pack


def pack_calendar(pack: Pack, default: Calendar) -> Calendar:
    """The calendar a pack's limits are counted on: its own region's, else ``default`` (the case's).

    When ``default`` is the fallback calendar (a period reaching a year whose official calendar is not yet
    published), a pack's own region calendar falls back the same way: otherwise a regulator's pack with a
    region of its own would refuse every case filed in the last weeks of the year (the caller flags the
    assumption in the rule's text)."""
    if pack.region is None:
        if pack.timezone is not None and pack.timezone != default.office.timezone:
            return default.with_office_hours(replace(default.office, timezone=pack.timezone))
        return default
    unknown_years = "weekends" if default.unknown_years == "weekends" else pack.unknown_years
    return region_calendar(pack.region, unknown_years=unknown_years, timezone=pack.timezone,
                           site_years=default.site_years if pack.region == default.region else "")  # fmt: skip


# -- deadlines -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleRef:
    """Which rule set a deadline: pack, kind, step, channel, limit and the text it comes from."""

    pack: str
    kind: CaseKind
    step: StepName
    channel: Channel | None
    limit: str
    source: str

    @property
    def text(self) -> str:
        """``service-standard claim.review: 3 working days (source)``."""
        via = f" via {self.channel}" if self.channel is not None else ""
        return f"{self.pack} {self.kind}.{self.step}{via}: {self.limit} ({self.source})"


@dataclass(frozen=True)
class Reminder:
    """Remind the handler when ``fraction`` of the allowed time is used."""

    fraction: float
    at: dt.datetime | None


@dataclass(frozen=True)
class EscalationPoint:
    """Alert ``role`` at ``at`` (None while the clock is stopped)."""

    level: int
    role: str
    at: dt.datetime | None
    condition: str | None


@dataclass(frozen=True)
class Considered:
    """A rule that was applied to the case, and the due time it gave."""

    rule: RuleRef
    due: dt.datetime | None


@dataclass(frozen=True)
class Deadline:
    """The answer of ``due``/``strictest``: when a step is due and what happens around it."""

    due: dt.datetime | None
    """When the limit is used up (breach from this instant on); None while an open pause stops it."""
    last_day: dt.date | None
    """For day limits: the last day of the period (``due`` is the end of that day)."""
    rule: RuleRef
    reminders: tuple[Reminder, ...]
    escalations: tuple[EscalationPoint, ...]
    window: bool = False
    """True when the end is not a breach but the end of an option (summary resolution)."""
    rolled: bool = False
    """True when a calendar-day period was moved past rest days."""
    calendar: str = ""
    assumed: str | None = None
    """Set when a day of the period lies in a year without official calendar data (fallback chosen)."""
    considered: tuple[Considered, ...] = ()
    """Every rule applied (for ``strictest``), the governing one included."""
    ladder_from: str | None = None
    """Pack whose reminders and escalation ladder were used when the governing rule has none."""


def _as_aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} {value.isoformat()} has no time zone offset")
    return value


def due(
    pack: Pack,
    *,
    kind: CaseKind | str,
    step: StepName | str,
    start: dt.datetime,
    calendar: Calendar,
    channel: Channel | str | None = None,
    pauses: Sequence[Pause] = (),
    extensions: Sequence[str] = (),
) -> Deadline:
    """When a step is due under one pack.

    Args:
        pack: the policy pack.
        kind: case kind.
        step: the step.
        start: when the clock started — the rule's ``starts_on`` event, or the latest of its
            ``restarted_by`` events (aware datetime).
        calendar: the case's calendar; a pack with its own region uses that region's calendar instead.
        channel: the channel, for limits that depend on it.
        pauses: intervals the case spent in a pausing state (``paused_in``); an open one stops the clock.
        extensions: names of the extensions granted so far (a name may repeat up to its ``times``).

    Returns:
        The due time, the reminder times, the escalation times and the rule that set them.

    Raises:
        NoRule: the pack has no rule with a number for this kind/step/channel.
        InvalidInput: naive datetimes, unknown extension names, extensions granted too often.
        NoOfficialCalendar: the period touches a year without official calendar data.
    """
    return _due(pack, _kind(kind), _step(step), start, calendar, _channel(channel), pauses, extensions)


def _due(
    pack: Pack,
    kind: CaseKind,
    step: StepName,
    start: dt.datetime,
    calendar: Calendar,
    channel: Channel | None,
    pauses: Sequence[Pause],
    extensions: Sequence[str],
    ladder: StepRule | None = None,
) -> Deadline:
    rule = pack.rule(kind, step)
    if rule is None:
        raise NoRule(f"{pack.name} has no rule for {kind}.{step}")
    limit = rule.limit_for(channel)
    if limit is None:
        raise NoRule(f"{pack.name} {kind}.{step} is a duty with no number: {rule.duties[0].text}")
    value, unit = _extended(limit, rule, extensions, pack.name)
    cal = pack_calendar(pack, calendar)
    _as_aware(start, "start")
    timing = due_time(start, value, unit, calendar=cal, pauses=pauses, roll=limit.roll)
    ref = RuleRef(
        pack=pack.name,
        kind=kind,
        step=step,
        channel=channel if rule.limit_by_channel is not None else None,
        limit=unit.describe(value) + (" (extended)" if extensions else ""),
        source=limit.source,
    )
    source = ladder or rule
    reminders = _reminders(source.reminders, unit, cal, timing.origin, timing.allowed, pauses)
    escalations = () if limit.window else _escalations(source.escalation or (), timing.due, cal)
    last = timing.last_day or (timing.due.date() if timing.due is not None else None)
    return Deadline(
        due=timing.due,
        last_day=timing.last_day,
        rule=ref,
        reminders=reminders,
        escalations=escalations,
        window=limit.window,
        rolled=timing.rolled,
        calendar=cal.description,
        assumed=_assumed(cal, start, last),
        considered=(Considered(ref, timing.due),),
    )


def _channel(channel: Channel | str | None) -> Channel | None:
    if channel is None or isinstance(channel, Channel):
        return channel
    try:
        return Channel(channel)
    except ValueError:
        raise InvalidInput(f"unknown channel {channel!r}; one of {', '.join(Channel)}") from None


def _kind(kind: CaseKind | str) -> CaseKind:
    try:
        return CaseKind(kind)
    except ValueError:
        raise InvalidInput(f"unknown kind {kind!r}; one of {', '.join(CaseKind)}") from None


def _step(step: StepName | str) -> StepName:
    try:
        return StepName(step)
    except ValueError:
        raise InvalidInput(f"unknown step {step!r}; one of {', '.join(StepName)}") from None


def _extended(limit: Limit, rule: StepRule, granted: Sequence[str], pack: str) -> tuple[Any, Unit]:
    if not granted:
        return (int(limit.value) if limit.value.is_integer() else exact(limit.value)), limit.unit
    value: Any = exact(limit.value)
    by_name = {extension.name: extension for extension in rule.extensions}
    used: dict[str, int] = {}
    for name in granted:
        extension = by_name.get(name)
        if extension is None:
            if not by_name:
                continue
            raise InvalidInput(f"{pack}: unknown extension {name!r}; allowed: {', '.join(by_name) or 'none'}")
        used[name] = used.get(name, 0) + 1
        if used[name] > extension.times:
            raise InvalidInput(f"{pack}: extension {name!r} may be granted {extension.times} time(s)")
        amount = extension.by or extension.to
        if amount is None:
            raise InvalidInput(f"{pack}: extension {name!r} has no fixed length; set the due time by hand")
        if amount.unit is not limit.unit:
            raise InvalidInput(f"{pack}: extension {name!r} is in {amount.unit}, the limit in {limit.unit}")
        value = value + exact(amount.value) if extension.by is not None else max(value, exact(amount.value))
    return value, limit.unit


def _reminders(
    reminders: Reminders | None,
    unit: Unit,
    calendar: Calendar,
    origin: int,
    allowed: int | None,
    pauses: Sequence[Pause],
) -> tuple[Reminder, ...]:
    if reminders is None:
        return ()
    if allowed is None:
        return tuple(Reminder(fraction, None) for fraction in reminders.at)
    clock = clock_for(unit, calendar)
    return tuple(Reminder(fraction, at_fraction(clock, origin, allowed, fraction, pauses)) for fraction in reminders.at)


def _escalations(
    ladder: Sequence[EscalationLevel], due_at: dt.datetime | None, calendar: Calendar
) -> tuple[EscalationPoint, ...]:
    points = []
    for rung in ladder:
        at: dt.datetime | None = due_at
        if due_at is not None and rung.after is not None:
            clock = clock_for(rung.after.unit, calendar)
            position = advance(clock, clock.position(due_at), units_to_us(rung.after.value, rung.after.unit))
            assert position is not None
            at = clock.instant(position, end_of_day=rung.after.unit.is_days)
        points.append(EscalationPoint(rung.level, rung.role, at, rung.condition))
    return tuple(points)


def _assumed(calendar: Calendar, start: dt.datetime, last: dt.date | None) -> str | None:
    days = [start.astimezone(calendar.office.zone).date()] + ([last] if last is not None else [])
    unknown = sorted({day.year for day in days if not calendar.is_official(day)})
    if not unknown:
        return None
    years = ", ".join(str(year) for year in unknown)
    return (
        f"no official {calendar.region} calendar for {years}: weekends and statutory holidays assumed "
        f"(known years {calendar.official_first_year}-{calendar.official_last_year})"
    )


def strictest(
    packs: Sequence[Pack],
    *,
    kind: CaseKind | str,
    step: StepName | str,
    start: dt.datetime,
    calendar: Calendar,
    channel: Channel | str | None = None,
    pauses: Sequence[Pause] = (),
    extensions: Sequence[str] = (),
    ladder_packs: Sequence[Pack] = (),
) -> Deadline:
    """When a step is due when a case falls under several packs: the earliest due time governs.

    Each pack that has a numeric, non-window rule for the step is applied on its own calendar; the
    earliest due time wins (ties go to the pack listed first; a clock stopped by an open pause counts as
    latest). The answer names the governing rule and lists every rule considered. When the governing
    rule has no reminders or no escalation ladder (a regulator's pack rarely has one), those of the first
    listed pack that has them are applied to the governing deadline (``ladder_from`` names that pack).

    Args:
        packs: the packs the case falls under, house standard first.
        kind, step, start, calendar, channel, pauses: as for ``due``.
        extensions: extension names granted; each pack applies the names it defines.
        ladder_packs: packs whose reminders and ladder may be applied, after ``packs``, without their due times
            taking part (the house's ladder on a regulator's own clock, ``tasks.workflow.STEP_SLA``).

    Raises:
        NoRule: none of the packs has a rule with a number for the step.
    """
    kind, step, chosen = _kind(kind), _step(step), _channel(channel)
    results: list[tuple[Pack, Deadline, list[str]]] = []
    skipped: list[str] = []
    for pack in packs:
        rule = pack.rule(kind, step)
        if rule is None:
            skipped.append(f"{pack.name}: no rule")
            continue
        try:
            limit = rule.limit_for(chosen)
        except NoRule as exc:
            skipped.append(f"{pack.name}: {exc}")
            continue
        if limit is None or limit.window:
            skipped.append(f"{pack.name}: {'a window' if limit else 'a duty with no number'}")
            continue
        granted = [name for name in extensions if name in {ext.name for ext in rule.extensions}]
        deadline = _due(pack, kind, step, start, calendar, chosen, pauses, granted)
        results.append((pack, deadline, granted))
    if not results:
        names = ", ".join(pack.name for pack in packs)
        raise NoRule(f"no rule with a number for {kind}.{step} in {names} ({'; '.join(skipped)})")
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    pack, governing, granted = min(results, key=lambda item: item[1].due or far)
    considered = tuple(entry for _, result, _ in results for entry in result.considered)
    rule = pack.rule(kind, step)
    assert rule is not None
    ladder_from = None
    if rule.reminders is None or rule.escalation is None:
        reminders, escalation = rule.reminders, rule.escalation
        for other in (*packs, *ladder_packs):
            if other is pack:
                continue
            other_rule = other.rule(kind, step)
            other_reminders = other_rule.reminders if other_rule else other.defaults.reminders
            other_escalation = other_rule.escalation if other_rule else other.defaults.escalation
            if reminders is None and other_reminders is not None:
                reminders, ladder_from = other_reminders, other.name
            if escalation is None and other_escalation is not None:
                escalation, ladder_from = other_escalation, other.name
        if ladder_from is not None:
            ladder = rule.model_copy(update={"reminders": reminders, "escalation": escalation})
            governing = _due(pack, kind, step, start, calendar, chosen, pauses, granted, ladder)
    return replace(governing, considered=considered, ladder_from=ladder_from)


def notice_times(
    notice: RepeatingNotice, *, first: dt.datetime, until: dt.datetime, calendar: Calendar
) -> list[dt.datetime]:
    """When a repeating notice is owed: ``first`` (usually the step's due time), then every
    ``notice.every`` after the previous one, for as long as the case stays undecided (before ``until``).

    Args:
        notice: the pack's repeating notice.
        first: when the first notice is owed.
        until: when the case left the states in ``notice.while_in`` (or the horizon you look at).
        calendar: the pack's calendar.
    """
    clock = clock_for(notice.every.unit, calendar)
    step_us = units_to_us(notice.every.value, notice.every.unit)
    times: list[dt.datetime] = []
    current = first
    while current < until:
        times.append(current)
        current = clock.instant(clock.position(current) + step_us, end_of_day=notice.every.unit.is_days)
    return times

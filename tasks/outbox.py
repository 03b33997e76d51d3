"""The notification outbox: queue a message with the decision that sends it, then deliver it through apprise.

Queueing (``enqueue``) happens inside the caller's transaction, so a message exists exactly when the
decision that sends it was committed. A customer message is rendered and checked for honest wording
*before* its row is written: a message that fails is never queued; the case gets a ``wording_check_failed``
event and its handler a ``fix_wording`` step naming the rule.

Delivery runs in three short transactions per message, none of them open while the network is used:

1. ``claim_due`` takes due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the database lock on SQLite),
   marks them ``sending``, counts the attempt and leases them until ``now + lease``; a sender that dies
   leaves its rows to come back when the lease ends. ``prepare`` renders them and resolves recipients.
2. ``send`` hands one message to apprise (no transaction): e-mail over SMTP connections kept open for a
   pass (``tasks.mailpool``), other channels through ``apprise.Apprise``; a failure is the message's.
3. ``record_result`` writes ``sent``, or the next attempt time (exponential backoff with jitter), or the
   dead letter and a staff alert after the last attempt. A result is only recorded by the sender that
   still holds the lease (its attempt number is the fencing token).

Delivery is at least once: a process that dies after apprise handed the message over and before step 3
committed leaves the row to be sent again when its lease ends (see the README).

Recipients are references, resolved only when a message leaves, so personal data stays in ``Customer``:
``customer:<id>`` (e-mail or SMS, by the customer's preference and what they gave), ``staff:<username>``,
``department:<code>`` and ``role:<role>`` (apprise URLs from ``CLAIMFLOW_STAFF_CHANNELS``; a staff member
without one is mailed at their address through the customer e-mail server, if configured).
"""

from __future__ import annotations

import contextlib
import logging
import random as random_module
import re
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import apprise
from jinja2 import Environment
from pydantic import SecretStr
from sqlalchemy import Executable, bindparam, func, text, update
from sqlmodel import Session, col, select

from claimflow.db import insert_rows, one_of
from models.audit import normalise_data
from models.delivery import DeadLetter, DeliveryPolicy, after_failure, lease_until
from models.enums import ContactChannel, OutboxStatus, StepStatus
from models.errors import ClaimflowError, InvalidInput, NotFound
from models.masking import mask_email, mask_phone
from models.messages import (
    CATALOGUE,
    DELIVERY_FILLED,
    DeskNotConfigured,
    MessageSpec,
    RenderedMessage,
    choose_language,
    digest_of,
    make_environment,
    render_message,
    spec_for,
    with_outside_body,
)
from models.notices import stale
from models.tables import OUTBOX_DUE, Case, Customer, Outbox, Staff, Step
from models.types import UTCDateTime
from models.wording import Violation, WordingRules, check_wording, load_rules
from tasks.mailpool import MailPool, SendError

if TYPE_CHECKING:
    from sqlalchemy import CursorResult

    from tasks.cases import CaseRef

logger = logging.getLogger("claimflow.outbox")

RECIPIENT_KINDS = ("customer", "staff", "department", "role")
_HEADER_SCHEMES = frozenset({"mailto", "mailtos", "json", "jsons", "xml", "xmls", "form", "forms"})
OUTBOX_ID_HEADER = "X-Claimflow-Outbox-Id"


class DeliveryFailed(ClaimflowError):
    """A message did not leave. ``permanent``: waiting cannot help (no address, no channel configured)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class WordingBlocked(ClaimflowError):
    """A queued message no longer passes the wording check (the templates or rules changed since)."""


# --- configuration ----------------------------------------------------------------------------------------

_PLAIN = (str, int, float, bool, type(None))


def _status_url(settings: Any, case_id: int) -> str:
    from tasks.status import status_url  # it reads the link key; only delivery needs it

    return status_url(settings, case_id=case_id, now=datetime.now(UTC))


@dataclass(frozen=True)
class OutboxConfig:
    """Everything queueing and delivery need besides the session: templates, rules, channels, policy."""

    env: Environment
    rules: WordingRules
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    default_language: str = "zh-CN"
    timezone: str = "Asia/Shanghai"
    desk: Mapping[str, Any] = field(default_factory=lambda: {"phone": "", "email": ""})
    """The desk's contact details quoted in customer messages; an empty one holds them (``DeskNotConfigured``)."""
    customer_email_url: SecretStr | None = field(default=None, repr=False)
    customer_sms_url: SecretStr | None = field(default=None, repr=False)
    staff_channels: Mapping[str, Sequence[SecretStr]] = field(default_factory=dict, repr=False)
    dead_letter_recipient: str = "role:supervisor"
    batch_size: int = 100
    messages_per_connection: int = 100
    """E-mails sent over one SMTP connection before it is closed and a new one opened (``tasks.mailpool``)."""
    senders: int = 1
    """Delivery threads side by side in one pass (``drain``)."""
    status_link: Callable[[int], str] | None = field(default=None, repr=False)
    """A fresh link to a case's status page (``tasks.status``), added to every customer message about a case."""
    _rendered: set[tuple[Any, ...]] = field(default_factory=set, init=False, repr=False, compare=False)
    """The shapes of staff messages this configuration has rendered (see ``check_renders``)."""

    @classmethod
    def from_settings(cls, settings: Any) -> OutboxConfig:
        """Build the configuration from ``claimflow.settings.Settings``."""
        return cls(
            env=_environment(),
            rules=_rules(settings.wording_rules_path),
            policy=DeliveryPolicy(
                max_attempts=settings.outbox_max_attempts,
                base_seconds=settings.outbox_backoff_seconds,
                max_seconds=max(settings.outbox_backoff_max_seconds, settings.outbox_backoff_seconds),
                lease_seconds=settings.outbox_lease_seconds,
            ),
            default_language=settings.default_language,
            timezone=settings.office_timezone,
            desk={
                "phone": settings.desk_phone,
                "email": settings.desk_email,
                "outside_bodies": settings.outside_bodies,  # named in the customer's language (desk.outside)
            },
            customer_email_url=settings.customer_email_url,
            customer_sms_url=settings.customer_sms_url,
            staff_channels=settings.staff_channels,
            dead_letter_recipient=settings.dead_letter_recipient,
            batch_size=settings.outbox_batch_size,
            messages_per_connection=settings.smtp_messages_per_connection,
            senders=settings.outbox_senders,
            status_link=lambda case_id: _status_url(settings, case_id),
        )

    def render(self, template: str, *, language: str, context: Mapping[str, Any], html: bool = True,
               case_id: int | None = None) -> RenderedMessage:  # fmt: skip
        """The message as sent; a customer's message about a case (``case_id``) carries a fresh status link."""
        desk = self.desk
        if case_id is not None and self.status_link is not None:
            desk = {**desk, "status_url": self.status_link(case_id)}
        return render_message(
            self.env, template, language=language, context=context, timezone=self.timezone, desk=desk, html=html
        )

    def check_renders(self, template: str, *, language: str, context: Mapping[str, Any]) -> None:
        """Render a staff message once to prove it can be (a missing value fails when it is queued, not at
        3 a.m. when it is delivered); the rendered text is not kept, delivery renders it again.

        A context of text keys and plain values (text, numbers, booleans, none) is rendered once per
        template, language and key-to-type shape: a batch of 1,000 reminders is one render, not 1,000. A
        context holding lists or mappings is rendered every time, since a template may look inside them.
        """
        if any(type(v) not in _PLAIN for v in context.values()):
            self.render(template, language=language, context=context, html=False)
            return
        shape = (template, language, *sorted((k, type(v).__name__) for k, v in context.items()))
        if shape not in self._rendered:
            self.render(template, language=language, context=context, html=False)
            self._rendered.add(shape)


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return make_environment()


@lru_cache(maxsize=4)
def _rules(path: Path | None) -> WordingRules:
    return load_rules(path)


def default_config() -> OutboxConfig:
    """The configuration from this process's settings."""
    from claimflow.settings import get_settings

    return OutboxConfig.from_settings(get_settings())


# --- queueing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enqueued:
    """What ``enqueue`` did.

    Attributes:
        outbox: the row (new, or the one already queued under the same idempotency key); ``None`` when the
            wording check held the message back.
        duplicate: the idempotency key was used before; nothing new was written.
        violations: the wording rules the message broke (empty when it was queued).
    """

    outbox: Outbox | None
    duplicate: bool = False
    violations: tuple[Violation, ...] = ()

    @property
    def queued(self) -> bool:
        return self.outbox is not None


def parse_recipient(recipient: str) -> tuple[str, str]:
    """``customer:42`` -> ``("customer", "42")``; ``InvalidInput`` for anything else."""
    kind, sep, name = recipient.partition(":")
    if not sep or kind not in RECIPIENT_KINDS or not name.strip():
        raise InvalidInput(
            f"recipient {recipient!r} is not a reference like customer:<id>, staff:<username>, "
            "department:<code> or role:<role>"
        )
    if kind == "customer" and not name.isdigit():
        raise InvalidInput(f"recipient {recipient!r}: a customer is referred to by id (customer:42)")
    return kind, name.strip()


def customer_channel(customer: Customer) -> str:
    """The written channel a customer is told through: SMS if they prefer it and gave a phone number,
    else e-mail if they gave an address, else SMS if they gave a phone number, else e-mail (which then
    fails at delivery and alerts staff to call or write)."""
    if customer.preferred_channel == ContactChannel.sms and customer.phone:
        return "sms"
    if customer.email:
        return "email"
    if customer.phone:
        return "sms"
    return "email"


@dataclass(frozen=True)
class Message:
    """One message for ``enqueue_many``: what ``enqueue`` takes besides the session, the time and the actor."""

    template: str
    recipient: str
    context: Mapping[str, Any]
    idempotency_key: str
    case: CaseRef | None = None
    language: str | None = None


@dataclass(frozen=True)
class Queued:
    """What ``enqueue_many`` did with one message: ``Enqueued`` with the row's id instead of the row.

    Attributes:
        outbox_id: the row (new, or the one already queued under the same key); ``None`` when the wording
            check held the message back.
        duplicate: the idempotency key was used before (or earlier in the same batch); nothing new was written.
        violations: the wording rules the message broke (empty when it was queued).
    """

    outbox_id: int | None
    duplicate: bool = False
    violations: tuple[Violation, ...] = ()


def enqueue(
    session: Session,
    *,
    template: str,
    recipient: str,
    context: Mapping[str, Any],
    idempotency_key: str,
    now: datetime,
    case: Case | None = None,
    language: str | None = None,
    actor: str = "system",
    config: OutboxConfig | None = None,
) -> Enqueued:
    """Queue one message in the caller's transaction; the caller commits.

    Args:
        session: the open session.
        template: a catalogue name (``models.messages.CATALOGUE``).
        recipient: a reference (``customer:42``, ``staff:li.wei``, ``department:claims-motor``,
            ``role:supervisor``).
        context: the message's values; ``customer_name`` is filled from the customer and not stored.
        idempotency_key: one message per key, ever (e.g. ``ack:CLM-2026-000123``); a second call with the
            same key writes nothing and returns the first row.
        now: the time of the decision (aware); the message is due at once.
        case: the case the message is about; required for customer messages (the wording check records
            its findings on it).
        language: the message language; default: the customer's, else the office default.
        actor: who decided to send it (recorded on a wording failure).
        config: templates, rules and channels; default: from the settings.

    Returns:
        What was done: the row, or the wording rules that held the message back.

    Raises:
        InvalidInput: a malformed recipient, a staff message to a customer or the other way round, a
            customer message without its case, or a required context key missing.
        NotFound: an unknown template or customer.
    """
    message = Message(template, recipient, context, idempotency_key, case=case, language=language)
    [queued] = enqueue_many(session, [message], now=now, actor=actor, config=config)
    row = session.get(Outbox, queued.outbox_id) if queued.outbox_id is not None else None
    return Enqueued(row, duplicate=queued.duplicate, violations=queued.violations)


def enqueue_many(
    session: Session,
    messages: Sequence[Message],
    *,
    now: datetime,
    actor: str = "system",
    config: OutboxConfig | None = None,
) -> list[Queued]:
    """Queue many messages in the caller's transaction, as ``enqueue`` would one by one in this order.

    Each message is checked, rendered and (for a customer) held to the wording rules exactly as ``enqueue``
    does; the database sees one query for the keys already used, one for the customers, and one bulk insert.
    A key given twice is queued once: the later message is its duplicate.

    It runs in three parts a caller may also call apart, to let the database write something else while the
    messages are rendered: ``look_up`` (the queries), ``prepare_messages`` (no database) and
    ``write_messages``.

    Returns:
        What was done with each message, in the order given.

    Raises:
        What ``enqueue`` raises, for the first message found wrong (checks that need no database come
        first, for every message); nothing is queued then, and the caller's transaction is to be rolled back.
    """
    config = config or default_config()
    return write_messages(session, prepare_messages(look_up(session, messages), now=now, config=config),
                          now=now, actor=actor)  # fmt: skip


@dataclass(frozen=True)
class LookedUp:
    """What queueing these messages needs from the database: the rows already queued under their keys, and
    their customers."""

    messages: Sequence[Message]
    addressed: list[tuple[MessageSpec, str, str]]
    already: dict[str, Outbox]
    customers: dict[int, Customer]


def look_up(
    session: Session,
    messages: Sequence[Message],
    *,
    customers: Mapping[int, Customer] | None = None,
    new_keys: bool = False,
) -> LookedUp:
    """The first part of ``enqueue_many``: the checks that need no database, for every message, then the
    two queries. ``customers``: those the caller holds (new ones, not yet written), by id; not read again.
    ``new_keys``: every key names a case filed in this transaction (its number just taken from the counter, which
    never gives one twice; the case's insert fails on a number used before), so nothing can be queued under it
    yet: the keys are not looked up."""
    addressed = [_addressed(message) for message in messages]
    already = {} if new_keys else _queued_under(session, {message.idempotency_key for message in messages})
    wanted = {int(name) for message, (spec, kind, name) in zip(messages, addressed, strict=True)
              if spec.audience == "customer" and kind == "customer"
              and message.idempotency_key not in already}  # fmt: skip
    held = customers or {}
    found = {customer_id: held[customer_id] for customer_id in wanted if customer_id in held}
    return LookedUp(messages, addressed, already, {**_customers(session, wanted - found.keys()), **found})


@dataclass(frozen=True)
class Prepared:
    """The messages of a ``LookedUp``, rendered and checked: the rows to write, by key, and the messages the
    wording check held back."""

    looked_up: LookedUp
    rows: dict[str, dict[str, Any]]
    writer: dict[str, int]
    """Key: the index of the message whose row is written under it."""
    held: dict[int, tuple[str, tuple[Violation, ...]]]
    """Index: the language the message was rendered in and the wording rules it broke."""

    @property
    def holds(self) -> bool:
        """Whether a message is held (by the wording check, or for a detail of the desk not set): writing them then
        records it on its case, which reads the case's chain (not in ``deferred_writes``)."""
        return bool(self.held) or any(row["status"] == OutboxStatus.held for row in self.rows.values())


def prepare_messages(looked_up: LookedUp, *, now: datetime, config: OutboxConfig) -> Prepared:
    """The second part of ``enqueue_many``: each message not queued before rendered and checked, without the
    database."""
    held: dict[int, tuple[str, tuple[Violation, ...]]] = {}
    rows: dict[str, dict[str, Any]] = {}
    writer: dict[str, int] = {}
    for index, (message, (spec, kind, name)) in enumerate(zip(looked_up.messages, looked_up.addressed, strict=True)):
        key = message.idempotency_key
        if key in looked_up.already or key in writer:
            continue
        customer = looked_up.customers.get(int(name)) if kind == "customer" else None
        row, violations = _prepared(spec, kind, name, message, customer=customer, now=now, config=config)
        if violations:
            held[index] = (row["language"], tuple(violations))
        rows[key], writer[key] = row, index  # a held row too: kept with its values for ``release_held``
    return Prepared(looked_up, rows, writer, held)


def write_messages(session: Session, prepared: Prepared, *, now: datetime, actor: str = "system") -> list[Queued]:
    """The last part of ``enqueue_many``: the held-back messages recorded on their cases, the rows inserted
    (one statement), and what was done with each message."""
    messages = prepared.looked_up.messages
    _record_held(session, prepared, now=now, actor=actor)
    rows, writer = prepared.rows, prepared.writer
    ids = _insert_messages(session, list(rows.values()))
    raced = _queued_under(session, {key for key in rows if key not in ids})  # concurrent transactions were first
    for key, outbox_id in ids.items():
        row = rows[key]
        logger.info("queued outbox #%s %s to %s (%s, %s)", outbox_id, row["template"], row["recipient"],
                    row["channel"], row["language"])  # fmt: skip
    results: list[Queued] = []
    for index, message in enumerate(messages):
        key = message.idempotency_key
        if index in prepared.held:
            results.append(Queued(None, violations=prepared.held[index][1]))
        elif key in ids:
            results.append(Queued(ids[key], duplicate=writer[key] != index))
        else:
            results.append(Queued((prepared.looked_up.already.get(key) or raced[key]).id, duplicate=True))
    return results


def queue_messages(session: Session, prepared: Prepared, *, now: datetime, actor: str = "system") -> None:
    """The last part of ``enqueue_many`` for a caller that needs nothing back: the rows inserted in one statement
    that returns nothing, so it may run in ``deferred_writes``. A key another transaction took meanwhile is
    skipped, as ``write_messages`` skips it. Messages the wording check held back are recorded first; that
    reads their cases' chains, so it cannot run in ``deferred_writes`` (the watcher queues staff messages
    only, which the wording rules do not hold back)."""
    _record_held(session, prepared, now=now, actor=actor)
    table = Outbox.__table__  # type: ignore[attr-defined]
    insert_rows(session, table, list(prepared.rows.values()), skip_conflicts_on=("idempotency_key",))
    if prepared.rows:  # one line for the batch: the rows' ids are not read back
        templates = sorted({row["template"] for row in prepared.rows.values()})
        logger.info("queued %d messages (%s), each once under its key", len(prepared.rows), ", ".join(templates))


def _record_held(session: Session, prepared: Prepared, *, now: datetime, actor: str) -> None:
    """Each message the wording check held back, recorded on its case (``_hold_back``); each one held because the
    desk lacks a detail it quotes, an event on its case (the operator's fix, not the handler's)."""
    from tasks.cases import append_event

    for index, (language, violations) in prepared.held.items():
        message = prepared.looked_up.messages[index]
        assert isinstance(message.case, Case)  # a customer message, which _prepared checked has its case
        _hold_back(session, case=message.case, template=message.template, language=language,
                   violations=violations, actor=actor, now=now)  # fmt: skip
    for key, row in prepared.rows.items():
        index = prepared.writer[key]
        case = prepared.looked_up.messages[index].case
        if row["status"] == OutboxStatus.held and index not in prepared.held and isinstance(case, Case):
            append_event(session, case=case, actor=actor, type="message_held",
                         data={"template": row["template"], "reason": row["last_error"]}, now=now)  # fmt: skip
            logger.warning("%s for case %s held: %s (sent once it is set)", row["template"], case.number,
                           row["last_error"])  # fmt: skip


def _addressed(message: Message) -> tuple[MessageSpec, str, str]:
    """The catalogue entry and the recipient's kind and name; the checks ``enqueue`` makes before any query."""
    spec = spec_for(message.template)
    kind, name = parse_recipient(message.recipient)
    if not message.idempotency_key.strip():
        raise InvalidInput("every message needs an idempotency key")
    return spec, kind, name


def _prepared(
    spec: MessageSpec,
    kind: str,
    name: str,
    message: Message,
    *,
    customer: Customer | None,
    now: datetime,
    config: OutboxConfig,
) -> tuple[dict[str, Any], list[Violation]]:
    """The outbox row of a message not queued before, rendered and checked; and the wording rules it breaks."""
    template, recipient, case = message.template, message.recipient, message.case
    wanted: str | None
    if spec.audience == "customer":
        if kind != "customer":
            raise InvalidInput(f"{template!r} is a customer message; {recipient!r} is not a customer")
        if not isinstance(case, Case):  # the wording check files its findings on the case's row
            raise InvalidInput(f"customer message {template!r} needs the case it is about")
        if customer is None:
            raise NotFound(f"no customer with id {name}")
        channel = customer_channel(customer)
        wanted = message.language or customer.language
    else:
        if kind == "customer":
            raise InvalidInput(f"{template!r} is a staff message; {recipient!r} is a customer")
        channel = "staff"
        wanted = message.language
    chosen = choose_language(wanted, default=config.default_language)
    stored = normalise_data({k: v for k, v in message.context.items() if k not in DELIVERY_FILLED})

    violations: list[Violation] = []
    held: str | None = None
    if spec.audience == "customer":
        assert customer is not None
        try:
            violations = _checked(config, template, language=chosen, context=stored, customer=customer)
        except DeskNotConfigured as missing:  # kept with its values, sent once the desk is configured
            held = str(missing)
        if violations:
            held = "held by the wording check: " + ", ".join(v.rule_id for v in violations)
    else:
        config.check_renders(template, language=chosen, context=stored)
    row = {
        "case_id": case.id if case is not None else None,
        "channel": channel,
        "recipient": recipient,
        "template": template,
        "language": chosen,
        "context": stored,
        "status": (OutboxStatus.held if held else OutboxStatus.pending).value,
        "priority": 1 if spec.later else 0,
        "attempts": 0,
        "next_attempt_at": None if held else now,
        "last_error": held,
        "idempotency_key": message.idempotency_key,
        "created_at": now,
    }
    return row, violations


def _checked(
    config: OutboxConfig, template: str, *, language: str, context: Mapping[str, Any], customer: Customer
) -> list[Violation]:
    """A customer message rendered as it will be sent, and the wording rules it breaks.

    Raises:
        DeskNotConfigured: it quotes a detail of the desk that is not set.
    """
    rendered = config.render(template, language=language, context={**context, "customer_name": customer.name},
                             html=False)  # fmt: skip
    said = with_outside_body(context, language, config.desk)  # the values as the message rendered them
    return check_wording(config.rules, template=template, language=language,
                         text=f"{rendered.subject}\n{rendered.text}", context=said)  # fmt: skip


def _queued_under(session: Session, keys: Collection[str]) -> dict[str, Outbox]:
    """The rows already queued under these idempotency keys (one query)."""
    if not keys:
        return {}
    rows = session.exec(select(Outbox).where(one_of(session, col(Outbox.idempotency_key), keys)))
    return {row.idempotency_key: row for row in rows}


def _customers(session: Session, ids: Collection[int]) -> dict[int, Customer]:
    """These customers, from the session where it holds them, else in one query."""
    found: dict[int, Customer] = {}
    for customer_id in ids:
        held = session.identity_map.get(session.identity_key(Customer, customer_id))
        if isinstance(held, Customer):
            found[customer_id] = held
    missing = [customer_id for customer_id in ids if customer_id not in found]
    if missing:
        rows = session.exec(select(Customer).where(one_of(session, col(Customer.id), missing)))
        found.update((c.id, c) for c in rows if c.id)
    return found


def _insert_messages(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert outbox rows in one statement; the ids of those whose key was still free, by key."""
    table = Outbox.__table__  # type: ignore[attr-defined]
    written = insert_rows(session, table, rows, returning=(table.c.id, table.c.idempotency_key),
                          skip_conflicts_on=("idempotency_key",))  # fmt: skip
    return {key: outbox_id for outbox_id, key in written}


def _hold_back(
    session: Session,
    *,
    case: Case,
    template: str,
    language: str,
    violations: Sequence[Violation],
    actor: str,
    now: datetime,
) -> None:
    """Record a message the wording check refused: an event on the case and a task for its handler."""
    from tasks.cases import append_event

    assert case.id is not None
    append_event(
        session,
        case=case,
        actor=actor,
        type="wording_check_failed",
        data={
            "template": template,
            "language": language,
            "rules": [v.rule_id for v in violations],
            "details": [v.detail for v in violations],
        },
        now=now,
    )
    attempts = session.exec(
        select(func.count()).select_from(Step).where(Step.case_id == case.id, Step.name == "fix_wording")
    ).one()
    summary = "; ".join(f"{v.rule_id}: {v.explanation}" for v in violations)
    session.add(
        Step(
            case_id=case.id,
            name="fix_wording",
            attempt=int(attempts) + 1,
            status=StepStatus.open,
            assignee_id=case.handler_id,
            started_at=now,
            outcome=violations[0].rule_id[:64],
            policy_rule=f"{template}/{language}: {summary}"[:200],
        )
    )
    session.flush()
    logger.warning(
        "wording check held back %s for case %s: %s",
        template,
        case.number,
        ", ".join(v.rule_id for v in violations),
    )


# --- delivery ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """One claimed message, rendered and addressed, ready for ``send``. ``urls`` carry secrets: never log."""

    outbox_id: int
    attempt: int
    channel: str
    recipient: str
    subject: str
    text: str
    html: str
    urls: tuple[str, ...] = field(repr=False)

    @property
    def body_format(self) -> str:
        return apprise.NotifyFormat.HTML if self.channel == "email" else apprise.NotifyFormat.TEXT

    @property
    def body(self) -> str:
        return self.html if self.channel == "email" else self.text


@dataclass(frozen=True)
class Unsendable:
    """A claimed message that cannot even be prepared; recorded like a failed send."""

    outbox_id: int
    attempt: int
    error: ClaimflowError


def due_statement(*, now: datetime, limit: int, dialect: str) -> Executable:
    """The first ``limit`` due rows in claiming order, read through the partial index ``ix_outbox_due`` (its
    condition written out, ``OUTBOX_DUE``): a claim reads about as many rows as it takes, however many wait.

    PostgreSQL plans it so by itself (its rows locked, those another sender holds skipped). SQLite without
    statistics (the desk never runs ``ANALYZE``) took ``ix_outbox_status_next_attempt`` and sorted every waiting
    row, so there the index is named (``INDEXED BY``, which SQLAlchemy writes for no SQLite statement)."""
    if dialect == "sqlite":
        query = text(f"SELECT * FROM outbox INDEXED BY ix_outbox_due WHERE {OUTBOX_DUE} AND next_attempt_at <= :now "  # noqa: S608 (constants only)
                     "ORDER BY priority, next_attempt_at, id LIMIT :limit")  # fmt: skip
        query = query.bindparams(bindparam("now", now, type_=UTCDateTime), bindparam("limit", limit))
        return select(Outbox).from_statement(query)
    return (
        select(Outbox)
        .where(text(OUTBOX_DUE), col(Outbox.next_attempt_at) <= now)
        .order_by(col(Outbox.priority), col(Outbox.next_attempt_at), col(Outbox.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def claim_due(session: Session, *, now: datetime, limit: int, policy: DeliveryPolicy) -> list[Outbox]:
    """Take up to ``limit`` due messages for this sender; the caller commits.

    Due: ``pending`` with ``next_attempt_at <= now``, or ``sending`` whose lease ended (its sender died). The
    oldest first, every message of priority 0 before any of priority 1 (``MessageSpec.later``).
    Each is marked ``sending``, its attempt counted, and leased until ``now + policy.lease_seconds``.
    On PostgreSQL rows another sender holds are skipped, not waited for; on SQLite the transaction holds
    the database lock (``BEGIN IMMEDIATE``), so claimers take turns.
    """
    if limit < 1:
        raise InvalidInput("limit must be at least 1")
    statement = due_statement(now=now, limit=limit, dialect=session.get_bind().dialect.name)
    rows = list(session.scalars(statement))
    lease = lease_until(policy, now=now)
    for row in rows:
        if row.status == OutboxStatus.sending:
            logger.warning("outbox #%s: lease of attempt %s ended unrecorded; claiming again", row.id, row.attempts)
        row.status = OutboxStatus.sending
        row.attempts += 1
        row.next_attempt_at = lease
        session.add(row)
    session.flush()
    return rows


DIGEST_MAX = 50
"""Notices one digest lists at most: more in one claim for one reader leave as several digests."""


def fold_notices(rows: Sequence[Outbox]) -> tuple[list[Outbox], int]:
    """Among claimed ``rows``, the notices that have a digest (``MessageSpec.digest``: a handler's new-assignment
    notices) leave as one message per reader: the first becomes the digest of the others claimed with it (up to
    ``DIGEST_MAX`` a digest), which are marked ``folded`` into it. Returns the rows still to send and how many were
    folded; the caller commits, in the claim's transaction.

    A surge gave each handler one e-mail per case, hundreds an hour, though the cases are in their worklists all
    along. The notices leave after every other due message (``later``), so in a surge a claim takes a hundred of
    them at once and a handler gets one message for their share; on a quiet day a claim holds one notice per reader
    and each leaves on its own, as before. Only rows this claim holds are folded: no other sender's, no second query.
    """
    chains: dict[tuple[str, str, str], list[Outbox]] = {}
    for row in rows:
        spec = CATALOGUE.get(row.template)
        if spec is not None and spec.digest is not None:
            chains.setdefault((row.template, row.recipient, row.language), []).append(row)
    folded: set[int | None] = set()
    for (template, recipient, _), members in chains.items():
        for start in range(0, len(members), DIGEST_MAX):
            carrier, *others = members[start : start + DIGEST_MAX]
            if not others:
                continue
            carrier.context = digest_of([carrier.context, *(other.context for other in others)])
            carrier.template = CATALOGUE[template].digest or template
            for other in others:
                other.status, other.folded_into = OutboxStatus.folded, carrier.id
                other.next_attempt_at, other.last_error = None, None
                folded.add(other.id)
            logger.info("outbox #%s: %d %s notices for %s leave as one %s", carrier.id, len(others) + 1, template,
                        recipient, carrier.template)  # fmt: skip
    return [row for row in rows if row.id not in folded], len(folded)


def prepare(session: Session, row: Outbox, *, config: OutboxConfig) -> Outgoing | Unsendable:
    """Render a claimed row and resolve its recipient to apprise URLs."""
    assert row.id is not None
    try:
        kind, name = parse_recipient(row.recipient)
        context = dict(row.context)
        if kind == "customer":
            customer = session.get(Customer, int(name))
            if customer is None:
                raise DeliveryFailed(f"customer {name} no longer exists", permanent=True)
            context["customer_name"] = customer.name
            urls = _customer_urls(customer, row, config)
        else:
            urls = _staff_urls(session, kind, name, row, config)
        rendered = config.render(row.template, language=row.language, context=context,
                                 case_id=row.case_id if kind == "customer" else None)  # fmt: skip
        if kind == "customer":
            violations = check_wording(config.rules, template=row.template, language=row.language,
                                       text=f"{rendered.subject}\n{rendered.text}", context=row.context)  # fmt: skip
            if violations:
                raise WordingBlocked("held back by the wording check: " + "; ".join(str(v) for v in violations))
    except ClaimflowError as exc:
        return Unsendable(row.id, row.attempts, exc)
    return Outgoing(
        outbox_id=row.id,
        attempt=row.attempts,
        channel=row.channel,
        recipient=row.recipient,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        urls=urls,
    )


def _customer_urls(customer: Customer, row: Outbox, config: OutboxConfig) -> tuple[str, ...]:
    if row.channel == "sms":
        if not customer.phone:
            raise DeliveryFailed(f"customer {customer.id} has no phone number for SMS", permanent=True)
        if config.customer_sms_url is None:
            raise DeliveryFailed("no SMS gateway configured (CLAIMFLOW_CUSTOMER_SMS_URL)", permanent=True)
        phone = "".join(c for c in customer.phone if c.isdigit() or c == "+")
        url = config.customer_sms_url.get_secret_value().replace("{phone}", quote(phone, safe="+"))
        return (_with_outbox_header(url, row.id),)
    if not customer.email:
        raise DeliveryFailed(f"customer {customer.id} has no e-mail address", permanent=True)
    if config.customer_email_url is None:
        raise DeliveryFailed("no customer e-mail server configured (CLAIMFLOW_CUSTOMER_EMAIL_URL)", permanent=True)
    return (_with_outbox_header(add_query(config.customer_email_url.get_secret_value(), to=customer.email), row.id),)


def _staff_urls(session: Session, kind: str, name: str, row: Outbox, config: OutboxConfig) -> tuple[str, ...]:
    configured = config.staff_channels.get(f"{kind}:{name}")
    if configured:
        return tuple(_with_outbox_header(url.get_secret_value(), row.id) for url in configured)
    if kind == "staff":
        staff = session.exec(select(Staff).where(Staff.username == name)).first()
        if staff is None:
            raise DeliveryFailed(f"no staff member {name!r}", permanent=True)
        if staff.email and config.customer_email_url is not None:
            url = add_query(config.customer_email_url.get_secret_value(), to=staff.email)
            return (_with_outbox_header(url, row.id),)
    raise DeliveryFailed(f"no channel configured for {kind}:{name} (CLAIMFLOW_STAFF_CHANNELS)", permanent=True)


def add_query(url: str, **params: str) -> str:
    """``url`` with query parameters added (values URL-encoded; ``+Header`` names kept as apprise wants)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _with_outbox_header(url: str, outbox_id: int | None) -> str:
    """Tag e-mail and webhook deliveries with the outbox id, so a receiver can spot a second delivery."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _HEADER_SCHEMES or outbox_id is None:
        return url
    return add_query(url, **{f"+{OUTBOX_ID_HEADER}": str(outbox_id)})


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)
_PHONE = re.compile(r"\+?\d[\d -]{6,}\d")


def mask_secrets(text: str) -> str:
    """Hide URL credentials, e-mail addresses and phone numbers in an error text before it is stored."""
    text = _CREDENTIALS.sub(r"\1***@", text)
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def send(outgoing: Outgoing, pool: MailPool | None = None) -> None:
    """Hand one message to apprise: e-mail over ``pool``'s open SMTP connections (``tasks.mailpool``), any
    other channel through ``apprise.Apprise``. Without a pool, one is opened and closed for this message.

    Raises:
        DeliveryFailed: apprise refused a URL (permanent) or the server or channel did not take the message,
            with the reason given, secrets and personal data masked.
    """
    own = pool is None
    pool = pool or MailPool()
    try:
        pool.send(outgoing)
    except SendError as exc:
        raise DeliveryFailed(mask_secrets(str(exc))[:1000], permanent=exc.permanent) from None
    finally:
        if own:
            pool.close()


def record_result(
    session: Session,
    *,
    outbox_id: int,
    attempt: int,
    error: ClaimflowError | None,
    now: datetime,
    config: OutboxConfig,
    random: Callable[[], float] = random_module.random,
) -> OutboxStatus | None:
    """Record how attempt ``attempt`` of message ``outbox_id`` ended; the caller commits.

    Returns:
        The new status, or ``None`` when the row is no longer this sender's (its lease ended and another
        sender claimed it: that sender records the result).
    """
    if error is None:  # the common case, one statement: sent, if the row is still this sender's
        held = update(Outbox).where(
            col(Outbox.id) == outbox_id,
            col(Outbox.status) == OutboxStatus.sending.value,
            col(Outbox.attempts) == attempt,
        )
        done = session.execute(held.values(status=OutboxStatus.sent.value, sent_at=now, next_attempt_at=None,
                                           last_error=None))  # fmt: skip
        if cast("CursorResult[Any]", done).rowcount == 1:
            return OutboxStatus.sent
    row = session.exec(select(Outbox).where(Outbox.id == outbox_id).with_for_update()).first()
    if error is None or row is None or row.status != OutboxStatus.sending or row.attempts != attempt:
        logger.warning("outbox #%s attempt %s: no longer held by this sender; result not recorded", outbox_id, attempt)
        return None
    row.last_error = str(error)
    parked: tuple[OutboxStatus, str, dict[str, Any]] | None = None
    if isinstance(error, DeskNotConfigured):  # queued before the desk's detail was unset: held until it is set
        parked = (OutboxStatus.held, "message_held", {"template": row.template, "reason": row.last_error})
    elif isinstance(error, WordingBlocked):
        parked = (OutboxStatus.blocked, "message_blocked", {"outbox_id": row.id, "error": row.last_error})
    if parked is not None:  # not sent, not retried: kept for a person (or a setting) to release
        row.status, row.next_attempt_at = parked[0], None
        session.add(row)
        _case_event(session, row, parked[1], parked[2], now)
        session.flush()
        return row.status
    decision = after_failure(
        config.policy,
        attempts=row.attempts,
        now=now,
        random=random,
        permanent=isinstance(error, DeliveryFailed) and error.permanent,
    )
    if isinstance(decision, DeadLetter):
        row.status = OutboxStatus.dead
        row.next_attempt_at = None
        session.add(row)
        session.flush()
        logger.error("outbox #%s dead-lettered after %s attempt(s): %s", row.id, row.attempts, row.last_error)
        _dead_letter_alert(session, row, now=now, config=config)
        return row.status
    row.status = OutboxStatus.pending
    row.next_attempt_at = decision.at
    session.add(row)
    session.flush()
    logger.info("outbox #%s attempt %s failed; next at %s", row.id, row.attempts, decision.at.isoformat())
    return row.status


def _case_event(
    session: Session, row: Outbox, type: str, data: dict[str, Any], now: datetime, actor: str = "system"
) -> None:
    from tasks.cases import append_event

    if row.case_id is None:
        return
    case = session.exec(select(Case).where(Case.id == row.case_id).with_for_update()).one()
    append_event(session, case=case, actor=actor, type=type, data=data, now=now)


def _dead_letter_alert(session: Session, row: Outbox, *, now: datetime, config: OutboxConfig) -> None:
    """Tell staff a message is dead; an alert that itself dies is only logged (no alerts about alerts)."""
    assert row.id is not None
    case = session.get(Case, row.case_id) if row.case_id is not None else None
    _case_event(
        session,
        row,
        "message_dead_lettered",
        {"outbox_id": row.id, "template": row.template, "attempts": row.attempts, "error": row.last_error},
        now,
    )
    if row.template == "staff_dead_letter":
        logger.error("dead-letter alert #%s itself could not be delivered; see 'claimflow outbox list'", row.id)
        return
    enqueue(
        session,
        template="staff_dead_letter",
        recipient=config.dead_letter_recipient,
        context={
            "outbox_id": row.id,
            "case_number": case.number if case is not None else None,
            "template": row.template,
            "recipient": row.recipient,
            "attempts": row.attempts,
            "last_error": row.last_error or "",
        },
        idempotency_key=f"dead-letter:{row.id}:{now.isoformat()}",
        now=now,
        case=case,
        config=config,
    )


@dataclass
class DrainReport:
    """What one pass over the outbox did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    blocked: int = 0
    lost_lease: int = 0
    folded: int = 0
    """Claimed notices that left inside a digest (``fold_notices``)."""
    returned: int = 0
    """Claimed messages given back to the queue unsent: the sender was told to stop (``unclaim``)."""

    def add(self, status: OutboxStatus | None) -> None:
        if status is None:
            self.lost_lease += 1
        elif status == OutboxStatus.sent:
            self.sent += 1
        elif status == OutboxStatus.pending:
            self.retried += 1
        elif status == OutboxStatus.dead:
            self.dead += 1
        elif status == OutboxStatus.blocked:
            self.blocked += 1

    def merge(self, other: DrainReport) -> None:
        for name in ("claimed", "sent", "retried", "dead", "blocked", "lost_lease", "folded", "returned"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def deliver_batch(
    engine: Any,
    *,
    now: Callable[[], datetime],
    config: OutboxConfig | None = None,
    limit: int | None = None,
    random: Callable[[], float] = random_module.random,
    pool: MailPool | None = None,
    stop: Stop | None = None,
) -> DrainReport:
    """Claim one batch of due messages, send each, record each result in its own transaction.

    Args:
        engine: the database engine.
        now: the clock (called at claim time and at each record).
        config: templates, rules, channels and policy; default: from the settings.
        limit: batch size; default: ``config.batch_size``.
        random: jitter source for the backoff.
        pool: the SMTP connections to send over (kept open for the caller's next batch); default: one for
            this batch.
        stop: once set, the message in hand is sent and recorded, and the rest of the batch goes back to the
            queue, due at once (``unclaim``), instead of waiting out its lease.
    """
    from claimflow.db import session_scope

    config = config or default_config()
    report = DrainReport()
    with session_scope(engine) as session:
        rows = claim_due(session, now=now(), limit=limit or config.batch_size, policy=config.policy)
        to_send, report.folded = fold_notices(rows)
        prepared = [prepare(session, row, config=config) for row in to_send]
    report.claimed = len(rows)
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(MailPool(max_per_connection=config.messages_per_connection))
        for index, item in enumerate(prepared):
            if stop is not None and stop.is_set():
                report.returned = unclaim(engine, prepared[index:], now=now())
                break
            error: ClaimflowError | None
            if isinstance(item, Unsendable):
                error = item.error
            else:
                try:
                    send(item, pool)
                    error = None
                except DeliveryFailed as exc:
                    error = exc
            with session_scope(engine) as session:
                status = record_result(
                    session,
                    outbox_id=item.outbox_id,
                    attempt=item.attempt,
                    error=error,
                    now=now(),
                    config=config,
                    random=random,
                )
            report.add(status)
    return report


def unclaim(engine: Any, items: Sequence[Outgoing | Unsendable], *, now: datetime) -> int:
    """Give claimed messages not yet sent back to the queue, due ``now`` and their attempt not counted (a sender
    told to stop); a row no longer this sender's is left alone. Returns how many went back."""
    from claimflow.db import session_scope

    returned = 0
    with session_scope(engine) as session:
        for item in items:
            mine = update(Outbox).where(col(Outbox.id) == item.outbox_id, col(Outbox.attempts) == item.attempt,
                                        col(Outbox.status) == OutboxStatus.sending.value)  # fmt: skip
            done = session.execute(mine.values(status=OutboxStatus.pending.value, attempts=item.attempt - 1,
                                               next_attempt_at=now))  # fmt: skip
            returned += cast("CursorResult[Any]", done).rowcount
    if returned:
        logger.info("%d claimed message(s) back in the queue, due now", returned)
    return returned


class Stop(Protocol):
    """What tells senders to stop: a ``threading.Event``, or ``_Either`` of two."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class _Either:
    """Set when either event is: a drain's own stop, or the caller's (``None``: only the first)."""

    own: threading.Event
    caller: threading.Event | None

    def is_set(self) -> bool:
        return self.own.is_set() or (self.caller is not None and self.caller.is_set())


def drain(
    engine: Any,
    *,
    now: Callable[[], datetime],
    config: OutboxConfig | None = None,
    max_batches: int = 100,
    random: Callable[[], float] = random_module.random,
    senders: int = 1,
    stop: threading.Event | None = None,
) -> DrainReport:
    """Deliver batches until nothing is due (or ``max_batches`` were taken); the sum of their reports.

    ``senders`` threads do it side by side, each with its own SMTP connections (``MailPool``) and claims: a
    message is claimed by one of them, under its lease, as between two desk runners. Sending waits on the
    network far more than it computes, so a few senders hide each other's round trips.

    Ctrl-C (``KeyboardInterrupt`` in the calling thread; ``claimflow outbox deliver`` turns SIGTERM into one) or
    ``stop`` set from elsewhere (the desk runner stopping) stops them gracefully: each records the message in hand
    and gives the rest of its batch back to the queue; then the interrupt goes on to the caller, or the report of
    what was done is returned. Killed between a send and its record, a message was sent again after its lease
    (delivery is at least once): a stop no longer does that. A second Ctrl-C leaves at once. The senders are
    threads even when there is one, so the calling thread only waits and a signal never lands between a send and
    its record.
    """
    config = config or default_config()
    total = DrainReport()
    lock = threading.Lock()
    batches = iter(range(max_batches))
    halt = threading.Event()  # this drain's own stop: Ctrl-C, a sender failing (never the caller's event)
    stopped = _Either(halt, stop)

    failed: list[BaseException] = []

    def sender(done: threading.Event) -> None:
        try:
            with MailPool(max_per_connection=config.messages_per_connection) as pool:
                while not stopped.is_set():
                    with lock:
                        if next(batches, None) is None:
                            return
                    report = deliver_batch(engine, now=now, config=config, random=random, pool=pool, stop=stopped)
                    with lock:
                        total.merge(report)
                    if report.claimed == 0:
                        return
        except BaseException as exc:  # the database gone, a bug: the others stop too, and the caller is told
            failed.append(exc)
            halt.set()
        finally:
            done.set()

    senders = max(1, senders)
    # Waited for with events, not Thread.join: a join that Ctrl-C interrupts marks the thread finished while it
    # still runs (CPython 3.11, bpo-45274's fix), so a second join returned at once with a message in hand.
    finished = [threading.Event() for _ in range(senders)]
    threads = [threading.Thread(target=sender, args=(done,), name=f"outbox-sender-{n}", daemon=True)
               for n, done in enumerate(finished)]  # fmt: skip
    try:
        for thread in threads:  # an interrupt while they start stops those already sending too
            thread.start()
        for done in finished:
            done.wait()
    except KeyboardInterrupt:
        halt.set()
        logger.warning("stopping: the messages in hand are sent and recorded, the rest go back to the queue "
                       "(Ctrl-C again to leave them to their lease)")  # fmt: skip
        for thread, done in zip(threads, finished, strict=True):
            if thread.ident is not None:  # started
                done.wait()
        raise
    if failed:
        raise failed[0]
    return total


# --- operator tools ---------------------------------------------------------------------------------------


@dataclass
class Released:
    """What ``release_held`` did: the rows queued, those still held with why, and those withdrawn (their case
    was decided before they could be sent)."""

    queued: list[Outbox] = field(default_factory=list)
    still_held: list[tuple[Outbox, str]] = field(default_factory=list)
    withdrawn: list[Outbox] = field(default_factory=list)


def release_held(
    session: Session,
    *,
    now: datetime,
    config: OutboxConfig,
    case_id: int | None = None,
    outbox_id: int | None = None,
    edits: Mapping[str, str] | None = None,
    by: str = "system",
    limit: int = 500,
) -> Released:
    """Check the held messages again (the desk's phone now set, a template or the wording rules fixed): each that
    renders and passes is queued for delivery, and the ``fix_wording`` step it opened is done; the others stay
    held with the current reason. A held letter about a decision still to come whose case has been decided
    meanwhile (``models.notices.stale``) is withdrawn instead: sent now it would tell the customer something
    no longer true. The caller commits; a batch of ``limit`` rows, oldest first.

    Args:
        case_id, outbox_id: only the held messages of this case, or this one message.
        edits: new values for this one message (``outbox_id``): the handler writes the clause a rejection lacked;
            only values the message already has, recorded on the case by name (not value) with ``by``.

    Raises:
        InvalidInput: edits without one message, or naming a value the message does not have.
        NotFound: ``outbox_id`` is no held message.
    """
    from tasks.cases import append_event

    # never checked again first, then the longest since (a still-held row's next_attempt_at marks its last check):
    # a backlog of letters that stay held does not keep the newer ones from being looked at
    statement = (
        select(Outbox)
        .where(Outbox.status == OutboxStatus.held)
        .order_by(col(Outbox.next_attempt_at).is_not(None), col(Outbox.next_attempt_at), col(Outbox.id))
        .limit(limit)
    )
    if case_id is not None:
        statement = statement.where(Outbox.case_id == case_id)
    if outbox_id is not None:
        statement = statement.where(Outbox.id == outbox_id)
    rows = list(session.exec(statement.with_for_update(skip_locked=True)))
    if edits:
        if outbox_id is None:
            raise InvalidInput("an edit is made to one held message: name it (its outbox id)")
        if not rows:
            raise NotFound(f"no held message {outbox_id}")
        unknown = sorted(set(edits) - set(rows[0].context))
        if unknown:
            raise InvalidInput(f"message {outbox_id} has no value {', '.join(unknown)}; it has "
                               f"{', '.join(sorted(rows[0].context))}")  # fmt: skip
        rows[0].context = {**rows[0].context, **{k: str(v).strip() for k, v in edits.items()}}
    elif outbox_id is not None and not rows:
        raise NotFound(f"no held message {outbox_id}")
    released = Released()
    for row in rows:
        customer = session.get(Customer, int(parse_recipient(row.recipient)[1]))
        case = session.get(Case, row.case_id, with_for_update=True) if row.case_id is not None else None
        if edits and case is not None:
            edited = {"template": row.template, "outbox_id": row.id, "values": sorted(edits)}
            append_event(session, case=case, actor=by, type="message_edited", data=edited, now=now)
        if case is not None and stale(row.template, kind=case.kind, status=case.status):
            _withdraw(session, row, case=case, now=now)
            released.withdrawn.append(row)
            continue
        try:
            if customer is None or case is None:
                raise NotFound("its customer or case no longer exists")
            violations = _checked(config, row.template, language=row.language, context=row.context,
                                  customer=customer)  # fmt: skip
            if violations:
                if not _fix_step_open(session, case=case, template=row.template, language=row.language):
                    # held for the desk's phone first, its wording never checked: now the handler gets the task
                    _hold_back(session, case=case, template=row.template, language=row.language,
                               violations=violations, actor="system", now=now)  # fmt: skip
                raise WordingBlocked("held by the wording check: " + ", ".join(v.rule_id for v in violations))
        except ClaimflowError as still:
            row.last_error, row.next_attempt_at = str(still)[:2000], now  # when it was last checked
            session.add(row)
            released.still_held.append((row, row.last_error))
            continue
        row.status, row.next_attempt_at, row.last_error = OutboxStatus.pending, now, None
        session.add(row)
        _close_fix_task(session, row, case=case, now=now, outcome="released")
        append_event(session, case=case, actor="system", type="message_released",
                     data={"template": row.template, "outbox_id": row.id}, now=now)  # fmt: skip
        released.queued.append(row)
    return released


def _withdraw(session: Session, row: Outbox, *, case: Case, now: datetime) -> None:
    """A held letter the case's decision has overtaken: kept as ``withdrawn``, never sent; its fix_wording task is
    done, and the case says so."""
    from tasks.cases import append_event

    row.status, row.next_attempt_at = OutboxStatus.withdrawn, None
    row.last_error = f"withdrawn: the case was {case.status} before it could be sent"
    session.add(row)
    _close_fix_task(session, row, case=case, now=now, outcome="withdrawn")
    append_event(session, case=case, actor="system", type="message_withdrawn",
                 data={"template": row.template, "outbox_id": row.id, "status": str(case.status)}, now=now)  # fmt: skip


def _fix_tasks(session: Session, *, case: Case, template: str, language: str) -> list[Step]:
    """The open ``fix_wording`` steps of the case for this letter (its template and language)."""
    steps = select(Step).where(Step.case_id == case.id, Step.name == "fix_wording", Step.status == StepStatus.open)
    return [s for s in session.exec(steps) if (s.policy_rule or "").startswith(f"{template}/{language}:")]


def _fix_step_open(session: Session, *, case: Case, template: str, language: str) -> bool:
    return bool(_fix_tasks(session, case=case, template=template, language=language))


def _close_fix_task(session: Session, row: Outbox, *, case: Case, now: datetime, outcome: str) -> None:
    from tasks.workflow import close_step

    for step in _fix_tasks(session, case=case, template=row.template, language=row.language):
        close_step(session, case=case, step=step, now=now, outcome=outcome, actor="system")


def list_outbox(session: Session, *, status: str | None = None, limit: int = 50) -> list[Outbox]:
    """Messages newest first, optionally of one status."""
    if limit < 1:
        raise InvalidInput("limit must be at least 1")
    statement = select(Outbox).order_by(col(Outbox.id).desc()).limit(limit)
    if status is not None:
        if status not in {s.value for s in OutboxStatus}:
            raise InvalidInput(f"unknown outbox status {status!r}; known: {', '.join(s.value for s in OutboxStatus)}")
        statement = statement.where(Outbox.status == status)
    return list(session.exec(statement))


def retry(session: Session, *, outbox_id: int, now: datetime, actor: str = "system") -> Outbox:
    """Put a dead or blocked message back in the queue, due now, with a fresh count of attempts.

    Raises:
        NotFound: no such message.
        InvalidInput: the message is not dead or blocked (it is queued, sending or sent).
    """
    row = session.exec(select(Outbox).where(Outbox.id == outbox_id).with_for_update()).first()
    if row is None:
        raise NotFound(f"no outbox message #{outbox_id}")
    if row.status not in (OutboxStatus.dead, OutboxStatus.blocked):
        raise InvalidInput(f"outbox message #{outbox_id} is {row.status}; only dead or blocked messages are retried")
    _case_event(session, row, "message_retried", {"outbox_id": row.id, "previous_status": str(row.status)}, now, actor)
    row.status = OutboxStatus.pending
    row.attempts = 0
    row.next_attempt_at = now
    session.add(row)
    session.flush()
    logger.info("outbox #%s put back in the queue by %s", row.id, actor)
    return row

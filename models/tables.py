"""The database tables, in SQLModel families: ``XBase``, ``X(table=True)``, ``XCreate``, ``XPublic``.

Personal data (names, ID numbers, phone numbers, e-mail addresses, birth dates) lives in ``Customer`` and
nowhere else: other tables refer to the customer by id, and outbox rows name their recipient by reference
(``customer:42``), resolved only when the message is delivered.

Enumerated columns are stored as short strings (not database enum types) so that adding a state is a code
change, not a schema migration; the lifecycles in ``models.lifecycle`` are what keeps them honest.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Index,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from models.enums import CaseKind, Channel, ContactChannel, OutboxStatus, Priority, StaffRole, StepStatus
from models.types import UTCDateTime

JSONType = JSON().with_variant(JSONB(), "postgresql")


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


def _json_list() -> Any:
    return Field(default_factory=list, sa_type=JSONType)


# --- people ---------------------------------------------------------------------------------------------


class CustomerBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    id_number: str | None = Field(default=None, max_length=64, schema_extra={"pattern": r"^[0-9A-Za-z-]{4,64}$"})
    phone: str | None = Field(default=None, max_length=40, schema_extra={"pattern": r"^\+?[0-9][0-9 ()-]{4,38}$"})
    email: str | None = Field(default=None, max_length=254, schema_extra={"pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$"})
    birth_date: date | None = None
    language: str = Field(default="zh-CN", max_length=16, schema_extra={"pattern": r"^[a-z]{2}(-[A-Z]{2})?$"})
    preferred_channel: ContactChannel = Field(default=ContactChannel.email, sa_type=String(16))
    elderly: bool = False
    vulnerable: bool = False
    vulnerability_note: str | None = Field(default=None, max_length=500)


class Customer(CustomerBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class CustomerCreate(CustomerBase):
    pass


class DepartmentBase(SQLModel):
    code: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    active: bool = True


class Department(DepartmentBase, table=True):
    id: int | None = Field(default=None, primary_key=True)


class StaffBase(SQLModel):
    username: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=254)
    role: StaffRole = Field(sa_type=String(16))
    department_id: int | None = Field(default=None, foreign_key="department.id")
    skills: list[str] = _json_list()
    languages: list[str] = _json_list()
    active: bool = True
    capacity: int = Field(default=20, ge=0)


class Staff(StaffBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    totp_secret: str | None = Field(default=None, sa_type=Text)
    """The staff member's TOTP secret (RFC 6238), encrypted with the desk's secret key."""
    totp_last_counter: int | None = None
    """The last time-step counter accepted, so one code cannot be used twice."""
    codes_refused: int = 0
    """Wrong approval codes given in a row (a right one resets it); at ``models.otp.MAX_WRONG_CODES`` the member's
    codes are refused until ``codes_locked_until``."""
    codes_locked_until: datetime | None = _ts()


class StaffPublic(SQLModel):
    id: int
    username: str
    name: str
    role: StaffRole
    department_id: int | None
    skills: list[str]
    languages: list[str]
    active: bool
    capacity: int


# --- cases ----------------------------------------------------------------------------------------------


class CaseCounter(SQLModel, table=True):
    """The last number handed out per case kind and year; bumped with one atomic upsert per filing."""

    __tablename__ = "case_counter"

    kind: str = Field(primary_key=True, max_length=16)
    year: int = Field(primary_key=True)
    last_value: int = 0


class StaffLoad(SQLModel, table=True):
    """Each staff member's open load (their open or paused steps), kept by the database itself.

    Routing reads it instead of counting every open step: that count grew with the backlog (about 0.3 ms per
    1,000 open steps, on every filing). Triggers on ``step`` (migration 0013) add and take away one whenever a
    step starts or stops counting for someone, in the same transaction, whichever code (or hand-written SQL)
    changed it. A step written with the triggers off (``session_replication_role = replica``) is not counted.
    """

    __tablename__ = "staff_load"

    staff_id: int = Field(primary_key=True, foreign_key="staff.id")
    open_steps: int = 0


class CaseBase(SQLModel):
    kind: CaseKind = Field(sa_type=String(16))
    channel: Channel = Field(sa_type=String(16))
    product_line: str | None = Field(default=None, max_length=64)
    jurisdiction: str = Field(default="CN", max_length=16)
    policy_number: str | None = Field(default=None, max_length=64)
    amount_claimed: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=2, sa_type=Numeric(14, 2))
    currency: str = Field(default="CNY", max_length=3, schema_extra={"pattern": r"^[A-Z]{3}$"})
    priority: Priority = Field(default=Priority.normal, sa_type=String(16))
    description: str | None = Field(default=None, sa_type=Text)
    incident_date: date | None = None


class Case(CaseBase, table=True):
    __table_args__ = (
        Index("ix_case_status_kind", "status", "kind"),
        # the cases about a case (a complaint about a claim), for its page: only the few that have one are indexed
        Index(
            "ix_case_related_case_id",
            "related_case_id",
            postgresql_where=text("related_case_id IS NOT NULL"),
            sqlite_where=text("related_case_id IS NOT NULL"),
        ),
        CheckConstraint("amount_claimed IS NULL OR amount_claimed >= 0", name="ck_case_amount_nonnegative"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True, index=True)
    status: str = Field(max_length=32)
    outcome: str | None = Field(default=None, max_length=32)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    handler_id: int | None = Field(default=None, foreign_key="staff.id", index=True)
    department_id: int | None = Field(default=None, foreign_key="department.id")
    related_case_id: int | None = Field(default=None, foreign_key="case.id")
    opened_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    closed_at: datetime | None = _ts()
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    flow_run_id: str | None = Field(default=None, max_length=36)
    run_key: str | None = Field(default=None, max_length=32)
    """Random, set at filing: the Prefect idempotency key of the case's runs is made from it (``tasks.runs``)."""
    """The Prefect flow run driving the case (the reconciler starts one where it is missing)."""
    links_revoked_at: datetime | None = _ts()
    """Status page links issued at or before this time are refused (``claimflow case link --revoke``)."""


class CaseCreate(CaseBase):
    """What a caller gives to file a case; the customer comes with it."""

    customer: CustomerCreate
    related_case_number: str | None = None


class CasePublic(CaseBase):
    """A case as shown to staff: no personal data (the customer is referred to by id)."""

    id: int
    number: str
    status: str
    outcome: str | None
    customer_id: int
    handler_id: int | None
    department_id: int | None
    related_case_id: int | None
    opened_at: datetime
    closed_at: datetime | None


class Step(SQLModel, table=True):
    """One step of a case (intake, review, ...) with its clock.

    ``next_check_at`` is the earliest of the step's next reminder and its deadline: the SLA watcher asks for
    open steps whose ``next_check_at`` has come, through a partial index, so its cost follows what is due.
    """

    __table_args__ = (
        Index(
            "ix_step_open_due",
            "due_at",
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
        Index(
            "ix_step_open_next_check",
            "next_check_at",
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
        UniqueConstraint("case_id", "name", "attempt", name="uq_step_case_name_attempt"),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id")  # looked up through uq_step_case_name_attempt
    name: str = Field(max_length=32)
    attempt: int = 1
    status: StepStatus = Field(default=StepStatus.open, sa_type=String(16))
    assignee_id: int | None = Field(default=None, foreign_key="staff.id", index=True)
    started_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    due_at: datetime | None = _ts()
    next_check_at: datetime | None = _ts()
    paused_since: datetime | None = _ts()
    paused_seconds: int = 0
    pauses: list[dict[str, str]] = _json_list()
    completed_at: datetime | None = _ts()
    outcome: str | None = Field(default=None, max_length=64)
    policy_rule: str | None = Field(default=None, max_length=200)
    schedule: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    """Reminder and escalation times computed from the SLA pack: {"reminders": [...], "escalations": [...]}."""
    reminders_done: int = 0
    escalation_level: int = 0
    """The highest level of the escalation ladder raised in the step's current round (0: none yet)."""
    ladder_round: int = 0
    """How many times the step's ladder started afresh after it had escalated (an extension, a resumed clock):
    each round's escalations are its own rows, so a second breach calls the supervisor again."""
    extensions: list[str] = _json_list()
    waiting_key: str | None = Field(default=None, max_length=100)
    """Key of the decision the case's flow run is suspended on, while it waits for a person."""


class Escalation(SQLModel, table=True):
    """A level of a breached step's ladder, raised by the SLA watcher, decided by a supervisor or manager.

    One row per step, ladder round and level: a step that breaches again after an extension starts a new round.
    """

    __table_args__ = (UniqueConstraint("step_id", "round", "level", name="uq_escalation_step_round_level"),)

    id: int | None = Field(default=None, primary_key=True)
    step_id: int = Field(foreign_key="step.id")  # looked up through uq_escalation_step_round_level
    case_id: int = Field(foreign_key="case.id", index=True)
    round: int = 0
    """The step's ``ladder_round`` when this was raised."""
    level: int = Field(ge=1)
    role: StaffRole = Field(sa_type=String(16))
    reason: str = Field(max_length=500)
    raised_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    decide_by: datetime | None = _ts()
    decided_by_id: int | None = Field(default=None, foreign_key="staff.id")
    decision: str | None = Field(default=None, max_length=32)
    decided_at: datetime | None = _ts()
    flow_run_id: str | None = Field(default=None, max_length=36)
    run_key: str | None = Field(default=None, max_length=32)
    """Random, set when raised: the Prefect idempotency key of its runs is made from it (``tasks.runs``)."""


class Approval(SQLModel, table=True):
    """A four-eyes decision: the approver is never the requester (checked here) nor the case handler
    (checked by ``models.approval`` before the row is written)."""

    __table_args__ = (
        CheckConstraint("approver_id IS NULL OR approver_id <> requested_by_id", name="ck_approval_four_eyes"),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    subject: str = Field(max_length=32)
    subject_ref: str | None = Field(default=None, max_length=64)
    amount: Decimal | None = Field(default=None, sa_type=Numeric(14, 2))
    requested_by_id: int = Field(foreign_key="staff.id")
    approver_id: int | None = Field(default=None, foreign_key="staff.id")
    decision: str | None = Field(default=None, max_length=16)
    comment: str | None = Field(default=None, sa_type=Text)
    requested_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    decided_at: datetime | None = _ts()


class DocumentRequirement(SQLModel, table=True):
    __tablename__ = "document_requirement"
    __table_args__ = (UniqueConstraint("case_id", "document_type", name="uq_document_case_type"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    document_type: str = Field(max_length=64)
    required: bool = True
    requested_at: datetime | None = _ts()
    received_at: datetime | None = _ts()
    note: str | None = Field(default=None, max_length=500)


class SurveyInvitation(SQLModel, table=True):
    """One survey link sent to a customer about one case; answered once (``answered_at``), then refused."""

    __tablename__ = "survey_invitation"
    __table_args__ = (
        UniqueConstraint("case_id", name="uq_survey_invitation_case"),
        Index("ix_survey_invitation_customer_sent", "customer_id", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id")
    customer_id: int = Field(foreign_key="customer.id")
    reason: str = Field(max_length=16)
    """``resolution`` (sent when the case was settled) or ``periodic`` (sampled by the satisfaction survey)."""
    language: str = Field(max_length=16)
    sent_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    answered_at: datetime | None = _ts()


class Feedback(SQLModel, table=True):
    """What a customer said about a case (a survey answer, an e-mail reply, a phone note, a webhook), or about the
    desk in general with no case (a hotline call, a web form, a social-media post): then ``case_id`` is empty, the
    customer is named when they could be identified, and a supervisor closes it with ``handled_at``."""

    __table_args__ = (
        CheckConstraint("score IS NULL OR (score BETWEEN 1 AND 5)", name="ck_feedback_score_range"),
        UniqueConstraint("invitation_id", name="uq_feedback_invitation"),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    customer_id: int | None = Field(default=None, foreign_key="customer.id")
    """General feedback: the customer on file it came from, when the contact given matched one."""
    score: int | None = None
    solved: bool | None = None
    comment: str | None = Field(default=None, sa_type=Text)
    channel: str = Field(max_length=16)
    classification: str | None = Field(default=None, max_length=16)
    received_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    source: str | None = Field(default=None, max_length=200)
    """Who or what brought it: the staff member's username, the webhook source, the mail's Message-ID."""
    invitation_id: int | None = Field(default=None, foreign_key="survey_invitation.id")
    complaint_case_id: int | None = Field(default=None, foreign_key="case.id")
    """The complaint case this feedback opened, if it was a complaint."""
    handled_at: datetime | None = _ts()
    """General feedback: when a supervisor closed it (``claimflow feedback done --feedback ID``)."""
    handled_by: str | None = Field(default=None, max_length=64)
    handled_note: str | None = Field(default=None, sa_type=Text)
    """What the supervisor did with it."""


OUTBOX_DUE = "status IN ('pending', 'sending')"
"""The outbox rows a sender may claim (waiting, or leased by a sender that may have died), written out so that the
partial index ``ix_outbox_due`` and the claim's query say it in the same words: PostgreSQL and SQLite use a partial
index only for a query whose condition they can see implies the index's, and neither sees it through bound
parameters in every plan."""


class Outbox(SQLModel, table=True):
    """A message waiting to leave. Written in the same transaction as the decision to send it."""

    __table_args__ = (
        Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),
        Index(  # what a sender claims (tasks.outbox.claim_due), in the order it claims it
            "ix_outbox_due",
            "priority",
            "next_attempt_at",
            "id",
            postgresql_where=text(OUTBOX_DUE),
            sqlite_where=text(OUTBOX_DUE),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    channel: str = Field(max_length=32)
    recipient: str = Field(max_length=200)
    template: str = Field(max_length=100)
    language: str = Field(default="zh-CN", max_length=16)
    context: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    status: OutboxStatus = Field(default=OutboxStatus.pending, sa_type=String(16))
    priority: int = Field(default=0, sa_type=SmallInteger, sa_column_kwargs={"server_default": "0"})
    """0 first; 1 after every due 0 (``MessageSpec.later``: a staff notice the worklist already shows)."""
    attempts: int = 0
    next_attempt_at: datetime | None = _ts()
    last_error: str | None = Field(default=None, sa_type=Text)
    idempotency_key: str = Field(max_length=200, unique=True)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    sent_at: datetime | None = _ts()
    folded_into: int | None = None
    """``folded``: the message (an outbox id) that carried this one, a digest of the reader's waiting notices."""


class Event(SQLModel, table=True):
    """One entry of a case's append-only, hash-chained audit log.

    ``hash`` is SHA-256 over ``prev_hash`` and the canonical content of this row (see ``models.audit``).
    Database triggers refuse UPDATE and DELETE on this table; no code path does either.
    """

    __table_args__ = (UniqueConstraint("case_id", "sequence", name="uq_event_case_sequence"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id")
    sequence: int = Field(ge=1)
    at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    actor: str = Field(max_length=64)
    type: str = Field(max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class EventPublic(SQLModel):
    sequence: int
    at: datetime
    actor: str
    type: str
    data: dict[str, Any]


# --- intake -----------------------------------------------------------------------------------------------


class IntakeRequest(SQLModel, table=True):
    """A webhook post accepted under an ``Idempotency-Key``: the same key and body get the same answer again;
    the same key with another body is refused (409)."""

    __tablename__ = "intake_request"
    __table_args__ = (UniqueConstraint("source", "idempotency_key", name="uq_intake_source_key"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    idempotency_key: str = Field(max_length=200)
    body_sha256: str = Field(max_length=64)
    status_code: int
    response: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    received_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class AuditCheckpoint(SQLModel, table=True):
    """The heads of the cases' event chains at a moment, signed with the desk's audit key (``models.audit``):
    a chain cut short, rewritten or removed no longer reaches its checkpointed head. Each covers the cases with
    events since the one before and carries that one's signature; the newest is also written outside the
    database (``<data dir>/audit-anchor``)."""

    __tablename__ = "audit_checkpoint"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    through_event_id: int
    heads: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    previous: str = Field(max_length=64)
    signature: str = Field(max_length=64)


class MailMessage(SQLModel, table=True):
    """Every e-mail the intake has read and what became of it (filed, added to a case, skipped), once per
    ``dedup_key`` (``models.mail.mail_key``: Message-ID, sender and content; a Message-ID alone is reused)."""

    __tablename__ = "mail_message"

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(max_length=64, unique=True, index=True)
    message_id: str = Field(max_length=512, index=True)
    mailbox: str = Field(max_length=200)
    uid: int | None = None
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    disposition: str = Field(max_length=32)
    reason: str | None = Field(default=None, sa_type=Text)
    received_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class Attachment(SQLModel, table=True):
    """A document that arrived with a case (webhook or e-mail); the bytes live in the data directory."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=100)
    size: int = Field(ge=0)
    sha256: str = Field(max_length=64)
    storage_path: str = Field(max_length=500)
    source: str = Field(max_length=16)
    document_type: str | None = Field(default=None, max_length=64)
    received_at: datetime = Field(sa_type=UTCDateTime, nullable=False)

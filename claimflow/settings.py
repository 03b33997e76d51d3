"""The one settings object of claimflow.

Every setting is read from the environment with the ``CLAIMFLOW_`` prefix (or from a ``.env`` file in the
working directory). Secrets are ``SecretStr`` values: they print as ``**********`` and are only revealed
where they are used.
"""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.outside import OUTSIDE_BODIES


def _outside_bodies() -> dict[str, str | dict[str, str]]:
    return {code: dict(names) for code, names in OUTSIDE_BODIES.items()}


def _default_data_dir() -> Path:
    """XDG data directory: ``$XDG_DATA_HOME/claimflow`` or ``~/.local/share/claimflow``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "claimflow"


class Settings(BaseSettings):
    """claimflow's configuration. Each field is one ``CLAIMFLOW_<NAME>`` environment variable."""

    model_config = SettingsConfigDict(
        env_prefix="CLAIMFLOW_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the embedded database and stored attachments live; created on first use.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the case database; default: SQLite file claimflow.db in the data "
        "directory. PostgreSQL: postgresql+psycopg://user:password@host:5432/name",
    )
    office_timezone: str = Field(
        default="Asia/Shanghai", description="IANA time zone in which calendars and office hours are read."
    )
    region: str = Field(default="CN", description="Region whose working-day calendar applies by default.")
    policy_pack: str = Field(
        default="service-standard", description="SLA policy pack applied to every case by default."
    )
    default_language: str = Field(default="zh-CN", description="Language of messages when a customer has none.")
    webhook_secrets: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description='Intake sources and their HMAC secrets, JSON: {"webform": ["new", "old"]}; two secrets '
        "are valid at once while one is rotated.",
    )
    survey_link_key: SecretStr | None = Field(
        default=None,
        description="Key that signs survey links; default: a key file made on first use in the data directory.",
    )
    public_url: str | None = Field(
        default=None,
        description="Address customers reach the web app at (survey links start with it), e.g. "
        "https://desk.insurer.example; default: http://<api host>:<api port>.",
    )
    survey_valid_days: int = Field(default=14, ge=1, description="Days a survey link stays valid.")
    form_filings_per_hour: int = Field(
        default=10,
        ge=1,
        description="Online claim and complaint forms filed per client address and hour (per "
        "process); more are refused with a page that gives the desk's phone.",
    )
    form_max_bytes: int = Field(default=32_768, ge=4096, description="Largest online form accepted, in bytes.")
    status_link_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="Days the link to a customer's case status page stays valid; every customer message carries a "
        "fresh one (claimflow case link CLM-... --revoke withdraws those sent).",
    )
    survey_share: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Share of recently closed cases, per handler and product line, the satisfaction-survey "
        "deployment invites (at least one per group).",
    )
    survey_quiet_days: int = Field(
        default=90, ge=0, description="No customer is invited to a survey twice within this many days."
    )
    survey_lookback_days: int = Field(
        default=7, ge=1, description="The satisfaction-survey deployment samples cases closed in these last days."
    )
    survey_interval_hours: int = Field(
        default=24, ge=1, description="Interval of the satisfaction-survey deployment's schedule."
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key that encrypts enrolled staff approval secrets (TOTP) at rest; default: a key "
        "file made on first use in the data directory (claimflow config new-key makes one).",
    )
    prefect_host: str = Field(default="127.0.0.1", description="Address the embedded Prefect server listens on.")
    prefect_port: int = Field(default=4200, ge=1, le=65535, description="Port of the Prefect server and its UI.")
    ui_url: str | None = Field(
        default=None,
        description="The Prefect UI's address as staff reach it, for the links in staff messages and 'claimflow "
        "staff links' (e.g. https://desk.insurer.example behind a proxy); default http://<prefect host>:<port>.",
    )
    prefect_auth: SecretStr | None = Field(
        default=None,
        description="Basic-auth string user:password protecting the Prefect server and UI; default: one made on "
        "first use in <data dir>/prefect-auth.",
    )
    prefect_database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy async URL of the Prefect server's own database, e.g. "
        "postgresql+asyncpg://user:password@host:5432/prefect; default: SQLite in the data directory.",
    )
    runner_limit: int = Field(default=10, ge=1, description="Flow runs the desk runner executes at once.")
    runner_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the desk runner asks the Prefect server for due runs."
    )
    runner_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="How far 'claimflow runner' lowers its CPU priority (nice) at start, so that intake gets the "
        "cores first in a surge; 0 leaves it.",
    )
    delivery_nice: int = Field(
        default=5,
        ge=0,
        le=19,
        description="The same for 'claimflow outbox deliver --loop': below intake, above the case runs.",
    )
    prefect_server_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="The same for the Prefect server that 'claimflow up' starts.",
    )
    runner_heartbeats: bool = Field(
        default=False,
        description="Send Prefect's flow-run heartbeats from the desk runner (for a Prefect automation that "
        "watches them); off: a leg lasts seconds and the reconciler finds stranded runs by their age.",
    )
    stranded_run_minutes: float = Field(
        default=15,
        gt=0,
        description="A case run Pending or Running for longer than this has lost its runner (killed mid-leg): "
        "the reconciler marks it crashed and starts a new one. A leg takes seconds; keep this well above the "
        "longest database outage the tasks' retries ride out.",
    )
    jurisdiction_packs: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "CN": ["cn-regulatory"],
            "GB": ["uk-fca"],
            "AU": ["au-asic"],
            "US-CA": ["us-ca"],
        },
        description="Regulators' packs applied on top of the house pack, per case jurisdiction, JSON; the "
        "strictest deadline governs.",
    )
    documents_reply_days: int = Field(
        default=30, ge=1, description="Calendar days a customer is given to send missing documents."
    )
    outside_bodies: dict[str, str | dict[str, str]] = Field(
        default_factory=_outside_bodies,
        description="Where a complainant can take a complaint next, per jurisdiction, JSON: a name per language "
        '({"GB": {"en": "the Financial Ombudsman Service", "zh-CN": "英国金融申诉专员服务机构"}}) or one name for '
        "all; named in complaint outcomes, delay notices and the published service standards.",
    )
    second_approval_threshold: Decimal = Field(
        default=Decimal("50000"),
        ge=0,
        description="A claim decision for this amount or more needs a second approver (never the handler).",
    )
    customer_email_url: SecretStr | None = Field(
        default=None,
        description="apprise URL of the SMTP server that mails customers, without a recipient: "
        "mailtos://user:password@smtp.example.com:587?from=desk@insurer.example (the customer's address is "
        "added as to= when a message leaves).",
    )
    customer_sms_url: SecretStr | None = Field(
        default=None,
        description="apprise URL of the SMS gateway with {phone} where the customer's number goes, e.g. "
        "json://sms-gateway.internal/send?-to={phone} (apprise passes on query parameters that start "
        "with -) or twilio://SID:TOKEN@+8610000000/{phone}.",
    )
    staff_channels: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description='apprise URLs per staff reference, JSON: {"department:claims-motor": ["wecombot://KEY"], '
        '"role:supervisor": ["dingtalk://TOKEN"], "staff:li.wei": ["mailto://..."]}.',
    )
    desk_phone: str = Field(
        default="",
        description="The desk's phone number, quoted in customer messages. No default: a desk must not send its "
        "customers to another company's line; until it is set, customer messages wait as held (claimflow outbox "
        "list --status held) and are sent once it is.",
    )
    desk_email: str = Field(
        default="service@insurer.example",
        description="The desk's e-mail address, quoted in customer messages.",
    )
    wording_rules_path: Path | None = Field(
        default=None,
        description="Honest-wording rules (YAML) checked before a customer message is queued; default: the "
        "shipped policies/wording.yaml.",
    )
    dead_letter_recipient: str = Field(
        default="role:supervisor",
        description="Who is alerted when a message is dead-lettered (staff:<username>, department:<code> "
        "or role:<role>, a key of CLAIMFLOW_STAFF_CHANNELS).",
    )
    api_freeze_heap: bool = Field(
        default=True,
        description="Once the intake API has started, keep its start-up objects out of Python's cycle collector "
        "(gc.freeze): a full collection over them stalled every request for about 110 ms.",
    )
    api_group_commit_max: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="Filings the intake API writes in one transaction at most (group commit: the requests that "
        "arrived while the previous batch was written, filed at once, and one by one under a savepoint each where "
        "they cannot be; 1 files each in a transaction of its own).",
    )
    api_filer_socket: str | None = Field(
        default=None,
        description="Unix socket of the intake's filing process (claimflow.web.filer): the API's processes hand "
        "it their filings instead of writing them themselves. Set by 'claimflow api --filer'; set it yourself only "
        "when you run 'python -m claimflow.web.filer' beside uvicorn.",
    )
    api_filer_key: SecretStr | None = Field(
        default=None,
        description="The key the filing process and the API's processes prove to each other on connecting "
        "(CLAIMFLOW_API_FILER_SOCKET); 'claimflow api --filer' makes a new one each start.",
    )
    outbox_batch_size: int = Field(default=100, ge=1, description="Outbox rows claimed per delivery batch.")
    outbox_senders: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Delivery threads side by side in each pass, each with its own SMTP connections; sending "
        "mostly waits on the network, so a few hide each other's round trips.",
    )
    smtp_messages_per_connection: int = Field(
        default=100,
        ge=1,
        description="E-mails sent over one SMTP connection before a new one is opened (many servers refuse more "
        "than about 100 per connection).",
    )
    outbox_max_attempts: int = Field(
        default=6, ge=1, description="Delivery attempts of one message before it is dead-lettered."
    )
    outbox_backoff_seconds: float = Field(
        default=30.0, gt=0, description="Delay before the first retry; doubled at every further attempt."
    )
    outbox_backoff_max_seconds: float = Field(
        default=3600.0, gt=0, description="Longest delay between two delivery attempts."
    )
    outbox_lease_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a claimed message is reserved for its sender; a sender that dies leaves it to "
        "be claimed again after this.",
    )
    case_view_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the desk runner publishes changed cases to their runs in the Prefect UI (the case's "
        "artifact and its assignee:, team:, waiting:, due:, sla: tags).",
    )
    outbox_poll_seconds: int = Field(
        default=5,
        ge=1,
        description="How often the desk runner looks for messages due (and the deliver-outbox deployment's "
        "schedule where delivery runs as a deployment: 'python -m flows.delivery').",
    )
    reconcile_seconds: int = Field(
        default=300,
        ge=30,
        description="How often 'claimflow up' runs reconcile (runs missing, dead or stranded; cases waiting for a "
        "handler with room): each pass is a flow run, and every minute was 1,440 housekeeping runs a day.",
    )
    run_retention_days: int = Field(
        default=30,
        ge=1,
        description="Finished flow runs (housekeeping, closed cases) older than this are removed by the embedded "
        "Prefect server with their logs and artifacts; the case database keeps every case and its history.",
    )
    mail_imap_host: str | None = Field(
        default=None, description="IMAP server of the desk's intake mailbox; e-mail intake is off while unset."
    )
    mail_imap_port: int | None = Field(
        default=None, ge=1, le=65535, description="IMAP port; default 993 for tls, 143 for starttls and plain."
    )
    mail_imap_security: str = Field(
        default="tls",
        pattern=r"^(tls|starttls|plain)$",
        description="tls: IMAPS (TLS from the first byte); starttls: upgrade a plain connection; plain: no "
        "encryption at all (a server on the same machine or a test server only).",
    )
    mail_imap_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the certificate authorities to trust for the IMAP server; default: the "
        "system's. Certificates and host names are always verified.",
    )
    mail_imap_user: str | None = Field(default=None, description="IMAP login of the intake mailbox.")
    mail_imap_password: SecretStr | None = Field(default=None, description="IMAP password of the intake mailbox.")
    mail_imap_mailbox: str = Field(default="INBOX", description="Folder that is read for new mail.")
    mail_imap_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Network timeout of each IMAP connection and command."
    )
    mail_poll_seconds: int = Field(default=60, ge=5, description="Interval of the mail-intake deployment's schedule.")
    mail_batch_size: int = Field(
        default=50,
        ge=1,
        description="Unseen mails read per chunk; a mail-intake run takes chunk after chunk until none is left or "
        "CLAIMFLOW_MAIL_POLL_SECONDS have passed ('claimflow mail poll': one chunk).",
    )
    mail_file_at_once: int = Field(
        default=32,
        ge=1,
        le=500,
        description="Mails that open new cases, read one after the other, filed in one transaction at most (should "
        "it fail, each is taken on its own; 1 takes every mail in a transaction of its own).",
    )
    mail_max_message_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        description="A mail bigger than this is not downloaded: it is recorded as rejected and marked seen.",
    )
    mail_max_attachment_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1,
        description="An attachment bigger than this is not stored (the mail is taken, the skip is recorded).",
    )
    mail_max_attachments: int = Field(default=20, ge=0, description="Attachments stored per mail at most.")
    mail_max_description_chars: int = Field(
        default=20_000, ge=100, description="Longest mail text kept as a case description or a reply's text."
    )
    api_host: str = Field(default="127.0.0.1", description="Address the intake webhook API listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port of the intake webhook API.")
    api_max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body the webhook API reads (attachments are base64 inside it); larger "
        "is refused with 413.",
    )
    api_attachment_max_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1, description="Largest single attachment (decoded) a webhook may carry."
    )
    api_attachments_max_total_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="Largest total of the attachments (decoded) of one webhook."
    )
    api_attachments_max_count: int = Field(default=20, ge=0, description="Most attachments one webhook may carry.")
    webhook_tolerance_seconds: int = Field(
        default=300,
        ge=1,
        description="How far X-Claimflow-Timestamp may be from the server's clock before a webhook is refused "
        "as a replay.",
    )
    webhook_v1_until: date | None = Field(
        default=date(2027, 3, 31),
        description="Last day version 1 webhook signatures (timestamp and body only) are accepted; from the day after "
        "only version 2 (method, path, source, Idempotency-Key, body). Empty: version 1 is refused already.",
    )
    api_launch_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long the API tries to start a new case's flow run after answering; the reconciler "
        "starts it later if Prefect does not answer in time.",
    )

    @field_validator("office_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def resolved_ui_url(self) -> str:
        """The UI's address for links: ``CLAIMFLOW_UI_URL``, else the embedded server's."""
        return (self.ui_url or f"http://{self.prefect_host}:{self.prefect_port}").rstrip("/")

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one or the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'claimflow.db'}"

    def described(self) -> list[tuple[str, str, str]]:
        """(environment variable, value as safe to print, description) for every setting."""
        rows = []
        for name, field in type(self).model_fields.items():
            value: Any = getattr(self, name)
            rows.append((f"CLAIMFLOW_{name.upper()}", _printable(value), field.description or ""))
        return rows


def _printable(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: [{len(v)} secret(s)]" for k, v in value.items()) + "}"
    if value is None:
        return "(not set)"
    if isinstance(value, str) and "://" in value:
        from sqlalchemy.engine import make_url

        try:
            return make_url(value).render_as_string(hide_password=True)
        except Exception:  # an unparsable URL is reported when it is used, not here
            return value
    return str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return Settings()

"""The one settings object of claimflow.

Every setting is read from the environment with the ``CLAIMFLOW_`` prefix (or from a ``.env`` file in the
working directory). Secrets are ``SecretStr`` values: they print as ``**********`` and are only revealed
where they are used.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    default_language: str = Field(
        default="zh-CN", description="Language of messages when a customer has none."
    )
    webhook_secrets: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description='Intake sources and their HMAC secrets, JSON: {"webform": ["new", "old"]}; two secrets '
        "are valid at once while one is rotated.",
    )
    survey_link_key: SecretStr | None = Field(default=None, description="Key that signs survey links.")
    secret_key: SecretStr | None = Field(
        default=None, description="Key that encrypts enrolled staff approval secrets (TOTP) at rest."
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

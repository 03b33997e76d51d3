"""The desk's secret key, and encryption of secrets stored in the database (Fernet: AES-128-CBC + HMAC).

``CLAIMFLOW_SECRET_KEY`` holds a Fernet key. Where it is not set (the embedded default), a key is made on
first use in ``<data dir>/secret.key`` with permissions 0600; back it up with the database, because the
enrolled approval secrets cannot be read without it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from claimflow.settings import Settings
from models.errors import ClaimflowError, InvalidInput


def _key_file(settings: Settings) -> Path:
    return settings.data_dir / "secret.key"


def desk_key(settings: Settings) -> bytes:
    """The Fernet key in force, creating the key file on first use when no key is configured."""
    if settings.secret_key is not None:
        key = settings.secret_key.get_secret_value().encode()
        try:
            Fernet(key)
        except ValueError:
            raise InvalidInput(
                "CLAIMFLOW_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with: claimflow config new-key"
            ) from None
        return key
    return _stored_key(_key_file(settings), Fernet.generate_key)


def survey_key(settings: Settings) -> str:
    """The key that signs survey links: ``CLAIMFLOW_SURVEY_LINK_KEY``, else ``<data dir>/survey-link.key``,
    made on first use (every process of the desk reads the same file; a new key voids the links sent)."""
    if settings.survey_link_key is not None:
        key = settings.survey_link_key.get_secret_value()
        if len(key) < 16:
            raise InvalidInput("CLAIMFLOW_SURVEY_LINK_KEY must be at least 16 characters")
        return key
    return _stored_key(settings.data_dir / "survey-link.key", lambda: secrets.token_urlsafe(32).encode()).decode()


def _stored_key(path: Path, make: Callable[[], bytes]) -> bytes:
    """The key in ``path``, written (mode 0600) on first use; a process that loses the race reads the winner's."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = make()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    return key


def encrypt(settings: Settings, plain: str) -> str:
    return Fernet(desk_key(settings)).encrypt(plain.encode()).decode()


def decrypt(settings: Settings, token: str) -> str:
    try:
        return Fernet(desk_key(settings)).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ClaimflowError(
            "a stored secret cannot be decrypted with the key in force (was CLAIMFLOW_SECRET_KEY changed?)"
        ) from None


def audit_key(settings: Settings) -> bytes:
    """The key that signs the audit log's checkpoints, derived from the desk's key (never stored in the database:
    whoever can write the database still cannot sign a rewritten chain)."""
    return hashlib.sha256(b"claimflow audit checkpoints\n" + desk_key(settings)).digest()

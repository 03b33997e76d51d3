"""The desk's secret key, and encryption of secrets stored in the database (Fernet: AES-128-CBC + HMAC).

``CLAIMFLOW_SECRET_KEY`` holds a Fernet key. Where it is not set (the embedded default), a key is made on
first use in ``<data dir>/secret.key`` with permissions 0600; back it up with the database, because the
enrolled approval secrets cannot be read without it.
"""

from __future__ import annotations

import os
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
    path = _key_file(settings)
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
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

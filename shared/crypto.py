"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with rotatable keys.

``ENCRYPTION_KEY`` holds one or more Fernet keys, comma-separated: the first
encrypts, every key decrypts, so rotating is "prepend the new key, re-encrypt at
leisure, drop the old one". Outside production, an unset key is derived from
``SECRET_KEY`` with HKDF so a developer machine works out of the box.

Example::

    token = encrypt("whsec_...")
    assert decrypt(token) == "whsec_..."
"""

from __future__ import annotations

import base64
import functools
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.config import get_settings

log = logging.getLogger(__name__)

#: HKDF context of the derived development key; changing it orphans every stored secret.
_HKDF_INFO = b"omnistream secrets-at-rest v1"


class DecryptionFailed(Exception):
    """A stored secret could not be decrypted with any configured key."""


def derive_key(secret_key: str) -> bytes:
    """The Fernet key HKDF-SHA256 derives from ``secret_key`` (development and tests)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret_key.encode()
    )
    return base64.urlsafe_b64encode(raw)


@functools.cache
def _cipher(encryption_key: str | None, secret_key: str, env: str) -> MultiFernet:
    if encryption_key:
        keys = [k.strip().encode() for k in encryption_key.split(",") if k.strip()]
        return MultiFernet([Fernet(k) for k in keys])
    if env == "production":
        raise RuntimeError("ENCRYPTION_KEY must be set in production")
    # APPSEC: the derived key is as secret as SECRET_KEY; log that it is derived, never the key.
    log.warning("ENCRYPTION_KEY is unset: deriving the secrets-at-rest key from SECRET_KEY")
    return MultiFernet([Fernet(derive_key(secret_key))])


def _current() -> MultiFernet:
    settings = get_settings()
    return _cipher(settings.encryption_key, settings.secret_key, settings.env)


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionFailed("no configured ENCRYPTION_KEY decrypts this secret") from exc


def reencrypt(token: str) -> str:
    """Re-encrypt ``token`` under the first (newest) key, for a key rotation."""
    return _current().rotate(token.encode()).decode()

"""Credentials: password hashing, JWT access tokens and API keys.

Passwords are hashed with argon2id (slow on purpose). API keys carry 256 bits of
randomness, so a single SHA-256 is the right hash for them: it lets the lookup
be one indexed equality and costs microseconds per request.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.config import get_settings

#: Every API key starts with this, so secret scanners and humans recognise one.
API_KEY_PREFIX = "osk_"
JWT_ALGORITHM = "HS256"


@functools.cache
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> tuple[PasswordHasher, str]:
    """The hasher for these costs, with a dummy hash made at the same cost."""
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    # NOTE: verifying against a dummy hash of the configured cost when the user does not
    # exist keeps login timing the same for known and unknown emails.
    return hasher, hasher.hash("omnistream-timing-equaliser")


def _configured() -> tuple[PasswordHasher, str]:
    settings = get_settings()
    return _hasher(
        settings.password_hash_time_cost,
        settings.password_hash_memory_kib,
        settings.password_hash_parallelism,
    )


def hash_password(password: str) -> str:
    return _configured()[0].hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password in constant-ish time, even when there is no hash to check."""
    hasher, dummy = _configured()
    try:
        return hasher.verify(password_hash or dummy, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    jti: uuid.UUID
    issued_at: dt.datetime
    expires_at: dt.datetime
    expires_in: int


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    jti: uuid.UUID
    issued_at: dt.datetime
    expires_at: dt.datetime
    #: The super admin acting through this token (``imp`` claim: an impersonation).
    impersonator_id: uuid.UUID | None = None
    #: The login session the token belongs to (``sid``; a token without one is its own).
    session_id: uuid.UUID | None = None


class InvalidToken(Exception):
    """The token is malformed, forged or expired."""


def issue_access_token(
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    *,
    impersonator_id: uuid.UUID | None = None,
    ttl_seconds: int | None = None,
    session_id: uuid.UUID | None = None,
) -> AccessToken:
    """A tenant user's token; ``impersonator_id`` adds the ``imp`` claim (a super admin).

    ``session_id`` (``sid``) is the session a refresh continues; without it the token
    starts a session of its own (its ``jti``). Logout revokes the whole session.
    """
    claims: dict = {"sub": str(user_id), "tid": str(tenant_id)}
    if impersonator_id is not None:
        claims["imp"] = str(impersonator_id)
    return _issue(claims, ttl_seconds, session_id)


def issue_super_admin_token(super_admin_id: uuid.UUID) -> AccessToken:
    """A super admin's token: ``sa: true`` and no ``tid`` (accepted only under /api/admin)."""
    return _issue({"sub": str(super_admin_id), "sa": True}, None)


def _issue(
    claims: dict, ttl_seconds: int | None, session_id: uuid.UUID | None = None
) -> AccessToken:
    settings = get_settings()
    ttl = ttl_seconds or settings.access_token_ttl_seconds
    # NOTE: a fractional ``iat`` (RFC 7519 allows it) lets a password change at
    # 12:00:00.4 refuse a token from 12:00:00.1 and accept one from 12:00:00.7.
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=ttl)
    jti = uuid.uuid4()
    if "tid" in claims:
        claims = {**claims, "sid": str(session_id or jti)}
    claims = {
        **claims,
        "jti": str(jti),
        "iat": round(now.timestamp(), 6),
        "exp": int(expires.timestamp()),
    }
    token = jwt.encode(claims, settings.secret_key, algorithm=JWT_ALGORITHM)
    return AccessToken(token, jti, now, expires, ttl)


@dataclass(frozen=True, slots=True)
class SuperAdminClaims:
    super_admin_id: uuid.UUID
    jti: uuid.UUID
    issued_at: dt.datetime
    expires_at: dt.datetime


def decode_super_admin_token(token: str) -> SuperAdminClaims:
    """Verify a super-admin token (``sa: true``, no ``tid``) or raise :class:`InvalidToken`."""
    try:
        claims = jwt.decode(
            token,
            get_settings().secret_key,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "sa", "jti", "iat", "exp"]},
        )
        if claims["sa"] is not True or "tid" in claims:
            raise InvalidToken("not a super-admin token")
        return SuperAdminClaims(
            super_admin_id=uuid.UUID(claims["sub"]),
            jti=uuid.UUID(claims["jti"]),
            issued_at=dt.datetime.fromtimestamp(claims["iat"], dt.UTC),
            expires_at=dt.datetime.fromtimestamp(claims["exp"], dt.UTC),
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise InvalidToken(str(exc)) from exc


def is_super_admin_token(token: str) -> bool:
    """Whether ``token`` is a valid super-admin token (to refuse it clearly on tenant routes)."""
    try:
        decode_super_admin_token(token)
    except InvalidToken:
        return False
    return True


def decode_access_token(token: str) -> TokenClaims:
    """Verify signature and expiry and return the claims, or raise :class:`InvalidToken`."""
    try:
        claims = jwt.decode(
            token,
            get_settings().secret_key,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "tid", "jti", "iat", "exp"]},
        )
        return TokenClaims(
            user_id=uuid.UUID(claims["sub"]),
            tenant_id=uuid.UUID(claims["tid"]),
            jti=uuid.UUID(claims["jti"]),
            issued_at=dt.datetime.fromtimestamp(claims["iat"], dt.UTC),
            expires_at=dt.datetime.fromtimestamp(claims["exp"], dt.UTC),
            impersonator_id=uuid.UUID(claims["imp"]) if claims.get("imp") else None,
            session_id=uuid.UUID(claims["sid"]) if claims.get("sid") else None,
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidToken(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key: str
    prefix: str
    key_hash: str


def generate_api_key() -> NewApiKey:
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return NewApiKey(key=key, prefix=key[: len(API_KEY_PREFIX) + 8], key_hash=hash_api_key(key))


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()

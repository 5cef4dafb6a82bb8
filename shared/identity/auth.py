"""Authentication: login, logout, token refresh, and resolving a credential to a caller.

Role and permissions come from the database, never from the token, so a role change
or a revocation applies at once. PERF: a token's row is cached per process and
checked against the auth epoch in Redis on every request (see
:mod:`shared.identity.auth_cache` and :mod:`shared.epoch_cache` for the guarantees).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import time
import uuid
from dataclasses import dataclass

from redis.exceptions import RedisError
from sqlalchemy import Uuid, bindparam, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from shared import activity, committed_writes, epoch_cache
from shared.config import get_settings
from shared.context import Ctx
from shared.db import fetch_rows
from shared.errors import DomainError, Forbidden, RateLimited, Unauthenticated, ValidationFailed
from shared.events import Actor, Impersonator
from shared.identity import auth_cache
from shared.identity.security import (
    AccessToken,
    InvalidToken,
    TokenClaims,
    decode_access_token,
    hash_api_key,
    is_super_admin_token,
    issue_access_token,
    verify_password,
)
from shared.models import ApiKey, RevokedToken, Role, SuperAdmin, Tenant, User
from shared.redis_client import get_redis, key

log = logging.getLogger(__name__)

#: ``last_used_at`` of an API key is written at most this often (a write per request is waste).
API_KEY_TOUCH_INTERVAL = dt.timedelta(minutes=1)
#: The key's use stamp is all the touch writes: the principal cache ignores it (otherwise
#: every key's first call of each minute would empty every process's cache).
_TOUCH_ONLY = {committed_writes.COLUMNS: {ApiKey.__table__.name: ("last_used_at",)}}
#: Window of the failed-login counter per email and network.
LOGIN_WINDOW_SECONDS = 60
#: Window of the failed-login counter per email across all networks. Past
#: ``login_account_failures_limit`` failures in it every login of the email answers 429,
#: the owner's too (we cannot tell them from the sprayer), until the window ends.
#: WHY short: an attacker can lock an account out by failing on purpose; the window
#: bounds that to 15 minutes at a time, while spraying is held to the limit per window.
LOGIN_ACCOUNT_WINDOW_SECONDS = 15 * 60


class TenantSuspended(DomainError):
    status, code = 403, "tenant_suspended"


class UserSuspended(DomainError):
    status, code = 403, "user_suspended"


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: User
    role: Role
    tenant: Tenant
    token: AccessToken


def _principal_query():
    # PERF: columns, not entities: authentication runs on every request, and
    # loading ORM objects costs several times the query itself.
    return (
        select(
            User.id,
            User.tenant_id,
            User.tokens_valid_after,
            Role.name,
            Role.permissions,
            Tenant.status,
            User.suspended_at,
        )
        .join(Role, Role.id == User.role_id)
        .join(Tenant, Tenant.id == User.tenant_id)
    )


def _impersonator_column(column):
    """The impersonating super admin's ``column`` (NULL without ``imp``, or once deleted)."""
    return (
        select(column)
        .where(SuperAdmin.id == bindparam("impersonator_id", type_=Uuid))
        .scalar_subquery()
    )


# PERF: built once with bind parameters and run on the session's Core connection:
# per request only the values change, and the ORM's per-statement machinery
# (several times the cost of the query on this path) is skipped.
_TOKEN_PRINCIPAL = (
    _principal_query()
    .add_columns(
        # APPSEC: the token itself, or its whole session (logout), may be revoked.
        exists().where(RevokedToken.jti.in_((bindparam("jti"), bindparam("sid")))),
        # APPSEC: an impersonation dies with its super admin (deleted, password reset).
        _impersonator_column(SuperAdmin.email),
        _impersonator_column(SuperAdmin.tokens_valid_after),
    )
    .where(
        User.id == bindparam("user_id"),
        User.tenant_id == bindparam("tenant_id"),
        User.deleted_at.is_(None),
    )
)
_KEY_PRINCIPAL = (
    _principal_query()
    .add_columns(ApiKey.id, ApiKey.last_used_at)
    .join(ApiKey, ApiKey.user_id == User.id)
    .where(
        ApiKey.key_hash == bindparam("key_hash"),
        ApiKey.revoked_at.is_(None),
        (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > func.now()),
        User.deleted_at.is_(None),
    )
)


def _check_live(tenant_status: str, suspended_at: dt.datetime | None = None) -> None:
    if tenant_status != "active":
        raise TenantSuspended("This workspace is suspended")
    if suspended_at is not None:
        raise UserSuspended("This user is suspended")


def tenant_hint(token: str) -> uuid.UUID | None:
    """The tenant of a token this process verified before, unchecked: which epochs to read."""
    cached = auth_cache.CACHE.peek(token)
    return None if cached is None else cached[0].tenant_id


#: Tokens whose signature this process verified, and their claims (bounded: emptied when
#: full). A token's claims never change; only its expiry is checked again on use.
_VERIFIED: dict[str, TokenClaims] = {}
_MAX_VERIFIED = 10_000


def _verified_claims(token: str) -> TokenClaims:
    """:func:`decode_access_token`, without verifying the same token's signature twice.

    PERF: a principal entry (:mod:`shared.identity.auth_cache`) lives seconds; a token
    lives hours. Past an entry's life only the database row needs reading again.
    """
    claims = _VERIFIED.get(token)
    if claims is not None and claims.expires_at.timestamp() > time.time():
        return claims
    claims = decode_access_token(token)  # expired or unknown: verified (or refused) anew
    if len(_VERIFIED) >= _MAX_VERIFIED:
        _VERIFIED.clear()
    _VERIFIED[token] = claims
    return claims


def authenticate_token(
    session: Session,
    token: str,
    *,
    epochs: epoch_cache.Epochs | None = None,
    request_id: str | None = None,
    ip: str | None = None,
) -> Ctx:
    """Resolve a JWT to its caller, or raise :class:`Unauthenticated`.

    ``epochs`` are the request's, read before any query (read here when not given).
    """
    # NOTE: the epoch is read before the query, so a row is never tagged newer than it is.
    tag = (epochs if epochs is not None else epoch_cache.read()).tag(auth_cache.CACHE)
    # PERF: keyed by the token itself: a hit is a token this process verified already,
    # so only its expiry is checked again (the signature cannot have changed).
    cached = auth_cache.CACHE.get(token, tag)
    if cached is not None and cached[0].expires_at.timestamp() > time.time():
        claims, row = cached
    else:
        try:
            claims = _verified_claims(token)
        except InvalidToken as exc:
            if is_super_admin_token(token):
                raise Forbidden(
                    "Super-admin tokens are accepted only under /api/admin; impersonate a"
                    " user to act in a workspace"
                ) from exc
            raise Unauthenticated("Invalid or expired token") from exc
        # PERF: one round trip: the user, their role, the tenant state and revocation;
        # a prebuilt statement on the driver (an entry lives TTL_SECONDS, so a busy
        # token pays this every few seconds in every process).
        found = fetch_rows(
            session.connection(),
            _TOKEN_PRINCIPAL,
            {
                "jti": claims.jti,
                "sid": claims.session_id or claims.jti,
                "user_id": claims.user_id,
                "tenant_id": claims.tenant_id,
                "impersonator_id": claims.impersonator_id,
            },
        )
        if not found:
            raise Unauthenticated("Invalid or expired token")
        row = (*found[0][:4], frozenset(found[0][4]), *found[0][5:])
        auth_cache.CACHE.put(token, tag, (claims, row))
    user_id, tenant_id, valid_after, role_name, permissions, tenant_status, suspended_at = row[:7]
    if row[7]:
        raise Unauthenticated("This token has been revoked")
    # NOTE: before the issue time: a suspended user (whose suspension also ended their
    # tokens) is told so, 403 user_suspended, rather than to log in again.
    _check_live(tenant_status, suspended_at)
    if valid_after and claims.issued_at < valid_after:
        raise Unauthenticated("This token is no longer valid; log in again")
    impersonator = _impersonator(claims, *row[8:10])
    return Ctx(
        tenant_id=tenant_id,
        actor=Actor("user", user_id, impersonated_by=impersonator),
        user_id=user_id,
        role=role_name,
        permissions=permissions,
        request_id=request_id,
        ip=ip,
        token_jti=claims.jti,
        token_expires_at=claims.expires_at,
        token_issued_at=claims.issued_at,
        session_id=claims.session_id or claims.jti,
        impersonator_id=claims.impersonator_id,
    )


def _impersonator(
    claims: TokenClaims, email: str | None, valid_after: dt.datetime | None
) -> Impersonator | None:
    """The super admin behind an ``imp`` token, or :class:`Unauthenticated` if they are gone.

    Deleting the super admin or resetting their password (``tokens_valid_after``) ends
    every impersonation they started, like their own tokens.
    """
    if claims.impersonator_id is None:
        return None
    if email is None:
        raise Unauthenticated("The super admin behind this impersonation no longer exists")
    if valid_after and claims.issued_at < valid_after:
        raise Unauthenticated("This impersonation was ended; start a new one")
    return Impersonator(claims.impersonator_id, email)


def authenticate_api_key(
    session: Session, api_key: str, *, request_id: str | None = None, ip: str | None = None
) -> Ctx:
    """Resolve an API key to the user who created it, or raise :class:`Unauthenticated`."""
    row = (
        session.connection()
        .execute(_KEY_PRINCIPAL, {"key_hash": hash_api_key(api_key)})
        .one_or_none()
    )
    if row is None:
        raise Unauthenticated("Invalid, expired or revoked API key")
    user_id, tenant_id, _, role_name, permissions, tenant_status, suspended_at = row[:7]
    key_id, last_used_at = row[7:]
    _check_live(tenant_status, suspended_at)
    now = dt.datetime.now(dt.UTC)
    if last_used_at is None or now - last_used_at > API_KEY_TOUCH_INTERVAL:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(last_used_at=func.now())
            .execution_options(**_TOUCH_ONLY)
        )
    return Ctx(
        tenant_id=tenant_id,
        actor=Actor("api_key", key_id),
        user_id=user_id,
        role=role_name,
        permissions=frozenset(permissions),
        request_id=request_id,
        ip=ip,
        api_key_id=key_id,
    )


def _client_network(ip: str | None) -> str:
    """Whose attempts an address's are: an IPv4 address, or the /64 of an IPv6 one.

    APPSEC: an IPv6 subscriber holds a whole /64; counted per address, a client
    moving to a fresh address per guess was never limited.
    """
    try:
        address = ipaddress.ip_address((ip or "").split("%", 1)[0])
    except ValueError:
        return ip or "-"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(getattr(address, "ipv4_mapped", None) or address)


def _login_counter(email: str, ip: str | None) -> str:
    return key("ratelimit", "login", email.lower(), _client_network(ip))


def _account_counter(email: str) -> str:
    return key("ratelimit", "login-account", email.lower())


def _login_limits(email: str, ip: str | None) -> tuple[tuple[str, int, int], ...]:
    """The failed-login counters an attempt counts on: ``(key, limit, window seconds)``.

    APPSEC: per email and network (a guesser's network is refused quickly), and per
    email across all networks (password spraying from ever-new addresses got unlimited
    guesses at one account otherwise).
    """
    settings = get_settings()
    return (
        (_login_counter(email, ip), settings.login_rate_limit_per_minute, LOGIN_WINDOW_SECONDS),
        (
            _account_counter(email),
            settings.login_account_failures_limit,
            LOGIN_ACCOUNT_WINDOW_SECONDS,
        ),
    )


def _check_login_rate(email: str, ip: str | None) -> None:
    """Count this login attempt, or refuse it with 429 past a limit of failures.

    APPSEC: the attempt is counted before its password is checked (and forgiven by
    :func:`_forgive_login` if it was right): read first and counted after the check,
    a burst of parallel guesses all passed the read, whatever the limit. The account
    counts only what its network's limit let through: one network's refused flood does
    not lock its owner out elsewhere. A window starts at its first failure and later
    ones never extend it, so a lockout ends at most a window after it began.
    """
    for counter, limit, window in _login_limits(email, ip):
        _count_attempt(counter, limit, window)


def _count_attempt(counter: str, limit: int, window: int) -> None:
    """One more attempt on ``counter``; 429 past ``limit``, until its window ends."""
    try:
        pipe = get_redis().pipeline()
        pipe.incr(counter)
        pipe.expire(counter, window, nx=True)
        pipe.pttl(counter)
        attempts, _, left_ms = pipe.execute()
    except RedisError:
        log.warning("login rate limit unavailable (Redis down); allowing the attempt")
        return
    if int(attempts) > limit:
        raise RateLimited(
            "Too many failed logins; try again later", retry_after=_retry_after(left_ms, window)
        )


def _retry_after(left_ms: int, window: int) -> int:
    """The window's time left, up to the next whole minute (never past the window)."""
    if left_ms <= 0:
        return window
    return min(window, -(-left_ms // 60_000) * 60)


def _forgive_login(email: str, ip: str | None) -> None:
    """Uncount an attempt whose password was right: only failures count towards 429."""
    try:
        pipe = get_redis().pipeline()
        for counter, _limit, window in _login_limits(email, ip):
            pipe.decr(counter)
            pipe.expire(counter, window, nx=True)  # if the window ended meanwhile
        pipe.execute()
    except RedisError:
        log.warning("could not uncount a successful login (Redis down)")


def count_password_attempt(email: str, ip: str | None) -> None:
    """Count a password check outside login (e.g. the current password to change it) as
    a login attempt: 429 past the failed-login limits. Forgive it when it was right."""
    _check_login_rate(email, ip)


def forgive_password_attempt(email: str, ip: str | None) -> None:
    """Uncount a password check that :func:`count_password_attempt` counted: it was right."""
    _forgive_login(email, ip)


#: Workspaces one email's login is checked against without ``tenant`` (one password hash
#: each); an email in more must name the workspace.
MAX_WORKSPACES_PER_LOGIN = 5


def login(
    session: Session,
    *,
    email: str,
    password: str,
    tenant_slug: str | None = None,
    ip: str | None = None,
    request_id: str | None = None,
) -> LoginResult:
    """Check a password and issue an access token; the same answer for every kind of miss."""
    _check_login_rate(email, ip)
    query = (
        select(User, Role, Tenant)
        .join(Role, Role.id == User.role_id)
        .join(Tenant, Tenant.id == User.tenant_id)
        .where(func.lower(User.email) == func.lower(email), User.deleted_at.is_(None))
    )
    if tenant_slug:
        query = query.where(Tenant.slug == tenant_slug.lower())
    # NOTE: both sides lowered by PostgreSQL: Python's lower() differs for some letters
    # ('İ' is 'i̇' there, 'i' here) and such an email matched no user, ever.
    # APPSEC: the users' rows are locked (FOR NO KEY UPDATE, as the login's stamp would
    # anyway) before their hashes are read: a login racing a password change waits for it
    # and checks the new hash. Unlocked, it checked the old one and issued its token after
    # the change's tokens_valid_after: the old password's session outlived the change.
    rows = session.execute(
        query.order_by(User.id)
        .limit(MAX_WORKSPACES_PER_LOGIN)
        .with_for_update(of=User, key_share=True)
    ).all()
    # APPSEC: the password is checked before anything is said about the email: asking
    # which workspace to enter before it told anyone that the email has several.
    matching = [row for row in rows if verify_password(row[0].password_hash, password)]
    if not rows:
        verify_password(None, password)  # the same work as for a known email
    if not matching:
        raise Unauthenticated("Invalid email or password")
    _forgive_login(email, ip)
    if len(matching) > 1:
        raise ValidationFailed(
            "This email and password open several workspaces; say which with 'tenant'",
            details=[{"field": "tenant", "message": "required for this email"}],
        )
    user, role, tenant = matching[0]
    _check_live(tenant.status, user.suspended_at)
    user.last_login_at = func.now()
    token = issue_access_token(user.id, tenant.id)
    ctx = Ctx(tenant.id, Actor("user", user.id), user_id=user.id, request_id=request_id, ip=ip)
    activity.record(session, ctx, "auth.login", "agent", user.id)
    return LoginResult(user, role, tenant, token)


def logout(session: Session, ctx: Ctx) -> None:
    """Revoke the caller's session: its token and every token refreshed from or into it.

    Other sessions stay logged in. APPSEC: revoking the presented token alone left the
    session's earlier tokens (a refresh keeps them valid) working, and refreshable.
    """
    if ctx.token_jti is None or ctx.user_id is None:
        raise Forbidden("Only a token session can log out; revoke API keys instead")
    # Every token of the session was issued by now, so it expires within a full lifetime.
    lifetime = dt.timedelta(seconds=get_settings().access_token_ttl_seconds)
    expires_at = max(filter(None, (ctx.token_expires_at, dt.datetime.now(dt.UTC) + lifetime)))
    session.execute(
        pg_insert(RevokedToken)
        .values(
            jti=ctx.session_id or ctx.token_jti,
            tenant_id=ctx.tenant_id,
            user_id=ctx.user_id,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing()
    )
    activity.record(session, ctx, "auth.logout", "agent", ctx.user_id)


def refresh(session: Session, ctx: Ctx) -> AccessToken:
    """Issue a fresh token for the caller's session (the presented one stays valid until exp)."""
    if ctx.user_id is None or ctx.token_jti is None:
        raise Forbidden("Only a token session can be refreshed")
    if ctx.impersonator_id is not None:
        # APPSEC: an impersonation lasts its hour; it is never stretched into a 12 h session.
        raise Forbidden("An impersonation token cannot be refreshed")
    # APPSEC: the user's row is held (FOR SHARE) and its tokens_valid_after read again: a
    # refresh racing a password change waits for it and is refused. Authenticated before
    # the change committed, it issued a token after the change's tokens_valid_after: the
    # session went on, refreshed, past the change.
    valid_after = session.scalar(
        select(User.tokens_valid_after)
        .where(User.tenant_id == ctx.tenant_id, User.id == ctx.user_id)
        .with_for_update(read=True)
    )
    if valid_after and ctx.token_issued_at and ctx.token_issued_at < valid_after:
        raise Unauthenticated("This token is no longer valid; log in again")
    return issue_access_token(ctx.user_id, ctx.tenant_id, session_id=ctx.session_id)


def purge_expired_revocations(session: Session) -> int:
    """Forget revocations of tokens that have expired anyway (a maintenance job calls this)."""
    result = session.execute(
        RevokedToken.__table__.delete().where(RevokedToken.expires_at < func.now())
    )
    return result.rowcount or 0


def user_tokens_valid_after_now(session: Session, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Invalidate every token of a user issued before now (password change, suspension).

    The tenant condition also tells the read caches whose data changed (one tenant's, not all).

    APPSEC: the clock now (``clock_timestamp()``), not the transaction's start (``now()``):
    a change that began, then waited for a login's lock on the user, otherwise dated its
    cut before the token that login issued meanwhile, which outlived the change.
    """
    session.execute(
        update(User)
        .where(User.tenant_id == tenant_id, User.id == user_id)
        .values(tokens_valid_after=func.clock_timestamp())
    )

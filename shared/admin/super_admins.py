"""Super-admin accounts: create, list, delete, reset a password, log in, authenticate.

A super admin is never a tenant user: the row has no tenant, the token has no ``tid``
and ``sa: true``. The first account comes from ``python -m shared.admin
create-super-admin``; later ones from an existing super admin. The platform always
keeps one: deleting yourself or the last account is a 409.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.admin.context import AdminCtx
from shared.errors import Conflict, Forbidden, NotFound, Unauthenticated
from shared.identity import auth
from shared.identity.security import (
    AccessToken,
    InvalidToken,
    decode_access_token,
    decode_super_admin_token,
    hash_password,
    issue_super_admin_token,
    verify_password,
)
from shared.models import SuperAdmin

#: Characters of a one-time temporary password (about 190 bits of randomness).
TEMPORARY_PASSWORD_BYTES = 24
#: The unique index on ``lower(super_admins.email)``.
_EMAIL_INDEX = "uq_super_admins_email"


@dataclass(frozen=True, slots=True)
class Login:
    super_admin: SuperAdmin
    token: AccessToken


def _email_taken(session: Session, email: str) -> bool:
    return bool(
        session.scalar(
            select(func.count()).where(func.lower(SuperAdmin.email) == func.lower(email))
        )
    )


def create(session: Session, *, email: str, full_name: str, password: str) -> SuperAdmin:
    """A new super admin; an email already used by one is a 409."""
    if _email_taken(session, email):
        raise _email_used()
    admin = SuperAdmin(email=email, full_name=full_name, password_hash=hash_password(password))
    try:
        # WHY the savepoint: the same email created at once (not committed when checked)
        # fails the unique index, a 409 that must still name the field.
        with session.begin_nested():
            session.add(admin)
            session.flush()
    except IntegrityError as exc:
        if getattr(exc.orig.diag, "constraint_name", None) == _EMAIL_INDEX:
            raise _email_used() from exc
        raise
    session.refresh(admin)
    return admin


def _email_used() -> Conflict:
    return Conflict(
        "A super admin with this email already exists",
        details=[{"field": "email", "message": "already used"}],
    )


def list_all(session: Session) -> list[SuperAdmin]:
    """Every super admin, newest first (a handful: not paginated)."""
    return list(
        session.scalars(select(SuperAdmin).order_by(SuperAdmin.created_at.desc(), SuperAdmin.id))
    )


def get(session: Session, admin_id: uuid.UUID, *, for_update: bool = False) -> SuperAdmin:
    query = select(SuperAdmin).where(SuperAdmin.id == admin_id)
    found = session.scalar(query.with_for_update() if for_update else query)
    if found is None:
        raise NotFound("Super admin not found")
    return found


def delete(session: Session, ctx: AdminCtx, admin_id: uuid.UUID) -> None:
    """Delete a super admin; never yourself, never the last one (409)."""
    if admin_id == ctx.super_admin_id:
        raise Conflict("You cannot delete your own super-admin account")
    # NOTE: every row locked in id order, so two concurrent deletes cannot both pass
    # the count and leave the platform with none.
    ids = list(session.scalars(select(SuperAdmin.id).order_by(SuperAdmin.id).with_for_update()))
    if ctx.super_admin_id not in ids:
        # APPSEC: the caller was deleted while this call waited (two admins deleting each
        # other): an account removed first must not remove the other one after that.
        raise Unauthenticated("Your super-admin account no longer exists")
    if admin_id not in ids:
        raise NotFound("Super admin not found")
    if len(ids) <= 1:
        raise Conflict("The platform needs at least one super admin")
    session.delete(get(session, admin_id))
    session.flush()


def _lock_with_caller(session: Session, ctx: AdminCtx, admin_id: uuid.UUID) -> SuperAdmin:
    """Lock the caller's and ``admin_id``'s rows (id order, as :func:`delete`); the latter.

    APPSEC: a call that waited on a deletion of its caller must not act after it: the
    removed account would learn the password of the one that removed it (401).
    """
    rows = session.scalars(
        select(SuperAdmin)
        .where(SuperAdmin.id.in_({ctx.super_admin_id, admin_id}))
        .order_by(SuperAdmin.id)
        .with_for_update(key_share=True)
    ).all()
    found = {row.id: row for row in rows}
    if ctx.super_admin_id not in found:
        raise Unauthenticated("Your super-admin account no longer exists")
    if admin_id not in found:
        raise NotFound("Super admin not found")
    return found[admin_id]


def reset_password(session: Session, ctx: AdminCtx, admin_id: uuid.UUID) -> str:
    """Give a super admin a new random password (returned once); their tokens stop working."""
    admin = _lock_with_caller(session, ctx, admin_id)
    temporary = secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)
    admin.password_hash = hash_password(temporary)
    # APPSEC: the clock now, not the transaction's start (now()): a login that held the
    # row while this reset waited issued its token after that start, which outlived it.
    admin.tokens_valid_after = func.clock_timestamp()
    session.flush()
    return temporary


def login(session: Session, *, email: str, password: str, ip: str | None = None) -> Login:
    """Check a super admin's password; the same answer for every kind of miss (rate-limited)."""
    # NOTE: the tenant login's failure counter, under its own key space.
    counter_email = f"super-admin:{email}"
    auth._check_login_rate(counter_email, ip)
    # APPSEC: the row is locked (FOR NO KEY UPDATE, as the login's stamp would anyway)
    # before its hash is read: a login racing a password reset waits for it and checks the
    # new hash. Unlocked, it checked the old one and its token outlived the reset.
    admin = session.scalar(
        select(SuperAdmin)
        .where(func.lower(SuperAdmin.email) == func.lower(email))
        .with_for_update(key_share=True)
    )
    if not verify_password(admin.password_hash if admin else None, password):
        raise Unauthenticated("Invalid email or password")
    auth._forgive_login(counter_email, ip)
    admin.last_login_at = func.now()
    return Login(admin, issue_super_admin_token(admin.id))


def authenticate(
    session: Session, token: str, *, request_id: str | None = None, ip: str | None = None
) -> AdminCtx:
    """Resolve a super-admin token to its caller; a tenant token here is a 403."""
    try:
        claims = decode_super_admin_token(token)
    except InvalidToken as exc:
        try:
            decode_access_token(token)
        except InvalidToken:
            raise Unauthenticated("Invalid or expired token") from exc
        raise Forbidden("This route needs a super-admin token; tenant tokens are refused") from exc
    row = session.execute(
        select(SuperAdmin.email, SuperAdmin.tokens_valid_after).where(
            SuperAdmin.id == claims.super_admin_id
        )
    ).one_or_none()
    if row is None:
        raise Unauthenticated("Invalid or expired token")
    email, valid_after = row
    if valid_after and claims.issued_at < valid_after:
        raise Unauthenticated("This token is no longer valid; log in again")
    return AdminCtx(
        super_admin_id=claims.super_admin_id,
        email=email,
        request_id=request_id,
        ip=ip,
        token_jti=claims.jti,
        token_expires_at=claims.expires_at,
    )

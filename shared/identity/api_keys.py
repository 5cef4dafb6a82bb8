"""API keys: shown once, stored as a hash, acting with their creator's current permissions."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import activity
from shared.context import Ctx
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.identity.security import generate_api_key
from shared.models import ApiKey, Role, User
from shared.pagination import Page, paginate
from shared.schemas.identity import ApiKeyView
from shared.sql import lock_key

#: A user may hold at most this many live keys (a leak is easier to contain).
MAX_KEYS_PER_USER = 50


@dataclass(frozen=True, slots=True)
class CreatedKey:
    api_key: ApiKey
    #: The plaintext key: returned once, never stored.
    key: str


def list_own_keys(
    session: Session, ctx: Ctx, *, limit: int, cursor: str | None = None
) -> Page[ApiKey]:
    """The caller's keys, newest first, in pages: revoked and expired ones stay listed."""
    query = select(ApiKey).where(ApiKey.tenant_id == ctx.tenant_id, ApiKey.user_id == ctx.user_id)
    return paginate(
        session,
        query,
        created_at=ApiKey.created_at,
        id_column=ApiKey.id,
        limit=limit,
        cursor=cursor,
    )


def create_key(
    session: Session, ctx: Ctx, *, name: str, expires_at: dt.datetime | None = None
) -> CreatedKey:
    ctx.require("api_keys.manage")
    ctx.refuse_impersonation("Creating an API key")
    ctx.refuse_api_key("Creating an API key")
    if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
        raise ValidationFailed.field("expires_at", "must be in the future")
    # NOTE: one creation of the user's keys at a time: two counted before either
    # inserted, and the user held one key past the limit per concurrent request.
    lock_key(session, f"api_keys:{ctx.user_id}")
    live = session.scalar(
        select(func.count()).where(
            ApiKey.tenant_id == ctx.tenant_id,
            ApiKey.user_id == ctx.user_id,
            ApiKey.revoked_at.is_(None),
            # An expired key is no longer live: it never blocks a new one.
            ApiKey.expires_at.is_(None) | (ApiKey.expires_at > func.now()),
        )
    )
    if live >= MAX_KEYS_PER_USER:
        raise ValidationFailed(f"You already hold {MAX_KEYS_PER_USER} live API keys; revoke one")
    new = generate_api_key()
    api_key = ApiKey(
        tenant_id=ctx.tenant_id,
        user_id=ctx.user_id,
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        expires_at=expires_at,
    )
    session.add(api_key)
    session.flush()
    session.refresh(api_key)
    data = ApiKeyView.data(api_key)
    activity.record_change(session, ctx, "api_key.created", "api_key", api_key.id, data, after=data)
    return CreatedKey(api_key, new.key)


def _owner_permissions(session: Session, api_key: ApiKey) -> list[str]:
    """The permissions the key's owner holds now (their role's)."""
    return (
        session.scalar(
            select(Role.permissions)
            .join(User, User.role_id == Role.id)
            .where(User.id == api_key.user_id, User.tenant_id == api_key.tenant_id)
        )
        or []
    )


def revoke_key(session: Session, ctx: Ctx, key_id: uuid.UUID) -> None:
    """Revoke a key: its owner may, and so may holders of ``api_keys.manage``."""
    api_key = session.scalars(
        select(ApiKey)
        .where(ApiKey.tenant_id == ctx.tenant_id, ApiKey.id == key_id)
        .with_for_update()
    ).one_or_none()
    if api_key is None:
        raise NotFound("API key not found")
    if api_key.user_id != ctx.user_id:
        if not ctx.can("api_keys.manage"):
            raise Forbidden("Only the key's owner or an admin may revoke it")
        # APPSEC: as for editing an agent: no acting on someone holding what you lack
        # (a key keeper cutting off the admins' integrations).
        ctx.require_all(_owner_permissions(session, api_key), "Revoking this key")
    if api_key.revoked_at is not None:
        return
    api_key.revoked_at = func.now()
    session.flush()
    session.refresh(api_key)
    data = ApiKeyView.data(api_key)
    activity.record_change(session, ctx, "api_key.revoked", "api_key", api_key.id, data, after=data)

"""Impersonation: a super admin acts as a tenant user for one hour.

The token is the user's own kind (``sub``, ``tid``) plus ``imp`` (the super admin's id),
lasting :data:`TOKEN_SECONDS` and never refreshed. Issuing it is written to the tenant's
activity log (and, as every admin call, to the platform audit log); every activity row
written under it carries ``impersonator_id`` (:func:`shared.activity.record`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import activity
from shared.admin.context import AdminCtx
from shared.admin.tenants import get as get_tenant
from shared.admin.users import get_user
from shared.context import Ctx
from shared.errors import Conflict
from shared.events import Actor, Impersonator
from shared.identity.security import AccessToken, issue_access_token
from shared.models import Role, User

#: An impersonation token's lifetime.
TOKEN_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Impersonation:
    user: User
    token: AccessToken


def _oldest_admin(session: Session, tenant_id: uuid.UUID) -> User:
    found = session.scalar(
        select(User)
        .join(Role, Role.id == User.role_id)
        .where(
            User.tenant_id == tenant_id,
            Role.name == "admin",
            User.deleted_at.is_(None),
            User.suspended_at.is_(None),
        )
        .order_by(User.created_at, User.id)
        .limit(1)
    )
    if found is None:
        raise Conflict("This tenant has no active admin to impersonate")
    return found


def impersonate(
    session: Session, ctx: AdminCtx, tenant_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> Impersonation:
    """A 1-hour token for ``user_id`` (None: the tenant's oldest active admin)."""
    tenant = get_tenant(session, tenant_id)
    user = (
        _oldest_admin(session, tenant_id)
        if user_id is None
        else get_user(session, tenant_id, user_id)
    )
    if tenant.status != "active":
        raise Conflict("This tenant is suspended; reactivate it to impersonate its users")
    if user.suspended_at is not None:
        raise Conflict("This user is suspended; activate them to impersonate them")
    token = issue_access_token(
        user.id, tenant_id, impersonator_id=ctx.super_admin_id, ttl_seconds=TOKEN_SECONDS
    )
    in_tenant = Ctx(
        tenant_id=tenant_id,
        actor=Actor("user", user.id, impersonated_by=Impersonator(ctx.super_admin_id, ctx.email)),
        user_id=user.id,
        request_id=ctx.request_id,
        ip=ctx.ip,
        impersonator_id=ctx.super_admin_id,
    )
    activity.record(
        session,
        in_tenant,
        "auth.impersonation_started",
        "agent",
        user.id,
        after={
            "super_admin_id": str(ctx.super_admin_id),
            "expires_at": token.expires_at.isoformat(),
        },
    )
    return Impersonation(user, token)

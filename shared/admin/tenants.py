"""Tenant lifecycle across the platform: provision, list, read, update, suspend, reactivate.

Provisioning writes the tenant, its built-in roles and its first admin in one
transaction, and invites that admin by email (``send_email``, after commit, through the
agent-invitation machinery: the link sets their password). It starts the workspace's
trial subscription like a self-registration (``shared.billing.subscriptions.start_trial``;
none when the platform has no trial plan).

Suspension keeps every row. While a tenant is suspended its credentials are refused
(403 ``tenant_suspended``, :mod:`shared.identity.auth`), scheduler jobs skip it (their
queries filter ``tenants.status = 'active'``), workers drop its queued messages with
the reason on record (:mod:`workers.tenant_gate`) and inbound provider callbacks for
it are acknowledged and dropped (:mod:`shared.channels.receive`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import activity
from shared.admin.context import AdminCtx
from shared.billing import subscriptions
from shared.context import Ctx
from shared.errors import NotFound
from shared.events import Actor, Impersonator, emit
from shared.identity import invitations
from shared.identity.tenants import (
    SLUG_INDEX,
    create_builtin_roles,
    insert_tenant,
    slug_conflict,
    slug_taken,
)
from shared.models import AgentInvitation, Tenant, User
from shared.pagination import Page, paginate
from shared.schemas.identity import AgentView, TenantView
from shared.timekeeping import schedules

STATUSES = ("active", "suspended")


@dataclass(frozen=True, slots=True)
class Provisioned:
    tenant: Tenant
    admin: User
    invitation: AgentInvitation


def tenant_ctx(ctx: AdminCtx, tenant_id: uuid.UUID) -> Ctx:
    """A system context in ``tenant_id`` whose activity rows name the super admin."""
    return Ctx(
        tenant_id=tenant_id,
        actor=Actor("system", impersonated_by=Impersonator(ctx.super_admin_id, ctx.email)),
        request_id=ctx.request_id,
        ip=ctx.ip,
        impersonator_id=ctx.super_admin_id,
    )


def provision(
    session: Session,
    ctx: AdminCtx,
    *,
    name: str,
    admin_email: str,
    admin_full_name: str,
    slug: str | None = None,
    timezone: str = "UTC",
) -> Provisioned:
    """Create a tenant, its roles and its admin (invited by email), in the caller's transaction."""
    tenant = insert_tenant(session, name=name, slug=slug, timezone=timezone)
    slug = tenant.slug
    roles = create_builtin_roles(session, tenant)
    admin = User(
        tenant_id=tenant.id, role=roles["admin"], email=admin_email, full_name=admin_full_name
    )
    session.add(admin)
    session.flush()
    session.refresh(admin)
    in_tenant = tenant_ctx(ctx, tenant.id)
    invitation = invitations.invite(session, in_tenant, admin)
    activity.record(
        session, in_tenant, "tenant.provisioned", "tenant", tenant.id, after={"slug": slug}
    )
    emit(
        session, "agent.created", AgentView.data(admin), tenant_id=tenant.id, actor=in_tenant.actor
    )
    subscriptions.start_trial(session, tenant.id)
    session.refresh(tenant)
    return Provisioned(tenant, admin, invitation)


def list_tenants(
    session: Session, *, status: str | None, limit: int, cursor: str | None
) -> Page[Tenant]:
    """Every tenant of the platform, newest first (``status`` filters)."""
    query = select(Tenant)
    if status:
        query = query.where(Tenant.status == status)
    return paginate(
        session,
        query,
        created_at=Tenant.created_at,
        id_column=Tenant.id,
        limit=limit,
        cursor=cursor,
    )


def get(session: Session, tenant_id: uuid.UUID, *, for_update: bool = False) -> Tenant:
    """The tenant (404 if unknown); ``for_update`` locks it FOR NO KEY UPDATE.

    Why not FOR UPDATE: every insert of a tenant-owned row takes FOR KEY SHARE on the
    tenant (its foreign key), which FOR UPDATE conflicts with. A change that held it and
    then re-timed SLA clocks deadlocked with ``check_sla`` holding a clock and inserting
    its breach. The id, the key rows reference, never changes here (a new slug, also a
    unique key, still takes FOR UPDATE at its own UPDATE).
    """
    query = select(Tenant).where(Tenant.id == tenant_id)
    found = session.scalar(query.with_for_update(key_share=True) if for_update else query)
    if found is None:
        raise NotFound("Tenant not found")
    return found


def update(
    session: Session, ctx: AdminCtx, tenant_id: uuid.UUID, changes: dict[str, Any]
) -> Tenant:
    """Change a tenant's name, slug, timezone or status (``active`` reactivates it)."""
    tenant = get(session, tenant_id, for_update=True)
    before = TenantView.data(tenant)
    slug = changes.get("slug")
    if slug and slug != tenant.slug and slug_taken(session, slug, except_id=tenant.id):
        raise slug_conflict(slug)
    try:
        # WHY the savepoint: a slug given to another tenant at once (not committed when
        # checked) fails the unique index, a 409 that must still name the field.
        with session.begin_nested():
            for field in ("name", "slug", "timezone", "status"):
                if field in changes:
                    setattr(tenant, field, changes[field])
            session.flush()
    except IntegrityError as exc:
        if slug and getattr(exc.orig.diag, "constraint_name", None) == SLUG_INDEX:
            raise slug_conflict(slug) from exc
        raise
    session.refresh(tenant)
    after = TenantView.data(tenant)
    if before["timezone"] != after["timezone"]:
        schedules.retime_sla_clocks(session, tenant.id)  # as the tenant's own change does
    action = "tenant.updated"
    if before["status"] != after["status"]:
        action = "tenant.reactivated" if after["status"] == "active" else "tenant.suspended"
    activity.record(
        session, tenant_ctx(ctx, tenant.id), action, "tenant", tenant.id, before=before, after=after
    )
    return tenant


def suspend(session: Session, ctx: AdminCtx, tenant_id: uuid.UUID) -> None:
    """Suspend a tenant (data kept); suspending a suspended tenant changes nothing."""
    tenant = get(session, tenant_id, for_update=True)
    if tenant.status != "suspended":
        update(session, ctx, tenant_id, {"status": "suspended"})

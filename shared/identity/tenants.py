"""Registering a tenant: its built-in roles, first admin and trial, in one transaction."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import activity
from shared.billing import subscriptions
from shared.context import Ctx
from shared.errors import Conflict
from shared.events import Actor, emit
from shared.identity.permissions import BUILTIN_ROLES
from shared.identity.security import hash_password
from shared.models import Role, Tenant, User
from shared.schemas.identity import AgentView

_SLUG_JUNK = re.compile(r"[^a-z0-9]+")
#: The unique index on ``tenants.slug``.
SLUG_INDEX = "uq_tenants_slug"


@dataclass(frozen=True, slots=True)
class Registration:
    tenant: Tenant
    admin: User


def slugify(name: str) -> str:
    """A slug from ``name``, cut before the ends are trimmed: a cut right after a word
    left a trailing '-', which no ``tenant`` field (login, public pages) accepts."""
    slug = _SLUG_JUNK.sub("-", name.lower())[:48].strip("-")
    return slug or "workspace"


def _free_slug(session: Session, base: str) -> str:
    """Return ``base`` or, when taken, ``base-<random>``; an explicit slug is never altered."""
    candidate = base
    while session.scalar(select(exists().where(Tenant.slug == candidate))):
        candidate = f"{base}-{secrets.token_hex(3)}"
    return candidate


def slug_taken(session: Session, slug: str, *, except_id: uuid.UUID | None = None) -> bool:
    query = exists().where(Tenant.slug == slug)
    if except_id is not None:
        query = query.where(Tenant.id != except_id)
    return bool(session.scalar(select(query)))


def slug_conflict(slug: str) -> Conflict:
    return Conflict(
        f"The workspace slug '{slug}' is taken",
        details=[{"field": "slug", "message": "already used"}],
    )


def insert_tenant(session: Session, *, name: str, slug: str | None, timezone: str) -> Tenant:
    """Insert a tenant under ``slug`` (409 if taken) or a free slug made from ``name``.

    WHY the savepoint: two sign-ups (or provisionings) at once both found the slug free;
    the second insert waited for the first to commit and failed the unique index, a bare
    409 without the field (or, for a slug the caller never chose, a 409 at all). Now the
    loser is told the slug is taken, or gets another free slug, as if it had come second.
    """
    while True:
        if slug and slug_taken(session, slug):
            raise slug_conflict(slug)
        chosen = slug or _free_slug(session, slugify(name))
        tenant = Tenant(name=name, slug=chosen, timezone=timezone, status="active")
        try:
            with session.begin_nested():
                session.add(tenant)
                session.flush()
        except IntegrityError as exc:
            if getattr(exc.orig.diag, "constraint_name", None) != SLUG_INDEX:
                raise
            if slug:
                raise slug_conflict(slug) from exc
            continue
        return tenant


def create_builtin_roles(session: Session, tenant: Tenant) -> dict[str, Role]:
    roles = {
        name: Role(
            tenant_id=tenant.id,
            name=name,
            description=description,
            permissions=list(keys),
            is_builtin=True,
        )
        for name, (description, keys) in BUILTIN_ROLES.items()
    }
    session.add_all(roles.values())
    return roles


def register_tenant(
    session: Session,
    *,
    organization_name: str,
    full_name: str,
    email: str,
    password: str,
    slug: str | None = None,
    timezone: str = "UTC",
    request_id: str | None = None,
    ip: str | None = None,
) -> Registration:
    """Create a tenant with its roles and admin user; a taken explicit ``slug`` is a 409."""
    tenant = insert_tenant(session, name=organization_name, slug=slug, timezone=timezone)
    slug = tenant.slug
    roles = create_builtin_roles(session, tenant)
    admin = User(
        tenant_id=tenant.id,
        role=roles["admin"],
        email=email,
        full_name=full_name,
        password_hash=hash_password(password),
    )
    session.add(admin)
    session.flush()
    session.refresh(admin)
    ctx = Ctx.system(tenant.id, actor=Actor("user", admin.id))
    data = AgentView.data(admin)
    activity.record(session, ctx, "tenant.registered", "tenant", tenant.id, after={"slug": slug})
    emit(session, "agent.created", data, tenant_id=tenant.id, actor=ctx.actor)
    subscriptions.start_trial(session, tenant.id)
    return Registration(tenant, admin)

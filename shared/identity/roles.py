"""Roles: named sets of permission keys. Built-ins are seeded per tenant; ``admin`` is fixed."""

from __future__ import annotations

import uuid

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from shared import activity
from shared.context import Ctx
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.identity.permissions import ALL_KEYS
from shared.models import Role, User
from shared.schemas.identity import RoleView
from shared.sql import count_under_lock, flush_unique

#: Custom roles one workspace may hold. WHY: their list (GET /api/roles) has no pages.
MAX_CUSTOM_ROLES = 100


class RoleLimitReached(ValidationFailed):
    code = "role_limit"


def list_roles(session: Session, ctx: Ctx) -> list[Role]:
    ctx.require("roles.manage")
    return list(
        session.scalars(
            select(Role)
            .where(Role.tenant_id == ctx.tenant_id)
            .order_by(Role.is_builtin.desc(), Role.name)
        )
    )


def get_role(session: Session, ctx: Ctx, role_id: uuid.UUID, *, for_update: bool = False) -> Role:
    ctx.require("roles.manage")
    query = select(Role).where(Role.tenant_id == ctx.tenant_id, Role.id == role_id)
    if for_update:
        query = query.with_for_update()
    role = session.scalars(query).one_or_none()
    if role is None:
        raise NotFound("Role not found")
    return role


def _check_permissions(keys: list[str]) -> list[str]:
    unknown = sorted(set(keys) - ALL_KEYS)
    if unknown:
        raise ValidationFailed(
            f"Unknown permission keys: {', '.join(unknown)}",
            details=[
                {"field": f"permissions[{keys.index(k)}]", "message": f"unknown permission '{k}'"}
                for k in unknown
            ],
        )
    return sorted(set(keys))


def _name_taken(session: Session, ctx: Ctx, name: str, except_id: uuid.UUID | None = None) -> bool:
    query = exists().where(
        Role.tenant_id == ctx.tenant_id, func.lower(Role.name) == func.lower(name)
    )
    if except_id:
        query = query.where(Role.id != except_id)
    return bool(session.scalar(select(query)))


def _name_conflict(name: str) -> Conflict:
    return Conflict(
        f"A role named '{name}' exists",
        details=[{"field": "name", "message": "already used in this workspace"}],
    )


def _flush_unique(session: Session, name: str) -> None:
    """Flush; a name a concurrent request took meanwhile is our 409, not the net's.

    NOTE: :func:`_name_taken` reads before the insert and cannot see a role another
    transaction has inserted but not committed: the unique index decides then.
    """
    flush_unique(session, "uq_roles_tenant_name", _name_conflict(name))


def _check_room(session: Session, ctx: Ctx) -> None:
    """422 ``role_limit`` when the workspace has :data:`MAX_CUSTOM_ROLES` already.

    NOTE: a transaction-scoped advisory lock per tenant, so two concurrent creates cannot
    both pass the count.
    """
    count = count_under_lock(
        session,
        f"custom_roles:{ctx.tenant_id}",
        select(func.count()).where(Role.tenant_id == ctx.tenant_id, Role.is_builtin.is_(False)),
    )
    if count >= MAX_CUSTOM_ROLES:
        raise RoleLimitReached(
            f"A workspace may have at most {MAX_CUSTOM_ROLES} custom roles; delete one first",
            details=[
                {
                    "field": "body",
                    "message": f"at most {MAX_CUSTOM_ROLES} custom roles per workspace",
                }
            ],
        )


def create_role(
    session: Session, ctx: Ctx, *, name: str, permissions: list[str], description: str = ""
) -> Role:
    ctx.require("roles.manage")
    keys = _check_permissions(permissions)
    ctx.require_all(keys, "A role with these permissions")
    _check_room(session, ctx)
    if _name_taken(session, ctx, name):
        raise _name_conflict(name)
    role = Role(tenant_id=ctx.tenant_id, name=name, description=description, permissions=keys)
    session.add(role)
    _flush_unique(session, name)
    session.refresh(role)
    data = RoleView.data(role)
    activity.record_change(session, ctx, "role.created", "role", role.id, data, after=data)
    return role


def update_role(
    session: Session,
    ctx: Ctx,
    role_id: uuid.UUID,
    *,
    name: str | None = None,
    description: str | None = None,
    permissions: list[str] | None = None,
) -> Role:
    """Change a role; ``admin`` is immutable and built-ins keep their names."""
    role = get_role(session, ctx, role_id, for_update=True)
    if role.name == "admin" and role.is_builtin:
        raise Conflict("The admin role holds every permission and cannot be edited")
    ctx.require_all(role.permissions, "Changing this role")
    before = RoleView.data(role)
    if name is not None and name != role.name:
        if role.is_builtin:
            raise Conflict("Built-in roles cannot be renamed")
        if _name_taken(session, ctx, name, except_id=role.id):
            raise _name_conflict(name)
        role.name = name
    if description is not None:
        role.description = description
    if permissions is not None:
        keys = _check_permissions(permissions)
        ctx.require_all(keys, "A role with these permissions")
        role.permissions = keys
    _flush_unique(session, role.name)
    session.refresh(role)
    after = RoleView.data(role)
    activity.record_change(
        session, ctx, "role.updated", "role", role.id, after, before=before, after=after
    )
    return role


#: The built-in role a deleted agent's row is moved to when its custom role is deleted.
FALLBACK_ROLE = "agent"


def delete_role(session: Session, ctx: Ctx, role_id: uuid.UUID) -> None:
    """Delete a custom role no agent holds (409 otherwise); deleted agents never block it."""
    role = get_role(session, ctx, role_id, for_update=True)
    if role.is_builtin:
        raise Conflict("Built-in roles cannot be deleted")
    ctx.require_all(role.permissions, "Deleting this role")
    holders = session.scalar(
        select(func.count()).where(User.role_id == role.id, User.deleted_at.is_(None))
    )
    if holders:
        raise Conflict(
            f"{holders} agent(s) hold this role; give them another role first",
            details=[{"field": "role", "message": f"held by {holders} agent(s)"}],
        )
    before = RoleView.data(role)
    # NOTE: a deleted agent keeps no role of its own (it can no longer sign in); its row
    # moves to the built-in least-privileged role, so it never pins a custom role.
    session.execute(
        update(User)
        .where(
            User.tenant_id == ctx.tenant_id,
            User.role_id == role.id,
            User.deleted_at.is_not(None),
        )
        .values(role_id=_builtin_role_id(session, ctx, FALLBACK_ROLE))
    )
    session.delete(role)
    activity.record_change(session, ctx, "role.deleted", "role", role.id, before, before=before)


def _builtin_role_id(session: Session, ctx: Ctx, name: str) -> uuid.UUID:
    return session.scalar(
        select(Role.id).where(
            Role.tenant_id == ctx.tenant_id, Role.name == name, Role.is_builtin.is_(True)
        )
    )

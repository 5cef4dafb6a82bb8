"""Agents: a tenant's human users, managed by admins and partly by themselves."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from sqlalchemy import Select, bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from shared import activity
from shared.automation import rules as automation_rules
from shared.automation.actions import AGENTS
from shared.billing import usage as billing_usage
from shared.context import Ctx
from shared.db import fetch_rows
from shared.errors import Conflict, DomainError, Forbidden, NotFound, ValidationFailed
from shared.events import emit
from shared.identity import auth, invitations
from shared.identity.security import hash_password, verify_password
from shared.inbox import conversations
from shared.models import ApiKey, Conversation, Division, DivisionMember, Role, Tenant, User
from shared.pagination import Page, decode_cursor, encode_cursor, paginate_rows
from shared.schemas.identity import AgentView
from shared.sql import contains_pattern, flush_unique, lock_key

#: Fields an agent may change on their own profile without ``agents.manage``
#: (``current_password`` is not a field: it proves who sets a new ``password``).
SELF_SERVICE_FIELDS = frozenset({"full_name", "avatar_url", "password", "current_password"})


class InvalidPassword(DomainError):
    """The current password given to change one's own was wrong."""

    status, code = 403, "invalid_password"


STATUSES = ("online", "offline")


def _live_agents(ctx: Ctx):
    return select(User).where(User.tenant_id == ctx.tenant_id, User.deleted_at.is_(None))


#: The columns of :class:`~shared.schemas.identity.AgentView`, for lists built from rows.
_AGENT_COLUMNS = (
    User.id,
    User.email,
    User.full_name,
    User.avatar_url,
    User.status,
    Role.id.label("role_id"),
    Role.name.label("role_name"),
    User.last_login_at,
    User.created_at,
    User.updated_at,
)


def live_agent_rows(ctx: Ctx) -> Select[Any]:
    """The tenant's live agents as ``AgentView`` columns; narrow it, then :func:`page_of_agents`."""
    return (
        select(*_AGENT_COLUMNS)
        .join(Role, Role.id == User.role_id)
        .where(User.tenant_id == ctx.tenant_id, User.deleted_at.is_(None))
    )


def page_of_agents(
    session: Session, query: Select[Any], *, limit: int, cursor: str | None
) -> Page[dict[str, Any]]:
    """One page of :func:`live_agent_rows` (narrowed) as plain dicts shaped like ``AgentView``.

    PERF: agent lists are the API's busiest reads; rows, not ORM objects.
    """
    page = paginate_rows(
        session, query, created_at=User.created_at, id_column=User.id, limit=limit, cursor=cursor
    )
    for item in page.items:
        item["role"] = {"id": item.pop("role_id"), "name": item.pop("role_name")}
    return page


@functools.cache
def _list_statement(status: bool, role: bool, search: bool, after: bool) -> Select[Any]:
    """The page statement for one combination of filters, built once with bind parameters.

    PERF: agent lists are the API's busiest reads. A prebuilt statement skips
    building the query and computing its cache key on every request.
    """
    query = (
        select(*_AGENT_COLUMNS)
        .join(Role, Role.id == User.role_id)
        .where(User.tenant_id == bindparam("tenant_id"), User.deleted_at.is_(None))
    )
    if status:
        query = query.where(User.status == bindparam("status"))
    if role:
        query = query.where(User.role_id == bindparam("role_id"))
    if search:
        pattern = bindparam("pattern", type_=User.email.type)
        query = query.where(User.full_name.ilike(pattern) | User.email.ilike(pattern))
    if after:
        query = query.where(
            tuple_(User.created_at, User.id)
            < tuple_(
                bindparam("after_at", type_=User.created_at.type),
                bindparam("after_id", type_=User.id.type),
            )
        )
    return query.order_by(User.created_at.desc(), User.id.desc()).limit(bindparam("limit"))


def _agent_item(row: Any) -> dict[str, Any]:
    """One row of :data:`_AGENT_COLUMNS` as the plain dict ``AgentView`` describes."""
    agent_id, email, full_name, avatar, status, role_id, role_name, last_login, created, updated = (
        row
    )
    return {
        "id": agent_id,
        "email": email,
        "full_name": full_name,
        "avatar_url": avatar,
        "status": status,
        "role": {"id": role_id, "name": role_name},
        "last_login_at": last_login,
        "created_at": created,
        "updated_at": updated,
    }


def list_agents(
    session: Session,
    ctx: Ctx,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    role_id: uuid.UUID | None = None,
    q: str | None = None,
) -> Page[dict[str, Any]]:
    """A page of live agents, newest first, filtered by status, role and a name/email search."""
    params: dict[str, Any] = {"tenant_id": ctx.tenant_id, "limit": limit + 1}
    if status:
        params["status"] = status
    if role_id:
        params["role_id"] = role_id
    if q:
        params["pattern"] = contains_pattern(q)
    if cursor:
        params["after_at"], params["after_id"] = decode_cursor(cursor)
    statement = _list_statement(bool(status), bool(role_id), bool(q), bool(cursor))
    # PERF: the driver's rows as they are, one tuple unpack per row.
    rows = fetch_rows(session.connection(), statement, params)
    items = [_agent_item(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(items[-1]["created_at"], items[-1]["id"])
    return Page(items, next_cursor)


def get_agent(session: Session, ctx: Ctx, agent_id: uuid.UUID, *, for_update: bool = False) -> User:
    """A live agent of the caller's tenant (404 otherwise); ``for_update`` locks the row.

    The lock is ``FOR NO KEY UPDATE``: it excludes other changes of the agent and the
    share lock of :func:`~shared.inbox.conversations.live_agent`, but not the foreign-key
    checks of rows that merely reference the agent (no change here touches ``users.id``;
    the agent is soft-deleted). ``FOR UPDATE`` blocked those checks too: an automation
    run holding a conversation that wrote a note signed by the agent (the rule's creator)
    waited for the agent's deletion, which waited for that conversation to unassign it:
    a deadlock, the run retried or the deletion refused with 409.
    """
    query = _live_agents(ctx).where(User.id == agent_id)
    if for_update:
        query = query.with_for_update(of=User, key_share=True)
    agent = session.scalars(query).one_or_none()
    if agent is None:
        raise NotFound("Agent not found")
    return agent


def get_profile(session: Session, ctx: Ctx) -> tuple[User, Tenant]:
    """The caller's own agent row and tenant (for ``GET /api/auth/me``)."""
    if ctx.user_id is None:
        raise NotFound("No agent behind this credential")
    agent = get_agent(session, ctx, ctx.user_id)
    return agent, session.get_one(Tenant, ctx.tenant_id)


def resolve_role(session: Session, ctx: Ctx, role: str) -> Role:
    """Find a role of the caller's tenant by id or by name (case-insensitive).

    The role is held (``FOR KEY SHARE``) until the caller commits: an agent given a role
    being deleted waits for the deletion and is told the role is gone (422), and a deletion
    waits for the agent and counts them. Unlocked, the agent's foreign key failed (a 409).
    """
    query = select(Role).where(Role.tenant_id == ctx.tenant_id)
    try:
        query = query.where(Role.id == uuid.UUID(role))
    except ValueError:
        query = query.where(func.lower(Role.name) == func.lower(role))
    found = session.scalars(query.with_for_update(read=True, key_share=True)).one_or_none()
    if found is None:
        raise ValidationFailed.field("role", f"no role '{role}' in this workspace")
    return found


def _email_conflict() -> Conflict:
    return Conflict(
        "An agent with this email already exists",
        details=[{"field": "email", "message": "already used in this workspace"}],
    )


def _flush_unique(session: Session) -> None:
    """Flush; an email a concurrent request took meanwhile is our 409, not the net's.

    NOTE: :func:`_email_taken` cannot see an agent another transaction has inserted but
    not committed: the unique index decides then.
    """
    flush_unique(session, "uq_users_tenant_email", _email_conflict())


def _email_taken(session: Session, ctx: Ctx, email: str, *, except_id: uuid.UUID | None = None):
    query = _live_agents(ctx).where(func.lower(User.email) == func.lower(email))
    if except_id:
        query = query.where(User.id != except_id)
    return session.scalars(query.limit(1)).first() is not None


def _last_admin(session: Session, ctx: Ctx, agent: User) -> bool:
    """Whether ``agent`` is an admin and no other admin who can log in would remain.

    A suspended admin (suspended by the platform's super admins) does not count: the
    workspace would be left with nobody able to administer it.
    """
    if agent.role.name != "admin":
        return False
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .join(Role, Role.id == User.role_id)
        .where(
            User.tenant_id == ctx.tenant_id,
            User.id != agent.id,
            User.deleted_at.is_(None),
            User.suspended_at.is_(None),
            Role.name == "admin",
        )
    )
    return others == 0


def _lock_admins(session: Session, ctx: Ctx) -> None:
    """Serialize changes that could remove the last admin (two admins demoting each other)."""
    lock_key(session, f"admins:{ctx.tenant_id}")


def create_agent(
    session: Session,
    ctx: Ctx,
    *,
    email: str,
    full_name: str,
    role: str,
    password: str | None = None,
    avatar_url: str | None = None,
    division_ids: list[uuid.UUID] | None = None,
) -> User:
    """Create an agent; without a password they get an emailed invitation to set one.

    ``division_ids`` puts them in those divisions (422 naming each unknown one).
    """
    ctx.require("agents.manage")
    if password:
        ctx.refuse_impersonation("Setting a password")
    divisions = _divisions(session, ctx, division_ids or [])
    if _email_taken(session, ctx, email):
        raise _email_conflict()
    billing_usage.check_seat(session, ctx.tenant_id)
    given = resolve_role(session, ctx, role)
    ctx.require_all(given.permissions, f"Giving the role '{given.name}'")
    agent = User(
        tenant_id=ctx.tenant_id,
        role=given,
        email=email,
        full_name=full_name,
        avatar_url=avatar_url,
        password_hash=hash_password(password) if password else None,
    )
    session.add(agent)
    _flush_unique(session)
    session.refresh(agent)
    if divisions:
        session.execute(
            pg_insert(DivisionMember).values(
                [
                    {"tenant_id": ctx.tenant_id, "division_id": d, "user_id": agent.id}
                    for d in divisions
                ]
            )
        )
    data = AgentView.data(agent)
    activity.record_change(
        session,
        ctx,
        "agent.created",
        "agent",
        agent.id,
        data,
        after=data | {"division_ids": [str(d) for d in divisions], "invited": password is None},
    )
    if password is None:
        invitations.invite(session, ctx, agent)
    return agent


def _divisions(session: Session, ctx: Ctx, division_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The distinct ``division_ids``, all the tenant's; else 422 naming each other index."""
    wanted = list(dict.fromkeys(division_ids))
    if not wanted:
        return []
    # NOTE: held (FOR KEY SHARE) as resolve_role holds the role: a division being deleted
    # is waited for and then unknown (422), not a membership's failed foreign key (409).
    known = set(
        session.scalars(
            select(Division.id)
            .where(Division.tenant_id == ctx.tenant_id, Division.id.in_(wanted))
            .with_for_update(read=True, key_share=True)
        )
    )
    bad = [
        {"field": f"division_ids[{index}]", "message": "no such division in this workspace"}
        for index, division_id in enumerate(division_ids)
        if division_id not in known
    ]
    if bad:
        raise ValidationFailed("Some division ids are not divisions of this workspace", details=bad)
    return wanted


def update_agent(session: Session, ctx: Ctx, agent_id: uuid.UUID, changes: dict[str, Any]) -> User:
    """Apply ``changes`` (the fields sent); agents may edit their own name, avatar, password.

    A new own password needs ``current_password`` (see :func:`_require_current_password`);
    an admin setting another agent's password does not know theirs and need not.
    """
    if not ctx.can("agents.manage") and not (
        ctx.is_self(agent_id) and changes.keys() <= SELF_SERVICE_FIELDS
    ):
        if ctx.is_self(agent_id):
            raise Forbidden("You may change only your name, avatar and password")
        raise Forbidden("This action needs the 'agents.manage' permission")
    if "password" in changes:
        ctx.refuse_impersonation("Setting a password")
        if ctx.is_self(agent_id):  # an admin's integration may still set others'
            ctx.refuse_api_key("Changing your own password")
    if "role" in changes:
        _lock_admins(session, ctx)
    current_password = changes.pop("current_password", None)
    agent = get_agent(session, ctx, agent_id, for_update=True)
    if not ctx.is_self(agent_id):
        ctx.require_all(agent.role.permissions, "Changing this agent")
    elif "password" in changes:
        _require_current_password(ctx, agent, current_password)
    before = AgentView.data(agent)
    if "email" in changes and _email_taken(session, ctx, changes["email"], except_id=agent.id):
        raise _email_conflict()
    for field in ("email", "full_name", "avatar_url"):
        if field in changes:
            setattr(agent, field, changes[field])
    if "email" in changes:
        _flush_unique(session)  # before any query autoflushes it unguarded
    if "role" in changes:
        new_role = resolve_role(session, ctx, changes["role"])
        ctx.require_all(new_role.permissions, f"Giving the role '{new_role.name}'")
        if new_role.name != "admin" and _last_admin(session, ctx, agent):
            raise Conflict("The workspace needs at least one active admin")
        agent.role = new_role
    if "password" in changes:
        agent.password_hash = hash_password(changes["password"])
        # APPSEC: a new password logs every existing session out.
        auth.user_tokens_valid_after_now(session, ctx.tenant_id, agent.id)
    if "password" in changes or before["email"] != agent.email:
        invitations.revoke_links(session, ctx.tenant_id, agent.id)
        if agent.password_hash is None:
            # An invited agent's address was corrected: their link went to the old one
            # (expired above), and without a password they could never log in.
            invitations.invite(session, ctx, agent)
    session.flush()
    session.refresh(agent)
    after = AgentView.data(agent)
    activity.record_change(
        session, ctx, "agent.updated", "agent", agent.id, after, before=before, after=after
    )
    return agent


def _require_current_password(ctx: Ctx, agent: User, given: str | None) -> None:
    """422 without ``current_password``, 403 ``invalid_password`` when it is wrong.

    APPSEC: a token alone (stolen, or a session left open) set a new password and so
    took the account over for good. A wrong guess counts as a failed login of the
    agent's email, so the token holder cannot try passwords here past the login limits.
    """
    if given is None:
        raise ValidationFailed.field("current_password", "required to change your own password")
    auth.count_password_attempt(agent.email, ctx.ip)
    if not verify_password(agent.password_hash, given):
        raise InvalidPassword(
            "The current password is wrong",
            details=[{"field": "current_password", "message": "is not your current password"}],
        )
    auth.forgive_password_attempt(agent.email, ctx.ip)


def delete_agent(session: Session, ctx: Ctx, agent_id: uuid.UUID) -> None:
    """Soft-delete an agent, revoke their API keys and unassign their unresolved
    conversations (each emits conversation.unassigned and stays in its division, so it
    is back in that division's queue), and take them off the automation rules assigning
    to them (a deletion is for good: nothing brings an agent back); the last admin
    cannot go."""
    ctx.require("agents.manage")
    _lock_admins(session, ctx)
    agent = get_agent(session, ctx, agent_id, for_update=True)
    ctx.require_all(agent.role.permissions, "Deleting this agent")
    if _last_admin(session, ctx, agent):
        raise Conflict("The workspace needs at least one active admin")
    before = AgentView.data(agent)
    agent.deleted_at = func.now()
    agent.status = "offline"
    if before["status"] != "offline":
        # Subscribers would keep showing the deleted agent online: announce it first.
        session.flush()
        session.refresh(agent)
        announce_status(session, ctx, agent, before["status"])
    session.execute(
        update(ApiKey)
        .where(ApiKey.user_id == agent.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    auth.user_tokens_valid_after_now(session, ctx.tenant_id, agent.id)
    _unassign_all(session, ctx, agent.id)
    automation_rules.forget_referent(session, ctx, AGENTS, agent.id)
    activity.record_change(session, ctx, "agent.deleted", "agent", agent.id, before, before=before)


def _unassign_all(session: Session, ctx: Ctx, agent_id: uuid.UUID) -> int:
    """Unassign every unresolved conversation of the agent, locked in id order."""
    held = session.scalars(
        select(Conversation)
        .where(
            Conversation.tenant_id == ctx.tenant_id,
            Conversation.assignee_id == agent_id,
            Conversation.status != "resolved",
        )
        .order_by(Conversation.id)
        .with_for_update()
    ).all()
    return sum(conversations.apply_assignment(session, ctx, c, None) for c in held)


def set_status(session: Session, ctx: Ctx, agent_id: uuid.UUID, status: str) -> User:
    """Toggle availability: agents set their own, ``conversations.manage`` sets anyone's
    (a suspended agent's only to offline)."""
    if not ctx.is_self(agent_id):
        ctx.require("conversations.manage")
    agent = get_agent(session, ctx, agent_id, for_update=True)
    if status == "online" and agent.suspended_at is not None:
        # Suspension took them offline: online, round robin would route conversations to
        # someone who cannot log in.
        raise Conflict("This agent is suspended; they cannot be set online")
    previous = agent.status
    if previous == status:
        return agent
    agent.status = status
    session.flush()
    session.refresh(agent)
    activity.record(
        session,
        ctx,
        "agent.status_changed",
        "agent",
        agent.id,
        before={"status": previous},
        after={"status": status},
    )
    announce_status(session, ctx, agent, previous)
    return agent


def announce_status(session: Session, ctx: Ctx, agent: User, previous: str) -> None:
    """Emit agent.status_changed for ``agent`` (flushed and refreshed) that was ``previous``.

    Every path that changes an agent's status (a toggle, a suspension, a deletion)
    calls it, so subscribers never keep an agent online the database has taken offline.
    """
    data = AgentView.data(agent) | {"previous_status": previous}
    emit(session, "agent.status_changed", data, tenant_id=ctx.tenant_id, actor=ctx.actor)

"""A tenant's users as a super admin sees them: list, suspend, activate, reset a password.

Suspension and password resets go through the auth epoch machinery: they write the
user's ``suspended_at`` / ``tokens_valid_after`` (and revoke API keys on a reset), and
every committed write to ``users`` or ``api_keys`` makes every web process's cached
principals stale at once (:mod:`shared.identity.auth_cache`). So older tokens and API
keys fail on their very next request, on every process.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared import activity
from shared.admin.context import AdminCtx
from shared.admin.tenants import get as get_tenant
from shared.admin.tenants import tenant_ctx
from shared.billing import usage as billing_usage
from shared.errors import NotFound
from shared.identity import agents, auth, invitations
from shared.models import AgentInvitation, ApiKey, User
from shared.pagination import Page, paginate


def list_users(
    session: Session, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[User]:
    """The tenant's users (deleted ones left out), newest first; unknown tenant: 404."""
    get_tenant(session, tenant_id)
    query = select(User).where(User.tenant_id == tenant_id, User.deleted_at.is_(None))
    return paginate(
        session, query, created_at=User.created_at, id_column=User.id, limit=limit, cursor=cursor
    )


def get_user(
    session: Session, tenant_id: uuid.UUID, user_id: uuid.UUID, *, for_update: bool = False
) -> User:
    """A live user of ``tenant_id``; another tenant's user answers 404 like an unknown one.

    ``for_update`` locks the user FOR NO KEY UPDATE: rows naming the user (a note's
    author...) take FOR KEY SHARE on it, which FOR UPDATE conflicts with; a reset (user
    locked, then their API keys) deadlocked with a request of that user's API key (key
    stamped, then a row naming the user). No change here touches the user's keys.
    """
    get_tenant(session, tenant_id)
    query = select(User).where(
        User.tenant_id == tenant_id, User.id == user_id, User.deleted_at.is_(None)
    )
    locked = query.with_for_update(of=User, key_share=True)
    found = session.scalar(locked if for_update else query)
    if found is None:
        raise NotFound("User not found")
    return found


def suspend(session: Session, ctx: AdminCtx, tenant_id: uuid.UUID, user_id: uuid.UUID) -> User:
    """Refuse the user's login, tokens and API keys; their tokens stay dead after activation."""
    user = get_user(session, tenant_id, user_id, for_update=True)
    if user.suspended_at is None:
        previous = user.status
        user.suspended_at = func.now()
        user.status = "offline"
        session.flush()
        auth.user_tokens_valid_after_now(session, tenant_id, user.id)
        in_tenant = tenant_ctx(ctx, tenant_id)
        activity.record(session, in_tenant, "agent.suspended", "agent", user.id)
        if previous != "offline":
            # Subscribers would keep showing the agent online: announce it like a toggle.
            session.refresh(user)
            agents.announce_status(session, in_tenant, user, previous)
    session.refresh(user)
    return user


def activate(session: Session, ctx: AdminCtx, tenant_id: uuid.UUID, user_id: uuid.UUID) -> User:
    """Lift a suspension: the user logs in again (tokens from before stay refused)."""
    user = get_user(session, tenant_id, user_id, for_update=True)
    if user.suspended_at is not None:
        billing_usage.check_seat(session, tenant_id)
        user.suspended_at = None
        session.flush()
        activity.record(session, tenant_ctx(ctx, tenant_id), "agent.activated", "agent", user.id)
    session.refresh(user)
    return user


def reset_password(
    session: Session, ctx: AdminCtx, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> AgentInvitation:
    """Clear the password, refuse every older token and API key, email a set-password link.

    The link is an agent invitation row (single use, expiring) whose email is the
    password reset's own, sent by ``send_email`` after commit.
    """
    user = get_user(session, tenant_id, user_id, for_update=True)
    user.password_hash = None
    session.flush()
    auth.user_tokens_valid_after_now(session, tenant_id, user.id)
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.tenant_id == tenant_id, ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None)
        )
        .values(revoked_at=func.now())
    )
    in_tenant = tenant_ctx(ctx, tenant_id)
    invitation = invitations.invite(session, in_tenant, user, purpose=invitations.PASSWORD_RESET)
    activity.record(
        session,
        in_tenant,
        "agent.password_reset",
        "agent",
        user.id,
        after={"invitation_id": str(invitation.id)},
    )
    return invitation

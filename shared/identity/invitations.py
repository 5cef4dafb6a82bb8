"""Agent invitations: created with a password-less agent, accepted with the emailed token.

- :func:`invite` (called by :func:`shared.identity.agents.create_agent`, in its
  transaction) writes the ``agent_invitations`` row and, after commit, enqueues
  ``send_email("agent_invitation", id)``; :mod:`.invitation_emails` sends it.
- :func:`accept` is the public ``POST /api/auth/accept-invitation``: the token's SHA-256
  finds the invitation; an unknown token is 404, a used or expired one 410. It sets the
  agent's password, spends the token and logs the agent in.
- :func:`sweep` (a scheduler job) re-drives invitation emails whose job was lost.

APPSEC: only the token's hash is stored, and the token is made when the email is sent
(never in the broker either); a token names one invitation and works once.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.orm import Session

from shared import activity
from shared.after_commit_queue import AfterCommitQueue
from shared.config import get_settings
from shared.context import Ctx
from shared.errors import DomainError, NotFound
from shared.events import Actor
from shared.identity import auth
from shared.identity.security import hash_password, issue_access_token
from shared.models import Role, Tenant, User
from shared.models.invitations import AgentInvitation

log = logging.getLogger(__name__)

#: The ``send_email`` kind of an invitation email.
EMAIL_KIND = "agent_invitation"

#: ``[invitation_id, ...]`` -> ``send_email`` messages, after commit.
QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue(
    "omnistream.invitation_emails", "invitation emails"
)
set_enqueuer = QUEUE.set_enqueuer


class InvitationGone(DomainError):
    """The invitation existed but cannot be used any more (used, expired, agent deleted)."""

    status, code = 410, "invitation_gone"


def hash_token(token: str) -> str:
    """The stored form of an invitation token (256 random bits: one SHA-256 is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


def sweep_interval() -> object:
    """How long a pending email waits before the sweeper re-drives it: past any retry."""
    settings = get_settings()
    seconds = settings.outbound_sweep_after_seconds + settings.outbound_max_backoff_ms / 1000
    return literal_column(f"interval '{float(seconds)} seconds'")


#: ``agent_invitations.purpose``: a new agent's invitation, or a reset password's link.
INVITATION = "invitation"
PASSWORD_RESET = "password_reset"  # noqa: S105 (a purpose, not a secret)
#: ``last_error_code`` of a link revoked before its email went out (never sent).
REVOKED = "revoked"


def invite(
    session: Session, ctx: Ctx, agent: User, *, purpose: str = INVITATION
) -> AgentInvitation:
    """Record a set-password link for ``agent`` (no password now); emailed after commit.

    ``purpose`` picks the email (:data:`INVITATION` or :data:`PASSWORD_RESET`); the link
    and its acceptance are the same. The caller audits it (``agent.created`` says
    ``invited``; a reset writes ``agent.password_reset``).
    """
    invitation = AgentInvitation(
        purpose=purpose,
        tenant_id=ctx.tenant_id,
        user_id=agent.id,
        invited_by=ctx.user_id,
        email=agent.email,
        sweep_at=func.now() + sweep_interval(),
    )
    session.add(invitation)
    session.flush()
    QUEUE.enqueue_after_commit(session, [invitation.id])
    return invitation


def revoke_links(session: Session, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Expire the agent's unused links (their email or password changed).

    APPSEC: a link mailed to a mistyped address must not set the password of the account
    once its address is corrected, nor replace a password an admin has set since. A link
    not emailed yet is never sent: sending sets its expiry anew, which would revive it.
    """
    links = update(AgentInvitation).where(
        AgentInvitation.tenant_id == tenant_id, AgentInvitation.user_id == user_id
    )
    session.execute(
        links.where(AgentInvitation.status == "pending").values(
            status="failed",
            expires_at=func.now(),
            last_error_code=REVOKED,
            last_error_message="revoked before it was sent: the email or password changed",
        )
    )
    session.execute(links.where(AgentInvitation.status == "sent").values(expires_at=func.now()))


def accept(
    session: Session,
    *,
    token: str,
    password: str,
    ip: str | None = None,
    request_id: str | None = None,
) -> auth.LoginResult:
    """Set the invited agent's password with a valid token; log them in."""
    found = session.execute(
        select(AgentInvitation, User, Role, Tenant, func.now() >= AgentInvitation.expires_at)
        .join(
            User,
            (User.id == AgentInvitation.user_id) & (User.tenant_id == AgentInvitation.tenant_id),
        )
        .join(Role, Role.id == User.role_id)
        .join(Tenant, Tenant.id == User.tenant_id)
        .where(AgentInvitation.token_hash == hash_token(token))
        .with_for_update(of=(AgentInvitation, User))
    ).one_or_none()
    if found is None:
        raise NotFound("This invitation link is not valid")
    invitation, user, role, tenant, expired = found
    if invitation.status == "accepted":
        raise InvitationGone("This invitation was already used; log in with your password")
    if expired or invitation.status != "sent":
        raise InvitationGone("This invitation has expired; ask an admin for a new one")
    if user.deleted_at is not None:
        raise InvitationGone("This agent no longer exists")
    if invitation.email.lower() != user.email.lower():
        # The address changed after the link was mailed (revoke_links expires such links;
        # this holds for any row written before it did).
        raise InvitationGone("This link was sent to another address; ask an admin for a new one")
    if tenant.status != "active":
        raise auth.TenantSuspended("This workspace is suspended")
    if user.suspended_at is not None:
        # APPSEC: like login; the link stays unused, for after the suspension is lifted.
        raise auth.UserSuspended("This user is suspended")
    invitation.status = "accepted"
    invitation.accepted_at = func.now()
    user.password_hash = hash_password(password)
    user.last_login_at = func.now()
    ctx = Ctx(tenant.id, Actor("user", user.id), user_id=user.id, request_id=request_id, ip=ip)
    activity.record(
        session,
        ctx,
        "agent.invitation_accepted",
        "agent",
        user.id,
        after={"invitation_id": str(invitation.id)},
    )
    session.flush()
    # APPSEC: the password is set; the agent's other links (an earlier reset's) must not
    # replace it, as when an admin sets it.
    revoke_links(session, tenant.id, user.id)
    return auth.LoginResult(user, role, tenant, issue_access_token(user.id, tenant.id))


def sweep(session: Session, *, batch: int = 500) -> int:
    """Re-enqueue pending invitation emails whose ``sweep_at`` passed (their job was lost).

    A suspended workspace's emails wait (its worker would drop them) until it is reactivated.
    """
    active = select(Tenant.id).where(
        Tenant.id == AgentInvitation.tenant_id, Tenant.status == "active"
    )
    due = (
        select(AgentInvitation.id)
        .where(
            AgentInvitation.status == "pending",
            AgentInvitation.sweep_at <= func.now(),
            active.exists(),
        )
        .order_by(AgentInvitation.sweep_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    ids = list(
        session.scalars(
            update(AgentInvitation)
            .where(AgentInvitation.id.in_(due))
            .values(sweep_at=func.now() + sweep_interval())
            .returning(AgentInvitation.id)
        )
    )
    if ids:
        log.warning("re-driving %d invitation email(s) whose job was lost", len(ids))
        QUEUE.enqueue_after_commit(session, ids)
    return len(ids)

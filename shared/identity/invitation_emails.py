"""``send_email("agent_invitation", id)``'s work: email one invitation's set-password link, once.

The row's ``purpose`` picks the text: a new agent's invitation, or a password reset's.

The invitation row is claimed with ``FOR UPDATE SKIP LOCKED`` for the whole attempt, so a
second copy of the job does nothing, and once the row is no longer ``pending`` every later
copy is a no-op. The token is made here, at send time: only its hash and expiry are
written, and only once the relay accepted the email (a failed attempt stores nothing
usable). A transient SMTP failure is recorded on the row and retried by the actor; a
permanent one (or the last retry) leaves the row ``failed`` with the SMTP code and reply.

NOTE: at least once at the edge, like every send: if the commit fails after the relay
took the email, that email's link never works and the retry sends a new one.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import uuid
from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import dead_letters
from shared.channels import platform_mail
from shared.channels.send_errors import Outcome, Result, SendFailed, as_failure
from shared.config import get_settings
from shared.db import session_scope
from shared.identity import invitations
from shared.identity.invitations import hash_token, sweep_interval
from shared.models import Tenant, User
from shared.models.invitations import AgentInvitation

log = logging.getLogger(__name__)


def invitation_link(token: str) -> str:
    """The set-password page the email links to (``INVITATION_URL``, else a default)."""
    settings = get_settings()
    template = settings.invitation_url or (
        (settings.public_base_url or "http://127.0.0.1:8000").rstrip("/")
        + "/accept-invitation?token={token}"
    )
    return template.replace("{token}", quote(token, safe=""))


def compose(agent: User, tenant: Tenant, link: str, ttl_hours: float) -> tuple[str, str, str]:
    """(subject, text, html) of the invitation email."""
    subject = f"You are invited to {tenant.name} on OmniStream"
    hours = f"{ttl_hours:g} hour{'s' if ttl_hours != 1 else ''}"
    text = (
        f"Hello {agent.full_name},\n\n"
        f"You have been added to the {tenant.name} workspace on OmniStream as {agent.email}.\n"
        f"Choose your password here to log in (the link works once, for {hours}):\n\n"
        f"{link}\n\n"
        "If you did not expect this email, you can ignore it.\n"
    )
    html = (
        f"<p>Hello {escape(agent.full_name)},</p>"
        f"<p>You have been added to the <b>{escape(tenant.name)}</b> workspace on OmniStream"
        f" as {escape(agent.email)}.</p>"
        f'<p><a href="{escape(link)}">Choose your password</a> to log in'
        f" (the link works once, for {hours}).</p>"
        "<p>If you did not expect this email, you can ignore it.</p>"
    )
    return subject, text, html


def compose_reset(agent: User, tenant: Tenant, link: str, ttl_hours: float) -> tuple[str, str, str]:
    """(subject, text, html) of the email a password reset sends (no "invited" wording)."""
    subject = f"Reset your {tenant.name} password on OmniStream"
    hours = f"{ttl_hours:g} hour{'s' if ttl_hours != 1 else ''}"
    text = (
        f"Hello {agent.full_name},\n\n"
        f"The password of {agent.email} in the {tenant.name} workspace on OmniStream was reset"
        " by a platform administrator; your old password and sessions no longer work.\n"
        f"Choose a new password here (the link works once and expires in {hours}):\n\n"
        f"{link}\n\n"
        "If you did not ask for this, contact your workspace administrator: someone may be"
        " trying to get into your account.\n"
    )
    html = (
        f"<p>Hello {escape(agent.full_name)},</p>"
        f"<p>The password of {escape(agent.email)} in the <b>{escape(tenant.name)}</b>"
        " workspace on OmniStream was reset by a platform administrator; your old password"
        " and sessions no longer work.</p>"
        f'<p><a href="{escape(link)}">Choose a new password</a>'
        f" (the link works once and expires in {hours}).</p>"
        "<p>If you did not ask for this, contact your workspace administrator: someone may"
        " be trying to get into your account.</p>"
    )
    return subject, text, html


#: ``agent_invitations.purpose`` -> the email it sends.
COMPOSERS = {invitations.INVITATION: compose, invitations.PASSWORD_RESET: compose_reset}


def deliver(invitation_id: uuid.UUID, *, last_attempt: bool) -> Result:
    """One attempt at emailing invitation ``invitation_id``; see the module docstring."""
    with session_scope() as session:
        invitation = session.scalars(
            select(AgentInvitation)
            .where(AgentInvitation.id == invitation_id)
            .with_for_update(skip_locked=True)
        ).one_or_none()
        if invitation is None:
            exists = session.scalar(select(func.count()).where(AgentInvitation.id == invitation_id))
            return Result(Outcome.BUSY if exists else Outcome.UNKNOWN)
        if invitation.status != "pending":
            return Result(Outcome.DONE)
        invitation.attempts += 1
        invitation.sweep_at = func.now() + sweep_interval()
        try:
            _send(session, invitation)
        except Exception as exc:
            error = as_failure(exc, f"invitation {invitation_id}")
            invitation.last_error_code = error.code[:64]
            invitation.last_error_message = error.message
            if error.transient and not last_attempt:
                log.info("invitation %s: transient %s, will retry", invitation_id, error.code)
                return Result(Outcome.RETRY, error)
            log.warning(
                "invitation %s failed for good: %s %s", invitation_id, error.code, error.message
            )
            invitation.status = "failed"
            return Result(Outcome.FAILED, error)
        return Result(Outcome.SENT)


def _send(session: Session, invitation: AgentInvitation) -> None:
    agent = session.get(User, invitation.user_id)
    if agent is None or agent.deleted_at is not None or agent.tenant_id != invitation.tenant_id:
        raise SendFailed("agent_deleted", "the invited agent no longer exists", transient=False)
    tenant = session.get_one(Tenant, invitation.tenant_id)
    ttl_hours = get_settings().invitation_ttl_hours
    token = secrets.token_urlsafe(32)
    composer = COMPOSERS[invitation.purpose]
    subject, text, html = composer(agent, tenant, invitation_link(token), ttl_hours)
    platform_mail.send(to=invitation.email, subject=subject, text=text, html=html)
    invitation.token_hash = hash_token(token)
    invitation.expires_at = func.now() + dt.timedelta(hours=ttl_hours)
    invitation.status = "sent"
    invitation.sent_at = func.now()
    invitation.last_error_code = None
    invitation.last_error_message = None


def revive(
    session: Session, tenant_id: uuid.UUID | None, args: Sequence[Any], **_options: Any
) -> None:
    """Let a ``send_email`` dead letter's job run while its link is still pending, else 409
    saying what to do instead.

    WHY: the job's last attempt failed the invitation, so the requeued job found it
    finished and emailed nothing while the console said requeued. It is not made pending
    again: :func:`~shared.identity.invitations.revoke_links` never expires a failed link,
    so one revived later could mail a set-password link to an address corrected since,
    or over a password set since (its APPSEC note). A fresh link is the safe way.
    """
    if len(args) != 2 or args[0] != invitations.EMAIL_KIND:
        raise dead_letters.NotRequeueable("bad_arguments", "This dead letter names no invitation")
    invitation = dead_letters.locked_row(
        session,
        AgentInvitation,
        tenant_id,
        dead_letters.row_id(args[1:]),
        gone=("invitation_gone", "The invitation was deleted: there is nothing to send"),
    )
    if invitation.status == "pending":
        return
    if invitation.status != "failed":
        raise dead_letters.NotRequeueable(
            f"invitation_{invitation.status}",
            f"The invitation was {invitation.status} already: nothing is left to send",
        )
    raise dead_letters.NotRequeueable(
        "invitation_failed",
        "The invitation email failed for good and its link never went out; it is not sent"
        " again (the address or password may have changed since). Send a fresh link: POST"
        f" /api/admin/tenants/{invitation.tenant_id}/users/{invitation.user_id}/reset-password",
    )

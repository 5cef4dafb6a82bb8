"""Agent invitations: a set-password link for an agent created without a password.

One row per invitation; the raw token is never stored. ``send_email`` generates it
when it sends the email and keeps only its SHA-256 (``token_hash``) and the expiry,
so a database dump holds no usable link. The row is also the email's job: ``status``
``pending`` until the email went out (``sweep_at`` lets the scheduler re-drive a lost
job), then ``sent``, ``accepted`` (the token is spent) or ``failed`` (with the reason).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UUIDPrimaryKey

INVITATION_STATUSES = ("pending", "sent", "accepted", "failed")


class AgentInvitation(UUIDPrimaryKey, Base):
    __tablename__ = "agent_invitations"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'accepted', 'failed')", name="status_known"),
        CheckConstraint("purpose IN ('invitation', 'password_reset')", name="purpose_known"),
        Index("uq_agent_invitations_token_hash", "token_hash", unique=True),
        Index("ix_agent_invitations_user", "tenant_id", "user_id", "created_at"),
        # PERF: the sweeper's query; finished rows cost it nothing.
        Index("ix_agent_invitations_due", "sweep_at", postgresql_where=text("status = 'pending'")),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: The admin who created the agent (null: a system action).
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    email: Mapped[str] = mapped_column(String(254))
    #: ``invitation`` (a new agent) or ``password_reset`` (a super admin reset the password):
    #: which email is sent. Added by 0024_admin_followups.
    purpose: Mapped[str] = mapped_column(String(16), server_default="invitation")
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    #: SHA-256 hex of the token in the emailed link (set when the email is sent).
    token_hash: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(server_default="0")
    sweep_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    sent_at: Mapped[dt.datetime | None]
    accepted_at: Mapped[dt.datetime | None]

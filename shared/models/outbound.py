"""Outbound sends: the worker's claim and retry bookkeeping of one outbound message.

One row per outbound message, written by the dispatch target in the same
transaction that processes its ``message.created`` event. The outbound engine
(:mod:`shared.channels.outbound_engine`) claims it by moving ``next_attempt_at``
to the claim's expiry, so no other job sends the message while the claim lives;
``sweep_at`` lets the scheduler re-enqueue a send whose job was lost.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base

SEND_STATUSES = ("pending", "sent", "failed")


class OutboundSend(Base):
    __tablename__ = "outbound_sends"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status_known"),
        # PERF: the sweeper's query; finished rows cost it nothing.
        Index("ix_outbound_sends_due", "sweep_at", postgresql_where=text("status = 'pending'")),
        Index("ix_outbound_sends_tenant", "tenant_id", "created_at"),
    )

    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(server_default="0")
    #: When a job may claim this send: a live claim's expiry, or a retry's time.
    next_attempt_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    #: When the scheduler may re-enqueue this send if it is still pending.
    sweep_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    last_attempt_at: Mapped[dt.datetime | None]
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[dt.datetime | None]

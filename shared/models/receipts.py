"""Channel bookkeeping around delivery states: read receipts we owe Meta, statuses Meta sent early.

- ``read_receipts``: one row per inbound message an agent read (the conversation's last
  inbound message at the time), written in the read's own transaction; ``mark_read_upstream``
  locks it (``FOR UPDATE SKIP LOCKED``) while it tells Meta, and ``sweep_at`` lets the
  scheduler re-drive a receipt whose job was lost.
- ``early_statuses``: a Meta status callback (sent, delivered, read, failed) for a provider
  message id we do not know yet, because the send that got that id has not committed. It
  waits here until the send records the id (then it is applied, in rank order) or until
  ``expires_at`` (then it is dropped: a status of a message some other system sent).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UUIDPrimaryKey


class ReadReceipt(Base):
    __tablename__ = "read_receipts"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status_known"),
        # PERF: the sweeper's query; finished rows cost it nothing.
        Index("ix_read_receipts_due", "sweep_at", postgresql_where=text("status = 'pending'")),
        Index("ix_read_receipts_tenant", "tenant_id", "created_at"),
    )

    #: The inbound message marked read at the provider (the latest one when the agent read).
    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(server_default="0")
    #: When the scheduler may re-enqueue this receipt if it is still pending.
    sweep_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    last_attempt_at: Mapped[dt.datetime | None]
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[dt.datetime | None]


class EarlyStatus(UUIDPrimaryKey, Base):
    __tablename__ = "early_statuses"
    __table_args__ = (
        # A callback Meta retries is kept once.
        Index(
            "uq_early_statuses_report",
            "tenant_id",
            "provider_message_id",
            "status",
            unique=True,
        ),
        Index("ix_early_statuses_expires", "expires_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider_message_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    #: When the provider says it happened.
    reported_at: Mapped[dt.datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    #: Past this, no send will claim it: the sweeper drops it.
    expires_at: Mapped[dt.datetime]

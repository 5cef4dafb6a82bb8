"""The transactional outbox: events written with the change, dispatched after commit."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UUIDPrimaryKey


class OutboxEvent(UUIDPrimaryKey, Base):
    """One domain event. ``status`` moves ``pending`` -> ``processed`` (or ``failed``)."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        # PERF: the sweeper's query; partial so processed history costs it nothing.
        Index(
            "ix_outbox_events_pending_sweep",
            "next_sweep_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_outbox_events_tenant_occurred", "tenant_id", "occurred_at", "id"),
        # PERF: the retention purge reads the oldest final events first.
        Index(
            "ix_outbox_events_final_occurred",
            "occurred_at",
            postgresql_where=text("status IN ('processed', 'failed')"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None]
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: The event whose handling caused this one (automation loop detection).
    causation_id: Mapped[uuid.UUID | None]
    #: Automation's causation chain: ``{"rule_ids": [...], "depth": n}`` of the rules whose
    #: actions caused this event (None when no rule did). Added by 0006_automation.
    causation: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: ``{"id", "email"}`` of the super admin who acted through an impersonation token
    #: (the envelope's ``actor.impersonated_by``). Added by 0024_admin_followups.
    impersonated_by: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    occurred_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    #: When the sweeper may next re-enqueue this event if it is still pending.
    next_sweep_at: Mapped[dt.datetime] = mapped_column(
        server_default=text("now() + interval '5 seconds'")
    )
    sweep_count: Mapped[int] = mapped_column(server_default="0")
    dispatch_attempts: Mapped[int] = mapped_column(server_default="0")
    #: When dispatch_event first started on it (commit-to-start latency is measured from this).
    dispatched_at: Mapped[dt.datetime | None]
    processed_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

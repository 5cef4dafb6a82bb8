"""Time-driven rows: scheduled messages, SLA policies, each conversation's SLA clock, breaches.

A scheduled message is due while ``status = 'pending'`` and ``due_at <= now()``;
``due_at`` starts at ``run_at`` and is pushed forward each time the scheduler hands the
row to a worker, so a hand-off lost with a dead leader or worker is re-driven later and
never twice at once. The conversation's SLA clock keeps ``next_check_at``, the earliest
due time not yet met or breached (NULL when paused or nothing is outstanding), so
``check_sla`` reads only what is due from a partial index, not every open conversation.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, Timestamps, UUIDPrimaryKey

SCHEDULED_STATUSES = ("pending", "sent", "cancelled", "failed")
SLA_KINDS = ("first_response", "next_response", "resolution")


class ScheduledMessage(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "scheduled_messages"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'sent', 'cancelled', 'failed')", name="status_known"
        ),
        CheckConstraint("body IS NOT NULL OR template IS NOT NULL", name="has_content"),
        Index(
            "ix_scheduled_messages_conversation",
            "tenant_id",
            "conversation_id",
            text("created_at DESC"),
            text("id DESC"),
        ),
        # PERF: the scheduler's claim reads only pending rows, by due time.
        Index("ix_scheduled_messages_due", "due_at", postgresql_where=text("status = 'pending'")),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str | None] = mapped_column(Text)
    template: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    run_at: Mapped[dt.datetime]
    #: The IANA timezone a local ``run_at`` was given in (the sender's, else the tenant's).
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    #: When the scheduler may (re)hand the row to a worker; see the module docstring.
    due_at: Mapped[dt.datetime]
    attempts: Mapped[int] = mapped_column(server_default="0")
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    sent_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]
    cancelled_by: Mapped[uuid.UUID | None]
    failed_at: Mapped[dt.datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)


class SlaPolicy(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "sla_policies"
    __table_args__ = (
        Index(
            "uq_sla_policies_tenant_name",
            "tenant_id",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_sla_policies_tenant_priority", "tenant_id", "priority"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), server_default="")
    is_active: Mapped[bool] = mapped_column(server_default="true")
    #: Lower first: the first active policy (by priority, then age) that matches wins.
    priority: Mapped[int] = mapped_column(server_default="0")
    #: Match conditions; an empty list matches anything.
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(16)), server_default="{}")
    division_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), server_default="{}"
    )
    #: The conversation must carry at least one of these tags.
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    first_response_minutes: Mapped[int | None]
    next_response_minutes: Mapped[int | None]
    resolution_minutes: Mapped[int | None]
    business_hours_only: Mapped[bool] = mapped_column(server_default="false")
    pause_on_pending: Mapped[bool] = mapped_column(server_default="true")
    pause_on_snoozed: Mapped[bool] = mapped_column(server_default="true")
    #: Bumped by every change of targets; clocks of an older version are recomputed.
    version: Mapped[int] = mapped_column(server_default="1")
    deleted_at: Mapped[dt.datetime | None]


class ConversationSla(Base):
    """A conversation's SLA clock under its policy (one row per conversation)."""

    __tablename__ = "conversation_slas"
    __table_args__ = (
        Index(
            "ix_conversation_slas_next_check",
            "next_check_at",
            postgresql_where=text("next_check_at IS NOT NULL"),
        ),
        Index("ix_conversation_slas_policy", "tenant_id", "policy_id"),
    )

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    policy_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sla_policies.id", ondelete="CASCADE"))
    policy_version: Mapped[int]
    #: When the clock started (the conversation opened, or reopened).
    started_at: Mapped[dt.datetime]
    #: When the current pause began (pending/snoozed under a pausing policy); NULL: running.
    paused_at: Mapped[dt.datetime | None]
    #: Working seconds spent paused since ``started_at``: pushed onto every due time.
    paused_seconds: Mapped[float] = mapped_column(server_default="0")
    first_response_due_at: Mapped[dt.datetime | None]
    first_response_met_at: Mapped[dt.datetime | None]
    first_response_breached_at: Mapped[dt.datetime | None]
    #: The customer message awaiting an answer (after the first response), and its clock.
    next_response_started_at: Mapped[dt.datetime | None]
    #: ``paused_seconds`` when that message arrived (pauses before it do not count).
    next_response_paused_base: Mapped[float] = mapped_column(server_default="0")
    next_response_due_at: Mapped[dt.datetime | None]
    next_response_met_at: Mapped[dt.datetime | None]
    next_response_breached_at: Mapped[dt.datetime | None]
    resolution_due_at: Mapped[dt.datetime | None]
    resolution_met_at: Mapped[dt.datetime | None]
    resolution_breached_at: Mapped[dt.datetime | None]
    next_check_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class SlaBreach(UUIDPrimaryKey, Base):
    """One missed due time; unique per target cycle, so ``check_sla`` records it once."""

    __tablename__ = "sla_breaches"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('first_response', 'next_response', 'resolution')", name="kind_known"
        ),
        Index(
            "uq_sla_breaches_cycle",
            "conversation_id",
            "kind",
            "cycle_started_at",
            unique=True,
        ),
        Index(
            "ix_sla_breaches_policy",
            "tenant_id",
            "policy_id",
            text("breached_at DESC"),
            text("id DESC"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    policy_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sla_policies.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    #: When the target's clock started (the conversation opened, or the customer wrote).
    cycle_started_at: Mapped[dt.datetime]
    due_at: Mapped[dt.datetime]
    breached_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())

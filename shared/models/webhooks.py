"""Outgoing webhooks: endpoints, one delivery per (endpoint, event), one row per attempt."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, Timestamps, UUIDPrimaryKey

#: Delivery states. ``pending`` waits for ``next_attempt_at``; ``in_flight`` is claimed
#: until ``locked_until``; the other three are final.
DELIVERY_STATUSES = ("pending", "in_flight", "succeeded", "failed", "disabled")


class WebhookEndpoint(UUIDPrimaryKey, Timestamps, Base):
    """A receiver URL subscribed to event types, with its signing secret(s) encrypted."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index("ix_webhook_endpoints_tenant_created", "tenant_id", "created_at", "id"),
        # PERF: the fan-out's lookup: enabled endpoints of a tenant subscribed to a type.
        Index(
            "ix_webhook_endpoints_tenant_types",
            "tenant_id",
            "event_types",
            postgresql_using="gin",
            postgresql_where=text("enabled"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(500), server_default="")
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    enabled: Mapped[bool] = mapped_column(server_default="true")
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[dt.datetime | None]
    secret_encrypted: Mapped[str] = mapped_column(Text)
    #: The secret before the last rotation; it keeps signing until it expires.
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[dt.datetime | None]
    #: Attempts in flight at once for this endpoint (a slow receiver holds no more threads).
    max_concurrency: Mapped[int] = mapped_column(server_default="4")
    timeout_seconds: Mapped[float] = mapped_column(server_default="15")
    last_success_at: Mapped[dt.datetime | None]
    #: First failure since the last success; the endpoint is disabled when it gets too old.
    first_failure_at: Mapped[dt.datetime | None]
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class WebhookDelivery(UUIDPrimaryKey, Base):
    """One event to one endpoint; ``event_id`` is the ``webhook-id`` of every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The fan-out is idempotent: one original delivery per (endpoint, event).
        Index(
            "uq_webhook_deliveries_endpoint_event",
            "endpoint_id",
            "event_id",
            unique=True,
            postgresql_where=text("resend_of IS NULL"),
        ),
        Index("ix_webhook_deliveries_list", "tenant_id", "endpoint_id", "created_at", "id"),
        Index("ix_webhook_deliveries_status", "endpoint_id", "status", "created_at"),
        # PERF: the sweeper's two queries, partial so finished history costs them nothing.
        Index(
            "ix_webhook_deliveries_due",
            "sweep_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_webhook_deliveries_stuck",
            "locked_until",
            postgresql_where=text("status = 'in_flight'"),
        ),
        # PERF: the retention purge's oldest-final-first scan, and the resend_of
        # foreign key's ON DELETE SET NULL (a scan per deleted delivery without it).
        Index(
            "ix_webhook_deliveries_finished",
            "finished_at",
            postgresql_where=text("status IN ('succeeded', 'failed', 'disabled')"),
        ),
        Index(
            "ix_webhook_deliveries_resend_of",
            "resend_of",
            postgresql_where=text("resend_of IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempt_count: Mapped[int] = mapped_column(server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    #: When the sweeper may (re-)enqueue this pending delivery if no job has taken it.
    sweep_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    #: A claim expires here: a worker killed mid-attempt leaves it for the sweeper.
    locked_until: Mapped[dt.datetime | None]
    last_attempt_at: Mapped[dt.datetime | None]
    last_status_code: Mapped[int | None]
    last_error_kind: Mapped[str | None] = mapped_column(String(32))
    #: The delivery this one re-sends (resend, recover); None for the fan-out's own.
    resend_of: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    finished_at: Mapped[dt.datetime | None]


class WebhookAttempt(UUIDPrimaryKey, Base):
    """One HTTP attempt of a delivery: what was sent, what came back (both truncated)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "attempt"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempt: Mapped[int]
    started_at: Mapped[dt.datetime]
    duration_ms: Mapped[int]
    request_url: Mapped[str] = mapped_column(String(2048))
    request_headers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request_body: Mapped[str] = mapped_column(Text)
    response_status: Mapped[int | None]
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    response_body: Mapped[str | None] = mapped_column(Text)
    #: None on success; else timeout, connection, blocked, status, redirect, worker_lost...
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)

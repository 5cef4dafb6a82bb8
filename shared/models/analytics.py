"""Analytics rollups: figures kept current from events, so reports never scan the inbox.

Days and hours are the tenant's local ones (``tenants.timezone``) at the time the
row was counted. "No assignee" and "no agent" are the nil UUID in the keys
(:data:`NOBODY`), so every key column is NOT NULL and part of the primary key.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UUIDPrimaryKey

NOBODY = uuid.UUID(int=0)


def _tenant() -> ForeignKey:
    return ForeignKey("tenants.id", ondelete="CASCADE")


class AnalyticsEvent(Base):
    """An event the rollups count: waiting until ``counted_at`` is set, by the transaction
    that counts it. The row then stays (a week) as the event's processed key, so an
    event queued or applied twice counts once."""

    __tablename__ = "analytics_events"
    __table_args__ = (
        Index(
            "ix_analytics_events_waiting", "tenant_id", postgresql_where=text("counted_at IS NULL")
        ),
        Index(
            "ix_analytics_events_queued", "queued_at", postgresql_where=text("counted_at IS NULL")
        ),
        Index("ix_analytics_events_counted", "counted_at"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant())
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    occurred_at: Mapped[dt.datetime]
    queued_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    counted_at: Mapped[dt.datetime | None]


class AnalyticsConversationFact(Base):
    """What the rollups currently count for one conversation (diffed against its row)."""

    __tablename__ = "analytics_conversation_facts"
    __table_args__ = (Index("ix_analytics_conversation_facts_tenant", "tenant_id"),)

    conversation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant())
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    assignee_id: Mapped[uuid.UUID | None]
    created_day: Mapped[dt.date]
    created_hour: Mapped[int] = mapped_column(SmallInteger)


class AnalyticsConversationCount(Base):
    """Conversations now in each (channel, assignee, status) of a tenant."""

    __tablename__ = "analytics_conversation_counts"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "channel", "assignee_key", "status"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant())
    channel: Mapped[str] = mapped_column(String(16))
    assignee_key: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(BigInteger, server_default="0")


class AnalyticsDaily(Base):
    """Per local day and channel: conversations and contacts created, messages by direction."""

    __tablename__ = "analytics_daily"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "day", "channel"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant())
    day: Mapped[dt.date]
    channel: Mapped[str] = mapped_column(String(16))
    conversations: Mapped[int] = mapped_column(server_default="0")
    contacts: Mapped[int] = mapped_column(server_default="0")
    inbound_messages: Mapped[int] = mapped_column(server_default="0")
    outbound_messages: Mapped[int] = mapped_column(server_default="0")


class AnalyticsHourly(Base):
    """Per local day and hour: the busy-hours view of the same counters (all channels)."""

    __tablename__ = "analytics_hourly"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "day", "hour"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant())
    day: Mapped[dt.date]
    hour: Mapped[int] = mapped_column(SmallInteger)
    conversations: Mapped[int] = mapped_column(server_default="0")
    inbound_messages: Mapped[int] = mapped_column(server_default="0")
    outbound_messages: Mapped[int] = mapped_column(server_default="0")


class AnalyticsCsatDaily(Base):
    """Per local day and agent: CSAT surveys sent and ratings received (1 to 5)."""

    __tablename__ = "analytics_csat_daily"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "day", "agent_key"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant())
    day: Mapped[dt.date]
    agent_key: Mapped[uuid.UUID]
    surveys: Mapped[int] = mapped_column(server_default="0")
    rated: Mapped[int] = mapped_column(server_default="0")
    rating_sum: Mapped[int] = mapped_column(server_default="0")
    rating_1: Mapped[int] = mapped_column(server_default="0")
    rating_2: Mapped[int] = mapped_column(server_default="0")
    rating_3: Mapped[int] = mapped_column(server_default="0")
    rating_4: Mapped[int] = mapped_column(server_default="0")
    rating_5: Mapped[int] = mapped_column(server_default="0")


class AnalyticsReconcileRun(UUIDPrimaryKey, Base):
    """One nightly reconcile: what it checked and how many rollup rows it corrected."""

    __tablename__ = "analytics_reconcile_runs"
    __table_args__ = (Index("ix_analytics_reconcile_runs_started", "started_at"),)

    started_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[dt.datetime | None]
    #: ``running``, ``succeeded`` or ``failed``.
    status: Mapped[str] = mapped_column(String(16))
    tenants: Mapped[int] = mapped_column(server_default="0")
    days_checked: Mapped[int] = mapped_column(server_default="0")
    days_skipped: Mapped[int] = mapped_column(server_default="0")
    corrections: Mapped[int] = mapped_column(server_default="0")
    #: Corrections per rollup table, and the error of a failed run.
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")

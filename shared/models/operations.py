"""Rows operators look at: dead-lettered jobs and the scheduler's heartbeat."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UUIDPrimaryKey


class DeadLetter(UUIDPrimaryKey, Base):
    """A Dramatiq message that exhausted its retries, kept until an operator acts on it."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_failed", "failed_at"),
        Index("ix_dead_letters_tenant_failed", "tenant_id", "failed_at"),
    )

    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    queue_name: Mapped[str] = mapped_column(String(128))
    actor_name: Mapped[str] = mapped_column(String(128))
    args: Mapped[list[Any]] = mapped_column(JSONB)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSONB)
    options: Mapped[dict[str, Any]] = mapped_column(JSONB)
    tenant_id: Mapped[uuid.UUID | None]
    retries: Mapped[int] = mapped_column(server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    requeued_at: Mapped[dt.datetime | None]


class SchedulerHeartbeat(Base):
    """The scheduler leader's liveness, one row per leadership name."""

    __tablename__ = "scheduler_heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(128))
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    leader_since: Mapped[dt.datetime]
    beat_at: Mapped[dt.datetime]

"""Automation stats rollups and alert occurrences.

The evaluator writes one ``automation_stats_pending`` row per evaluated event (in the
transaction that writes its runs: insert-only, no hot row); the ``roll_up_automation_stats``
actor moves those rows into ``automation_stats`` in batches (one drainer per tenant),
so the stats endpoints read a few bucket rows instead of scanning the runs.

A bucket row counts the runs of one rule (or of all rules: :data:`ALL_RULES`) in one
UTC minute, hour or day, with a fixed latency histogram (``latency_NN`` counts runs
whose evaluation took at most ``LATENCY_BOUNDS_MS[NN]``): histograms add up, so p50/p95
of any range are computed from summed buckets.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Identity,
    Index,
    PrimaryKeyConstraint,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UUIDPrimaryKey

#: The ``rule_id`` of the rows that count every rule of the tenant.
ALL_RULES = uuid.UUID(int=0)
#: Upper bounds (ms) of the latency buckets; the last bucket (``latency_13``) is +Inf.
LATENCY_BOUNDS_MS = (0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 5000)
LATENCY_COLUMNS = tuple(f"latency_{i:02d}" for i in range(len(LATENCY_BOUNDS_MS) + 1))
GRANULARITIES = ("minute", "hour", "day")


def _tenant() -> ForeignKey:
    return ForeignKey("tenants.id", ondelete="CASCADE")


class AutomationStatsPending(Base):
    """One evaluated event's runs, waiting to be added to the rollups.

    ``items`` is ``[[rule_id, status, actions_executed, duration_ms], ...]``; the row is
    deleted by the transaction that adds it, so it counts exactly once.
    """

    __tablename__ = "automation_stats_pending"
    __table_args__ = (Index("ix_automation_stats_pending_tenant", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant())
    #: The instant the event was evaluated at (the evaluator's clock): its buckets.
    at: Mapped[dt.datetime]
    items: Mapped[list[Any]] = mapped_column(JSONB)
    queued_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class AutomationStats(Base):
    """Counters of one rule (or all) in one minute, hour or day bucket (UTC)."""

    __tablename__ = "automation_stats"
    __table_args__ = (
        PrimaryKeyConstraint("tenant_id", "granularity", "rule_id", "bucket_start"),
        # PERF: the overview reads every rule's buckets of a range; by the primary key it
        # would read every minute bucket of every rule of the tenant.
        Index("ix_automation_stats_time", "tenant_id", "granularity", "bucket_start"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant())
    granularity: Mapped[str] = mapped_column(String(8))
    rule_id: Mapped[uuid.UUID]
    bucket_start: Mapped[dt.datetime]
    runs: Mapped[int] = mapped_column(BigInteger, server_default="0")
    matches: Mapped[int] = mapped_column(BigInteger, server_default="0")
    skipped: Mapped[int] = mapped_column(BigInteger, server_default="0")
    failures: Mapped[int] = mapped_column(BigInteger, server_default="0")
    actions: Mapped[int] = mapped_column(BigInteger, server_default="0")
    duration_ms_sum: Mapped[float] = mapped_column(Float, server_default="0")
    latency_00: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 0.25 ms
    latency_01: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 0.5 ms
    latency_02: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 1 ms
    latency_03: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 2.5 ms
    latency_04: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 5 ms
    latency_05: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 10 ms
    latency_06: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 25 ms
    latency_07: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 50 ms
    latency_08: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 100 ms
    latency_09: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 250 ms
    latency_10: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 500 ms
    latency_11: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 1000 ms
    latency_12: Mapped[int] = mapped_column(BigInteger, server_default="0")  # <= 5000 ms
    latency_13: Mapped[int] = mapped_column(BigInteger, server_default="0")  # +Inf


class AutomationAlert(UUIDPrimaryKey, Base):
    """One alert incident of a rule: ``open`` from the check that found the condition
    until the check that found it cleared (``resolved``). At most one open per (rule, kind)."""

    __tablename__ = "automation_alerts"
    __table_args__ = (
        Index(
            "uq_automation_alerts_open",
            "rule_id",
            "kind",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_automation_alerts_tenant_triggered", "tenant_id", "triggered_at", "id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant())
    #: No foreign key: an alert outlives its rule, as runs do.
    rule_id: Mapped[uuid.UUID]
    #: ``failure_rate``, ``no_runs`` or ``latency``.
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    triggered_at: Mapped[dt.datetime]
    resolved_at: Mapped[dt.datetime | None]
    #: What the check measured and the bound it crossed (a rate in %, ms or minutes).
    observed: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")

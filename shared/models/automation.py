"""Automation: rules, the queue of events that can trigger them, and one run per (event, rule).

``automation_events`` is the queue row ``dispatch_event`` writes for an event some
active rule is triggered by; ``evaluate_rules`` moves it ``pending`` ->
``processing`` -> ``done`` (or ``failed``). ``automation_runs`` records every
trigger-matching rule's decision with the snapshots that replay it; a run outlives
its rule (no foreign key to the rule). ``working_hours`` is read by the facts
builder; its API comes with a later issue.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import Base, Timestamps, UUIDPrimaryKey

EVENT_STATUSES = ("pending", "processing", "done", "failed")


class AutomationRule(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "automation_rules"
    __table_args__ = (
        # PERF: the evaluator's "active rules of this tenant triggered by this type".
        Index(
            "ix_automation_rules_triggers",
            "tenant_id",
            "trigger_event_types",
            postgresql_using="gin",
            postgresql_where=text("is_active"),
        ),
        Index("ix_automation_rules_tenant_created", "tenant_id", "created_at", "id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), server_default="")
    trigger_event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONB)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    priority: Mapped[int] = mapped_column(server_default="100")
    stop_processing: Mapped[bool] = mapped_column(server_default="false")
    is_active: Mapped[bool] = mapped_column(server_default="true")
    #: When the rule last started to run (created active, switched on, snooze ended
    #: early, the global control resumed it): a ``no_runs`` alert measures its silence
    #: from here, not from creation.
    activated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    version: Mapped[int] = mapped_column(server_default="1")
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # Room for the "automation operations" issue (snooze, schedule, rollout, alerts).
    snoozed_until: Mapped[dt.datetime | None]
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    rollout_percentage: Mapped[int] = mapped_column(server_default="100")
    alert_settings: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class AutomationEvent(UUIDPrimaryKey, Base):
    """One outbox event that active rules are triggered by: the evaluator's queue row."""

    __tablename__ = "automation_events"
    __table_args__ = (
        Index("ix_automation_events_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_automation_events_tenant_status", "tenant_id", "status", "created_at"),
        Index("ix_automation_events_conversation", "tenant_id", "conversation_id", "created_at"),
        Index("ix_automation_events_fingerprint", "tenant_id", "fingerprint"),
        # PERF: the sweeper's scan of rows stuck before done.
        Index(
            "ix_automation_events_unfinished",
            "sweep_at",
            postgresql_where=text("status IN ('pending', 'processing')"),
        ),
        # PERF: the retention purge's oldest-finished-first scan.
        Index(
            "ix_automation_events_finished",
            "finished_at",
            postgresql_where=text("status IN ('done', 'failed')"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    outbox_event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[uuid.UUID | None]
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    #: ``{"rule_ids": [...], "depth": n}`` of the outbox event (None: not caused by a rule).
    causation: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: Whether the next evaluation runs every current rule again (reprocess).
    reprocess: Mapped[bool] = mapped_column(server_default="false")
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    #: When the sweeper may re-enqueue the row if it is still pending or processing.
    sweep_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class AutomationRunContext(UUIDPrimaryKey, Base):
    """What one evaluation of an event saw (its facts and changes), shared by its runs.

    PERF: written once per event and evaluation instead of copied into each of its runs
    (an event triggering 50 rules stored its facts 50 times). A retry or a reprocess
    gathers the facts again and writes a new one.
    """

    __tablename__ = "automation_run_contexts"
    __table_args__ = (Index("ix_automation_run_contexts_event", "automation_event_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    automation_event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("automation_events.id", ondelete="CASCADE")
    )
    facts: Mapped[dict[str, Any]] = mapped_column(JSONB)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.clock_timestamp())


class AutomationRuleSnapshot(Base):
    """A rule as its runs ran it, stored once per content (the digest of its JSON).

    PERF: every run of a rule version carried the same snapshot; now they point at it.
    Kept while the tenant is (one row per rule version that ran, however many runs).
    """

    __tablename__ = "automation_rule_snapshots"

    digest: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    rule_id: Mapped[uuid.UUID]
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class AutomationRun(UUIDPrimaryKey, Base):
    """One trigger-matching rule's decision on one event, with what replays it.

    The facts, changes and rule snapshot are read through :attr:`facts`,
    :attr:`changes` and :attr:`rule_snapshot`: the run's own columns for runs written
    before migration 0026 (and runs built directly), else its context and snapshot rows.
    :attr:`condition_results` likewise: the run's own trace, or (runs written since
    migration 0027) the trace rebuilt from the snapshot, the facts and the leaves'
    outcomes the run stored.
    """

    __tablename__ = "automation_runs"
    __table_args__ = (
        # Exactly once in effect: a non-reprocess run per (event, rule).
        Index(
            "uq_automation_runs_event_rule",
            "automation_event_id",
            "rule_id",
            unique=True,
            postgresql_where=text("NOT reprocess"),
        ),
        Index("ix_automation_runs_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_automation_runs_rule", "tenant_id", "rule_id", "created_at"),
        Index("ix_automation_runs_event", "automation_event_id"),
    )

    #: No foreign key: the queue row's cascade removes the run with its tenant (PERF: the
    #: check was a lookup per inserted run).
    tenant_id: Mapped[uuid.UUID]
    automation_event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("automation_events.id", ondelete="CASCADE")
    )
    #: No foreign key: runs are kept when their rule is deleted.
    rule_id: Mapped[uuid.UUID]
    rule_version: Mapped[int]
    #: Each evaluation's shared context and snapshot (None on runs that hold their own).
    context_id: Mapped[uuid.UUID | None]
    snapshot_digest: Mapped[str | None] = mapped_column(String(32))
    own_rule_snapshot: Mapped[dict[str, Any] | None] = mapped_column("rule_snapshot", JSONB)
    own_facts: Mapped[dict[str, Any] | None] = mapped_column("facts", JSONB)
    own_changes: Mapped[dict[str, Any] | None] = mapped_column("changes", JSONB)
    matched: Mapped[bool]
    #: ``matched``, ``not_matched``, ``skipped`` (loop, depth, stopped), ``failed``.
    status: Mapped[str] = mapped_column(String(16))
    own_condition_results: Mapped[list[dict[str, Any]]] = mapped_column(
        "condition_results", JSONB, server_default="[]"
    )
    #: One character per condition leaf, in tree order (``1`` matched, ``0`` not, ``t``
    #: its regular expression ran out of time); None on runs that hold their own trace.
    condition_outcomes: Mapped[str | None] = mapped_column(Text)
    action_results: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    duration_ms: Mapped[float] = mapped_column(server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    reprocess: Mapped[bool] = mapped_column(server_default="false")
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.clock_timestamp())

    #: Loaded with the run (one query per batch of runs); lists and exports opt out.
    context: Mapped[AutomationRunContext | None] = relationship(
        primaryjoin="foreign(AutomationRun.context_id) == AutomationRunContext.id",
        lazy="selectin",
        viewonly=True,
    )
    stored_snapshot: Mapped[AutomationRuleSnapshot | None] = relationship(
        primaryjoin="foreign(AutomationRun.snapshot_digest) == AutomationRuleSnapshot.digest",
        lazy="selectin",
        viewonly=True,
    )

    @property
    def facts(self) -> dict[str, Any]:
        if self.own_facts is None and self.context is not None:
            return self.context.facts
        return self.own_facts if self.own_facts is not None else {}

    @facts.setter
    def facts(self, value: dict[str, Any]) -> None:
        self.own_facts = value

    @property
    def changes(self) -> dict[str, Any]:
        if self.own_changes is None and self.context is not None:
            return self.context.changes
        return self.own_changes if self.own_changes is not None else {}

    @changes.setter
    def changes(self, value: dict[str, Any]) -> None:
        self.own_changes = value

    @property
    def rule_snapshot(self) -> dict[str, Any]:
        if self.own_rule_snapshot is None and self.stored_snapshot is not None:
            return self.stored_snapshot.snapshot
        return self.own_rule_snapshot if self.own_rule_snapshot is not None else {}

    @rule_snapshot.setter
    def rule_snapshot(self, value: dict[str, Any]) -> None:
        self.own_rule_snapshot = value

    @property
    def condition_results(self) -> list[dict[str, Any]]:
        if self.condition_outcomes is None:
            return self.own_condition_results if self.own_condition_results is not None else []
        rebuilt = self.__dict__.get("_rebuilt_trace")
        if rebuilt is None:
            from shared.automation.traces import rebuilt_trace  # the engine imports models

            rebuilt = self.__dict__["_rebuilt_trace"] = rebuilt_trace(self)
        return rebuilt

    @condition_results.setter
    def condition_results(self, value: list[dict[str, Any]]) -> None:
        self.own_condition_results, self.condition_outcomes = value, None
        self.__dict__.pop("_rebuilt_trace", None)


class WorkingHours(UUIDPrimaryKey, Timestamps, Base):
    """A tenant's schedule (division_id NULL) or a division's override."""

    __tablename__ = "working_hours"
    __table_args__ = (
        Index(
            "uq_working_hours_tenant_division",
            "tenant_id",
            text("coalesce(division_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            unique=True,
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    division_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("divisions.id", ondelete="CASCADE")
    )
    schedule: Mapped[dict[str, Any]] = mapped_column(JSONB)


class ConversationMute(Base):
    """A muted conversation: no rule is evaluated on its events until ``muted_until``.

    Written by the ``mute`` action; ``muted_until`` NULL mutes until unmuted.
    Notifications (a later issue) are meant to honour it too.
    """

    __tablename__ = "automation_conversation_mutes"

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    muted_until: Mapped[dt.datetime | None]
    rule_id: Mapped[uuid.UUID | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class AutomationSettings(Base):
    """Per-tenant automation state: the rules version workers compare their cache with,
    and the global control.

    ``rules_version`` is bumped in the transaction of every rule change, so a worker
    knows with one primary-key read whether its compiled rules are current. The
    control columns are read by the evaluator in that same read, for every event, so a
    change applies to the very next event any worker takes (no cache to invalidate).
    """

    __tablename__ = "automation_settings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    rules_version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    #: Global control: no event of the tenant is evaluated while paused (they wait, held).
    paused: Mapped[bool] = mapped_column(server_default="false")
    #: Event types whose events wait, held, while the rest run.
    paused_event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    #: Ceiling on action executions per minute for the tenant (None: no ceiling).
    max_actions_per_minute: Mapped[int | None]
    pause_reason: Mapped[str | None] = mapped_column(String(500))
    control_updated_at: Mapped[dt.datetime | None]
    control_updated_by: Mapped[uuid.UUID | None]

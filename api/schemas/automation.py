"""Request and answer shapes of the Automation group (rules, runs, event queue)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints

from api.schemas.common import BodyDay, Input, Instant, ListQuery, Nullable, Query, Update
from api.schemas.timekeeping import DayBody
from shared.automation.views import EventView, RuleView, RunDetail
from shared.models.automation import EVENT_STATUSES
from shared.schemas.base import View
from shared.timekeeping.working_hours import MAX_HOLIDAY_NAME, MAX_HOLIDAYS

RuleName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=2000)]
EventTypeName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Triggers = Annotated[list[EventTypeName], Field(min_length=1, max_length=50)]
Priority = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
Actions = Annotated[list[Any], Field(max_length=50)]
RUN_STATUSES = ("matched", "not_matched", "skipped", "failed")


class RuleCreate(Input):
    name: RuleName
    description: Description = ""
    trigger_event_types: Triggers
    conditions: Any = Field(
        None, description='a condition group; default {"match": "all", "conditions": []}'
    )
    actions: Actions = []
    priority: Priority = Field(100, description="lower runs first")
    stop_processing: bool = False
    is_active: bool = True


class RuleUpdate(Update):
    name: RuleName | None = None
    description: Description | None = None
    trigger_event_types: Triggers | None = None
    conditions: Any = None
    actions: Actions | None = None
    priority: Priority | None = None
    stop_processing: bool | None = None
    is_active: bool | None = None


class RuleListQuery(ListQuery):
    is_active: bool | None = None
    trigger_event_type: EventTypeName | None = None
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class DryRunBody(Input):
    rule: RuleUpdate | None = Field(
        None, description="unsaved edits to test instead of the saved rule"
    )
    payload: dict[str, Any] | None = Field(
        None,
        description=(
            "the event's data to test with; keys naming attributes (contact.country)"
            " set those facts directly"
        ),
    )
    event_id: uuid.UUID | None = Field(
        None, description="a real automation event or outbox event to take the facts from"
    )
    event_type: EventTypeName | None = Field(
        None, description="with payload: the event type (default the rule's first trigger)"
    )


class DryRunResult(View):
    rule: dict[str, Any]
    event_type: str
    matched: bool
    status: str
    reason: str | None
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    facts: dict[str, Any]
    changes: dict[str, Any]
    effective_state: dict[str, Any]


class RunListQuery(ListQuery):
    rule_id: uuid.UUID | None = None
    status: Literal[RUN_STATUSES] | None = None  # type: ignore[valid-type]
    from_: Instant | None = Field(None, alias="from")
    to: Instant | None = None


class RunExportQuery(Query):
    rule_id: uuid.UUID | None = None
    status: Literal[RUN_STATUSES] | None = None  # type: ignore[valid-type]
    from_: Instant | None = Field(None, alias="from")
    to: Instant | None = None


class EventListQuery(ListQuery):
    status: Literal[EVENT_STATUSES] | None = None  # type: ignore[valid-type]
    event_type: EventTypeName | None = None
    from_: Instant | None = Field(None, alias="from")
    to: Instant | None = None


class EventExportQuery(Query):
    status: Literal[EVENT_STATUSES] | None = None  # type: ignore[valid-type]
    event_type: EventTypeName | None = None
    from_: Instant | None = Field(None, alias="from")
    to: Instant | None = None


class StatsQuery(Query):
    from_: Instant | None = Field(None, alias="from")
    to: Instant | None = None


class CleanupBody(Input):
    older_than_days: int = Field(30, ge=0, le=3650)


class EventStats(View):
    counts: dict[str, int]
    total: int
    oldest_pending_age_seconds: float | None


class ReplayContext(View):
    run: RunDetail
    event: EventView | None
    rule_snapshot: dict[str, Any]
    facts: dict[str, Any]
    changes: dict[str, Any]
    condition_results: list[dict[str, Any]]
    matched: bool
    replayed: dict[str, Any] | None
    same_decision: bool


class RetryFailedResult(View):
    count: int
    event_ids: list[str]


class CleanupResult(View):
    deleted: int


__all__ = ["EventView", "RuleView", "RunDetail"]


# --- operations: snooze, schedule, rollout, effective state, global control ---------------

Until = Annotated[
    Instant,
    Field(description="RFC 3339 with an offset; in the future, at most 366 days ahead"),
]


class SnoozeBody(Input):
    until: Until


class BulkSnoozeBody(Input):
    rule_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)
    until: Until


class BulkSnoozeItem(View):
    rule_id: uuid.UUID
    status: Literal["snoozed", "not_found"]
    snoozed_until: dt.datetime | None


class BulkSnoozeResult(View):
    until: dt.datetime
    snoozed: int
    not_found: int
    results: list[BulkSnoozeItem]


class ExceptionBody(Input):
    date: BodyDay
    name: Annotated[str, StringConstraints(max_length=MAX_HOLIDAY_NAME)] = ""


class RuleScheduleUpdate(Update):
    """Only the fields sent change; a schedule switched on without days must send ``days``."""

    enabled: bool | None = Field(
        None, description="false keeps the windows but lets the rule run at any time"
    )
    timezone: Nullable[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        None, description="an IANA name; null: the tenant's timezone (as it changes)"
    )
    days: list[DayBody] | None = Field(
        None,
        max_length=7,
        description="weekly windows, as working hours' days (a weekday not listed: closed)",
    )
    exceptions: list[ExceptionBody] | None = Field(
        None, max_length=MAX_HOLIDAYS, description="local dates on which the rule never runs"
    )


class RolloutBody(Input):
    rollout_percentage: int = Field(
        ge=0, le=100, description="share of conversations the rule runs on, by hash"
    )


class EffectiveStateQuery(Query):
    event_type: EventTypeName | None = Field(
        None, description="judge for this trigger type (its per-type pause)"
    )
    conversation_id: uuid.UUID | None = Field(
        None, description="judge the rollout for this conversation"
    )


class EffectiveCheck(View):
    check: Literal["active", "snooze", "control", "schedule", "rollout"]
    ok: bool
    reason: str | None
    model_config = ConfigDict(extra="allow")


class EffectiveState(View):
    rule_id: uuid.UUID
    event_type: str | None
    conversation_id: uuid.UUID | None
    state: Literal["active", "inactive"]
    runs: bool
    is_active: bool
    reasons: list[str]
    checks: list[EffectiveCheck]
    at: dt.datetime
    snoozed_until: dt.datetime | None
    rollout_percentage: int
    schedule: dict[str, Any] | None


class PreviewQuery(Query):
    count: int = Field(10, ge=1, le=100)


class ScheduleWindow(View):
    start: dt.datetime
    end: dt.datetime | None
    start_local: str
    end_local: str | None


class SchedulePreview(View):
    rule_id: uuid.UUID
    at: dt.datetime
    timezone: str
    scheduled: bool
    inside_now: bool
    schedule: dict[str, Any] | None
    windows: list[ScheduleWindow]


class ControlUpdate(Update):
    enabled: bool | None = Field(
        None, description="false pauses every rule: events queue up and run when re-enabled"
    )
    paused_event_types: list[EventTypeName] | None = Field(
        None, max_length=50, description="event types whose events queue up, not evaluated"
    )
    max_actions_per_minute: Nullable[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        None, description="ceiling on action executions per minute; null: none"
    )
    pause_reason: Nullable[Annotated[str, StringConstraints(max_length=500)]] = None


class ControlView(View):
    enabled: bool
    paused_event_types: list[str]
    max_actions_per_minute: int | None
    pause_reason: str | None
    updated_at: dt.datetime | None
    updated_by: uuid.UUID | None
    held_events: int = Field(description="events waiting while paused")
    actions_this_minute: int | None = Field(description="counted against the ceiling")

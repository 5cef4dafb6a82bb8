"""Request and answer shapes of the Automation group (rules, runs, event queue)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from api.schemas.common import Input, ListQuery, Query, Update
from shared.automation.views import EventView, RuleView, RunDetail
from shared.models.automation import EVENT_STATUSES
from shared.schemas.base import View

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
    from_: AwareDatetime | None = Field(None, alias="from")
    to: AwareDatetime | None = None


class RunExportQuery(Query):
    rule_id: uuid.UUID | None = None
    status: Literal[RUN_STATUSES] | None = None  # type: ignore[valid-type]
    from_: AwareDatetime | None = Field(None, alias="from")
    to: AwareDatetime | None = None


class EventListQuery(ListQuery):
    status: Literal[EVENT_STATUSES] | None = None  # type: ignore[valid-type]
    event_type: EventTypeName | None = None
    from_: AwareDatetime | None = Field(None, alias="from")
    to: AwareDatetime | None = None


class EventExportQuery(Query):
    status: Literal[EVENT_STATUSES] | None = None  # type: ignore[valid-type]
    event_type: EventTypeName | None = None
    from_: AwareDatetime | None = Field(None, alias="from")
    to: AwareDatetime | None = None


class StatsQuery(Query):
    from_: AwareDatetime | None = Field(None, alias="from")
    to: AwareDatetime | None = None


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

"""Representations of rules, queue events and runs: what GET answers and events carry."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shared.schemas.base import View


class RuleView(View):
    id: uuid.UUID
    name: str
    description: str
    trigger_event_types: list[str]
    conditions: dict[str, Any]
    actions: list[dict[str, Any]]
    priority: int
    stop_processing: bool
    is_active: bool
    version: int
    created_by: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime
    #: Operations (not part of ``version``): a snooze that has passed has ended by itself.
    snoozed_until: dt.datetime | None = None
    schedule: dict[str, Any] | None = None
    rollout_percentage: int = 100
    alert_settings: dict[str, Any] | None = None


class EventView(View):
    id: uuid.UUID
    outbox_event_id: uuid.UUID
    event_type: str
    conversation_id: uuid.UUID | None
    payload: dict[str, Any]
    fingerprint: str
    status: str
    attempts: int
    error: str | None
    causation: dict[str, Any] | None
    reprocess: bool
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class RunView(View):
    id: uuid.UUID
    automation_event_id: uuid.UUID
    rule_id: uuid.UUID
    rule_version: int
    matched: bool
    status: str
    condition_results: list[dict[str, Any]]
    action_results: list[dict[str, Any]]
    duration_ms: float
    error: str | None
    reprocess: bool
    created_at: dt.datetime


class RunDetail(RunView):
    rule_snapshot: dict[str, Any]
    facts: dict[str, Any]
    changes: dict[str, Any]

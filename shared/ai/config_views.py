"""What the AI agent configuration endpoints answer (and the activity log keeps).

An agent's provider key never appears here: views say ``has_api_key`` only, so a view
can go into a response, a log line or an activity row's before/after without leaking it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from shared.schemas.base import View


class AiAgentView(View):
    id: uuid.UUID
    name: str
    description: str | None
    provider: str
    model: str | None
    embedding_model: str | None
    base_url: str | None
    has_api_key: bool
    instructions: str
    language: str | None
    temperature: float
    max_tokens: int
    guardrails: list[str]
    settle_seconds: float
    confidence_threshold: float
    handoff_message: str | None
    prompt_cost_per_1k: decimal.Decimal
    completion_cost_per_1k: decimal.Decimal
    daily_reply_limit: int | None
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class AssignmentView(View):
    id: uuid.UUID
    ai_agent_id: uuid.UUID
    integration_account_id: uuid.UUID | None
    channel: str | None
    division_id: uuid.UUID | None
    mode: str
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class HandoffRuleView(View):
    id: uuid.UUID
    ai_agent_id: uuid.UUID
    kind: str
    keywords: list[str]
    max_turns: int | None
    threshold: float | None
    division_id: uuid.UUID | None
    message: str | None
    position: int
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class OrchestrationRuleView(View):
    id: uuid.UUID
    name: str
    match_type: str
    intent: str | None
    channel: str | None
    keywords: list[str]
    target_ai_agent_id: uuid.UUID
    priority: int
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class EvaluationView(View):
    id: uuid.UUID
    ai_agent_id: uuid.UUID
    message_id: uuid.UUID
    evaluator_id: uuid.UUID | None
    score: int
    correction: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ProductView(View):
    id: uuid.UUID
    ai_agent_id: uuid.UUID
    sku: str | None
    name: str
    description: str | None
    price: decimal.Decimal | None
    currency: str | None
    url: str | None
    image_url: str | None
    in_stock: bool
    attributes: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class UsageDay(View):
    day: dt.date
    replies: int
    test_replies: int
    handoffs: int
    prompt_tokens: int
    completion_tokens: int
    cost: decimal.Decimal


class UsageTotals(View):
    replies: int
    test_replies: int
    handoffs: int
    prompt_tokens: int
    completion_tokens: int
    cost: decimal.Decimal


class AgentUsage(View):
    """One AI agent's days (zero-filled, oldest first) and their totals."""

    ai_agent_id: uuid.UUID
    from_date: dt.date
    to_date: dt.date
    days: list[UsageDay]
    totals: UsageTotals


class AgentUsageTotals(UsageTotals):
    ai_agent_id: uuid.UUID
    name: str


class UsageSummary(View):
    """Every AI agent's totals over a range, and the workspace's."""

    from_date: dt.date
    to_date: dt.date
    totals: UsageTotals
    agents: list[AgentUsageTotals]

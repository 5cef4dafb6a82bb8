"""Request shapes of the AI Agents group (configuration, rules, evaluations, usage, products)."""

from __future__ import annotations

import decimal
import uuid
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from api.schemas.common import DayParam, Input, ListQuery, Query
from shared.ai.products import ProductFields
from shared.models.ai import ASSIGNMENT_MODES, HANDOFF_KINDS, ORCHESTRATION_MATCHES, PROVIDERS


def _text(max_length: int, min_length: int = 0):
    return Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)
    ]


AgentName = _text(120, 1)
ModelName = _text(120, 1)
LongText = _text(20_000)
ShortText = _text(2_000)
Keyword = _text(200, 1)
Language = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=16, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
    ),
]
Cost = Annotated[decimal.Decimal, Field(ge=0, max_digits=12, decimal_places=6)]
Channel = Literal["whatsapp", "instagram", "messenger", "email", "api"]


class AiAgentBody(Input):
    """A whole AI agent (create, and PUT's full replace: fields left out get their defaults).

    ``api_key`` is write-only. On PUT, leaving it out keeps the stored key, ``null``
    removes it and a string replaces it.
    """

    name: AgentName
    description: ShortText | None = None
    provider: Literal[PROVIDERS] = "offline"  # type: ignore[valid-type]
    model: ModelName | None = None
    embedding_model: ModelName | None = None
    base_url: _text(500, 1) | None = None
    api_key: _text(500, 1) | None = None
    instructions: LongText = ""
    language: Language | None = None
    temperature: float = Field(0.3, ge=0, le=2, allow_inf_nan=False)
    max_tokens: int = Field(512, ge=1, le=32_768)
    guardrails: list[_text(500, 1)] = Field(default_factory=list, max_length=50)
    settle_seconds: float = Field(2.0, ge=0, le=60, allow_inf_nan=False)
    confidence_threshold: float = Field(0.1, ge=0, le=1, allow_inf_nan=False)
    handoff_message: ShortText | None = None
    prompt_cost_per_1k: Cost = decimal.Decimal(0)
    completion_cost_per_1k: Cost = decimal.Decimal(0)
    daily_reply_limit: int | None = Field(None, ge=1, le=10_000_000)
    is_active: bool = True


class AiAgentListQuery(ListQuery):
    is_active: bool | None = None
    q: _text(120, 1) | None = None


class ActiveBody(Input):
    is_active: bool


class AssignmentBody(Input):
    """A whole assignment: an integration account or a channel (or both, agreeing)."""

    ai_agent_id: uuid.UUID
    integration_account_id: uuid.UUID | None = None
    channel: Channel | None = None
    division_id: uuid.UUID | None = None
    mode: Literal[ASSIGNMENT_MODES] = "always"  # type: ignore[valid-type]
    is_active: bool = True


class AssignmentListQuery(ListQuery):
    ai_agent_id: uuid.UUID | None = None
    integration_account_id: uuid.UUID | None = None
    channel: Channel | None = None


class HandoffRuleBody(Input):
    """A whole handoff rule; which of keywords, max_turns and threshold apply depends on kind."""

    kind: Literal[HANDOFF_KINDS]  # type: ignore[valid-type]
    keywords: list[Keyword] = Field(default_factory=list, max_length=100)
    max_turns: int | None = Field(None, ge=1, le=1000)
    threshold: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    division_id: uuid.UUID | None = None
    message: ShortText | None = None
    position: int = Field(0, ge=0, le=10_000)
    is_active: bool = True


class OrchestrationRuleBody(Input):
    """A whole orchestration rule: intent (+ example phrases), channel or keywords."""

    name: AgentName
    match_type: Literal[ORCHESTRATION_MATCHES]  # type: ignore[valid-type]
    intent: _text(120, 1) | None = None
    channel: Channel | None = None
    keywords: list[Keyword] = Field(default_factory=list, max_length=100)
    target_ai_agent_id: uuid.UUID
    priority: int = Field(100, ge=0, le=100_000)
    is_active: bool = True


class OrchestrationListQuery(ListQuery):
    target_ai_agent_id: uuid.UUID | None = None


class EvaluationCreate(Input):
    message_id: uuid.UUID
    score: int = Field(ge=1, le=5)
    correction: LongText | None = None


class EvaluationBody(Input):
    """PUT replaces the score and the correction; the rated message stays."""

    score: int = Field(ge=1, le=5)
    correction: LongText | None = None


class EvaluationListQuery(ListQuery):
    message_id: uuid.UUID | None = None
    score: int | None = Field(None, ge=1, le=5)


class UsageQuery(Query):
    from_: DayParam | None = Field(None, alias="from")
    to: DayParam | None = None


class ProductBody(ProductFields, Input):
    """A whole product (create, and PUT's full replace).

    :class:`Input`'s strict integers, numbers and booleans, as every JSON body has; the
    import's rows (:class:`ProductFields` alone) stay lax: a CSV gives only strings.
    """


class ProductListQuery(ListQuery):
    q: _text(300, 1) | None = None
    sku: _text(120, 1) | None = None
    in_stock: bool | None = None

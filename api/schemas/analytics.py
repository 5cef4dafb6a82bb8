"""Analytics and WhatsApp insights: query parameters and the reference's response fields.

``period``, ``start`` and ``end`` are taken as text and checked by the service, so a
value that is not one of the periods, or not a date, answers 422 (not 400) as the
issue asks; the documented schema still lists the periods and the date format.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from api.schemas.common import Query
from shared.analytics.periods import PERIODS

_PERIOD_DOC = {"enum": list(PERIODS)}


class TrendsQuery(Query):
    period: str = Field("7d", max_length=16, json_schema_extra=_PERIOD_DOC)


class CsatQuery(Query):
    period: str = Field("30d", max_length=16, json_schema_extra=_PERIOD_DOC)


class InsightsQuery(Query):
    start: str = Field(max_length=32, json_schema_extra={"format": "date"})
    end: str = Field(max_length=32, json_schema_extra={"format": "date"})
    integration_account_id: uuid.UUID | None = None


class Overview(BaseModel):
    total_conversations: int
    open_conversations: int
    pending_conversations: int
    resolved_conversations: int
    total_contacts: int
    total_agents: int
    online_agents: int
    messages_today: int
    #: Percentage (0.0 - 100.0) of the conversations that are resolved.
    resolution_rate: float


class DayCount(BaseModel):
    date: str
    count: int


class Trends(BaseModel):
    period: str
    days: int
    conversation_trend: list[DayCount]
    message_trend: list[DayCount]


class AgentLoad(BaseModel):
    agent_id: str
    full_name: str
    email: str
    is_online: bool
    open_conversations: int
    resolved_conversations: int
    total_conversations: int


class AgentLoads(BaseModel):
    agents: list[AgentLoad]


class ChannelCounts(BaseModel):
    channel: str
    contact_count: int
    conversation_count: int


class ChannelsReport(BaseModel):
    channels: list[ChannelCounts]


class CsatSummary(BaseModel):
    total_surveys: int
    rated_count: int
    average_rating: float
    rating_1: int
    rating_2: int
    rating_3: int
    rating_4: int
    rating_5: int


class CsatAgent(BaseModel):
    agent_id: uuid.UUID
    agent_name: str
    total_surveys: int
    rated_count: int
    average_rating: float


class CsatReport(BaseModel):
    period: str
    summary: CsatSummary
    agents: list[CsatAgent]


class MessageInsight(BaseModel):
    date: str
    sent: int
    delivered: int
    read: int
    failed: int


class ConversationInsight(BaseModel):
    date: str
    conversation_type: str
    direction: str
    count: int


class TemplateInsight(BaseModel):
    template_id: str
    template_name: str
    sent: int
    delivered: int
    read: int
    clicked: int


class MessageInsights(BaseModel):
    data: list[MessageInsight]


class ConversationInsights(BaseModel):
    data: list[ConversationInsight]


class TemplateInsights(BaseModel):
    data: list[TemplateInsight]

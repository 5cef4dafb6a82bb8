"""Representations of CSAT surveys: what the endpoints answer and the csat.* events carry.

Neither holds the token or its hash: the link reaches the customer in the survey
message only.
"""

from __future__ import annotations

import datetime as dt
import uuid

from shared.schemas.base import View


class SurveyView(View):
    id: uuid.UUID
    conversation_id: uuid.UUID
    message_id: uuid.UUID | None
    #: The conversation's assignee when the survey was sent (the agent it rates).
    agent_id: uuid.UUID | None
    division_id: uuid.UUID | None
    channel: str
    #: ``manual`` (an agent's POST) or ``resolve`` (sent when the conversation was resolved).
    trigger: str
    rating: int | None
    comment: str | None
    sent_at: dt.datetime
    rated_at: dt.datetime | None


class PublicSurveyView(View):
    """What the customer's rating page gets back: its own answer, nothing about the tenant."""

    id: uuid.UUID
    rating: int | None
    comment: str | None
    rated_at: dt.datetime | None


class SettingsView(View):
    enabled_channels: list[str]
    message_template: str
    resend_window_hours: int

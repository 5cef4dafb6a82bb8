"""Representations of messages and message search hits (GET responses and event data)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shared.schemas.base import View
from shared.schemas.inbox import ContactRef


class MessageView(View):
    id: uuid.UUID
    conversation_id: uuid.UUID
    channel: str
    direction: str
    sender_type: str
    sender_id: uuid.UUID | None
    content_type: str
    body: str | None
    attachments: list[dict[str, Any]]
    template: dict[str, Any] | None
    status: str
    provider_message_id: str | None
    error_code: str | None
    error_message: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ConversationRef(View):
    id: uuid.UUID
    channel: str
    status: str
    assignee_id: uuid.UUID | None


class MessageSearchHit(View):
    """A message that matched a search, with where it lives and why it matched."""

    message: MessageView
    #: The matching passages, matches wrapped in ``<mark>`` ... ``</mark>`` (HTML-escaped body).
    highlight: str
    rank: float
    conversation: ConversationRef
    contact: ContactRef

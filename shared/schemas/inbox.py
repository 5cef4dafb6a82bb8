"""Representations of inbox resources: what GET endpoints answer and events carry."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shared.schemas.base import View


class ContactRef(View):
    id: uuid.UUID
    name: str | None
    channel: str
    phone: str | None
    email: str | None
    avatar_url: str | None


class ContactView(ContactRef):
    external_id: str
    country: str | None
    language: str | None
    tags: list[str]
    custom_attributes: dict[str, Any]
    last_inbound_at: dt.datetime | None
    #: When the contact opted out of campaigns (null: they receive them).
    opted_out_at: dt.datetime | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class ConversationView(View):
    id: uuid.UUID
    contact_id: uuid.UUID
    channel: str
    integration_account_id: uuid.UUID | None
    status: str
    snoozed_until: dt.datetime | None
    resolution_reason: str | None
    resolved_at: dt.datetime | None
    priority: str
    assignee_id: uuid.UUID | None
    division_id: uuid.UUID | None
    subject: str | None
    tags: list[str]
    custom_attributes: dict[str, Any]
    ai_active: bool
    #: The AI agent that answers it, or last answered it (``ai_active`` says whether it
    #: still does); null when none ever did.
    ai_agent_id: uuid.UUID | None
    message_count: int
    last_message_at: dt.datetime | None
    last_inbound_at: dt.datetime | None
    last_message_preview: str | None
    last_activity_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime


class ConversationListItem(ConversationView):
    """A conversation as the caller sees it in a list: with its contact and unread count."""

    contact: ContactRef
    #: Inbound messages the calling agent has not read yet.
    unread_count: int

"""Representations of campaigns and their recipients: what the endpoints answer and events carry."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel

from shared.schemas.base import View


class CampaignCounts(BaseModel):
    """Recipients by how far they got; ``sent`` counts every message the provider accepted
    (so it includes ``delivered`` and ``read``), ``delivered`` includes ``read``."""

    total: int = 0
    pending: int = 0
    queued: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    failed: int = 0
    replied: int = 0
    #: Contacts who opted out: never sent.
    skipped: int = 0
    cancelled: int = 0


class CampaignView(View):
    id: uuid.UUID
    name: str
    #: ``draft``, ``scheduled``, ``running``, ``paused``, ``completed``, ``cancelled``, ``failed``.
    status: str
    channel: str
    integration_account_id: uuid.UUID | None
    body: str | None
    template: dict[str, Any] | None
    scheduled_at: dt.datetime | None
    timezone: str | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    #: Why a campaign ``failed`` (say, its template is no longer approved).
    error_code: str | None
    error_message: str | None
    created_by: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime
    counts: CampaignCounts


class RecipientView(View):
    id: int
    contact_id: uuid.UUID
    status: str
    variables: dict[str, Any]
    message_id: uuid.UUID | None
    error_code: str | None
    error_message: str | None
    created_at: dt.datetime
    processed_at: dt.datetime | None
    replied_at: dt.datetime | None


class RecipientsAdded(BaseModel):
    #: Recipients this request added (duplicates of the campaign's are not counted).
    added: int
    #: The campaign's recipients now.
    total: int

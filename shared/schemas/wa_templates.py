"""Representations of WhatsApp templates (GET responses and event data)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shared.schemas.base import View


class WaTemplateView(View):
    id: uuid.UUID
    integration_account_id: uuid.UUID
    meta_template_id: str
    name: str
    language: str
    category: str
    status: str
    components: list[dict[str, Any]]
    parameter_format: str
    rejected_reason: str | None
    quality_score: str | None
    header_media_url: str | None
    created_by: uuid.UUID | None
    status_updated_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime


class WaTemplateSyncAccepted(View):
    """The 202 of a sync request: the job to poll, and the accounts it syncs."""

    job_id: uuid.UUID
    integration_account_ids: list[uuid.UUID]

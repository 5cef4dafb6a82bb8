"""Shapes of scheduled messages and SLA rows: GET responses and event ``data``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shared.schemas.base import View


class ScheduledMessageView(View):
    id: uuid.UUID
    conversation_id: uuid.UUID
    author_id: uuid.UUID
    body: str | None
    template: dict[str, Any] | None
    run_at: dt.datetime
    #: The timezone a local ``run_at`` was given in (the sender's, else the tenant's).
    timezone: str
    #: ``pending``, ``sent``, ``cancelled`` or ``failed``.
    status: str
    #: The message created at ``run_at`` (once sent).
    message_id: uuid.UUID | None
    sent_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    failed_at: dt.datetime | None
    #: Why it failed: ``window_closed``, ``conversation_resolved``, ``author_removed``...
    error_code: str | None
    error_message: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

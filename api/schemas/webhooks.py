"""Outgoing webhooks: request bodies, list queries and the shapes only the API answers."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from api.schemas.common import Input, Instant, ListQuery, Update
from shared.models.webhooks import DELIVERY_STATUSES
from shared.schemas.base import View
from shared.webhooks.views import AttemptView, WebhookView

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
EventTypeName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
EventTypes = Annotated[list[EventTypeName], Field(min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(max_length=500)]
Concurrency = Annotated[int, Field(ge=1, le=64)]
Timeout = Annotated[float, Field(gt=0, le=60)]


class WebhookCreate(Input):
    url: Url = Field(description="https URL of the receiver")
    event_types: EventTypes
    description: Description = ""
    is_active: bool = True
    max_concurrency: Concurrency | None = Field(
        None, description="attempts in flight at once (default WEBHOOK_MAX_CONCURRENCY)"
    )
    timeout_seconds: Timeout | None = Field(
        None, description="per-attempt timeout, capped by WEBHOOK_TIMEOUT_SECONDS"
    )


class WebhookUpdate(Update):
    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    is_active: bool | None = Field(None, description="true re-enables a disabled webhook")
    max_concurrency: Concurrency | None = None
    timeout_seconds: Timeout | None = None
    rotate_secret: bool = Field(
        False,
        description="issue a new secret; the old one keeps signing beside it for 24 h",
    )


class WebhookWithSecret(WebhookView):
    secret: str | None = Field(
        None, description="the signing secret (whsec_...), only when created or rotated"
    )


class EventTypeView(View):
    type: str
    description: str
    sample: dict[str, Any]


class DeliveryListQuery(ListQuery):
    status: Literal[DELIVERY_STATUSES] | None = None  # type: ignore[valid-type]
    event_type: EventTypeName | None = None
    from_: Instant | None = Field(None, alias="from")
    to: Instant | None = None


class RecoverBody(Input):
    since: Instant
    until: Instant


class DeliveryIds(View):
    delivery_ids: list[uuid.UUID]


class TestResult(View):
    delivery_id: uuid.UUID
    event_id: uuid.UUID
    status: str = Field(description="succeeded or failed")
    attempt: AttemptView

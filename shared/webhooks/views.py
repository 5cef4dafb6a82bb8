"""Representations of webhook endpoints, deliveries and attempts (GET answers, event data)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shared.schemas.base import View


class WebhookView(View):
    id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    is_active: bool
    disabled_reason: str | None
    disabled_at: dt.datetime | None
    max_concurrency: int
    timeout_seconds: float
    last_success_at: dt.datetime | None
    first_failure_at: dt.datetime | None
    #: Until when the previous secret still signs (a rotation in progress), else None.
    previous_secret_expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, endpoint: Any) -> WebhookView:
        return cls.model_validate(
            {
                **{name: getattr(endpoint, name, None) for name in cls.model_fields},
                "is_active": endpoint.enabled,
                "previous_secret_expires_at": _in_progress(endpoint.previous_secret_expires_at),
            }
        )

    @classmethod
    def data(cls, obj: Any) -> dict[str, Any]:
        return cls.of(obj).model_dump(mode="json")


def _in_progress(expires: dt.datetime | None) -> dt.datetime | None:
    """A rotation's end while the previous secret still signs; None once it stopped."""
    if isinstance(expires, dt.datetime) and expires > dt.datetime.now(dt.UTC):
        return expires
    return None


class AttemptView(View):
    attempt: int
    started_at: dt.datetime
    duration_ms: int
    request_url: str
    request_headers: dict[str, Any]
    request_body: str
    response_status: int | None
    response_headers: dict[str, Any] | None
    response_body: str | None
    error_kind: str | None
    error: str | None

    @classmethod
    def of_result(cls, result: Any, url: str, attempt: int = 1) -> AttemptView:
        """The view of one attempt just made (a :class:`shared.webhooks.delivery.Result`)."""
        fields = (
            "started_at",
            "duration_ms",
            "request_headers",
            "request_body",
            "response_headers",
            "response_body",
            "error_kind",
            "error",
        )
        return cls.model_validate(
            {
                "attempt": attempt,
                "request_url": url,
                "response_status": result.status_code,
                **{k: getattr(result, k) for k in fields},
            }
        )


class DeliveryView(View):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempt_count: int
    next_attempt_at: dt.datetime | None
    last_attempt_at: dt.datetime | None
    last_status_code: int | None
    last_error_kind: str | None
    resend_of: uuid.UUID | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    payload: dict[str, Any]
    attempts: list[AttemptView]

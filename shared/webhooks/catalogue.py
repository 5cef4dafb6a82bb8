"""What endpoints may subscribe to: the event catalogue, with a sample payload per type."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shared.event_types import CATALOGUE
from shared.schemas.campaigns import CampaignCounts, CampaignView

#: Sent only by the test endpoint; not in the catalogue, so nobody subscribes to it.
TEST_EVENT = "webhook.test"

_SAMPLE_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
_SAMPLE_AT = "2024-08-25T09:30:00Z"

#: Sample ``data`` per event family (the first part of the type), shaped like its GET.
_SAMPLES: dict[str, dict[str, Any]] = {
    "conversation": {
        "id": str(_SAMPLE_ID),
        "contact_id": str(_SAMPLE_ID),
        "channel": "whatsapp",
        "status": "open",
        "assignee_id": None,
        "tags": ["vip"],
        "created_at": _SAMPLE_AT,
        "updated_at": _SAMPLE_AT,
    },
    "message": {
        "id": str(_SAMPLE_ID),
        "conversation_id": str(_SAMPLE_ID),
        "direction": "inbound",
        "type": "text",
        "text": "Hello!",
        "status": "received",
        "created_at": _SAMPLE_AT,
    },
    "contact": {
        "id": str(_SAMPLE_ID),
        "name": "Ada Lovelace",
        "channel": "whatsapp",
        "phone": "+15550100",
        "tags": [],
        "created_at": _SAMPLE_AT,
    },
    "agent": {
        "id": str(_SAMPLE_ID),
        "email": "ada@example.com",
        "full_name": "Ada Agent",
        "status": "online",
        "role": {"id": str(_SAMPLE_ID), "name": "agent"},
        "created_at": _SAMPLE_AT,
        "updated_at": _SAMPLE_AT,
    },
    "webhook": {
        "endpoint_id": str(_SAMPLE_ID),
        "delivery_id": str(_SAMPLE_ID),
        "event_type": "message.created",
        "reason": "no 2xx after 8 attempts",
    },
}


def _campaign_sample(event_type: str) -> dict[str, Any]:
    """A ``campaign.*`` event's ``data``: the campaign's view (its GET, with counts), built
    with :class:`CampaignView` as the real events are, in the state the event leaves it.

    WHY: the sample was the generic ``{id, created_at}``; receivers written from it never
    saw the status, counts or, on ``campaign.failed``, the reason the real event carries.
    """
    status = event_type.split(".", 1)[1]
    ended = {"completed": _SAMPLE_AT} if status == "completed" else {}
    failure = (
        {"error_code": "template_refused", "error_message": "The template is no longer approved"}
        if status == "failed"
        else {}
    )
    counts = CampaignCounts(total=3, sent=2, delivered=2, read=1, replied=1, failed=1)
    if status == "started":
        counts = CampaignCounts(total=3, pending=3)
    view = {
        "id": _SAMPLE_ID,
        "name": "Spring sale",
        "status": "running" if status == "started" else status,
        "channel": "whatsapp",
        "integration_account_id": _SAMPLE_ID,
        "body": None,
        "template": {
            "name": "order_update",
            "language": "en_US",
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{name}}"}]}],
        },
        "scheduled_at": None,
        "timezone": None,
        "started_at": _SAMPLE_AT,
        "completed_at": None,
        "cancelled_at": _SAMPLE_AT if status == "cancelled" else None,
        "error_code": None,
        "error_message": None,
        "created_by": _SAMPLE_ID,
        "created_at": _SAMPLE_AT,
        "updated_at": _SAMPLE_AT,
        "counts": counts,
    }
    return CampaignView.model_validate(view | ended | failure).model_dump(mode="json")


#: Sample builders per event family whose ``data`` depends on the event type.
_BUILT_SAMPLES = {"campaign": _campaign_sample}


def sample_data(event_type: str) -> dict[str, Any]:
    family = event_type.split(".", 1)[0]
    if family in _BUILT_SAMPLES:
        return _BUILT_SAMPLES[family](event_type)
    return dict(_SAMPLES.get(family, {"id": str(_SAMPLE_ID), "created_at": _SAMPLE_AT}))


def envelope(
    event_id: uuid.UUID,
    event_type: str,
    occurred_at: dt.datetime | str,
    data: dict[str, Any],
    *,
    tenant_id: uuid.UUID | None = None,
    actor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body every attempt POSTs: Standard Webhooks' type/timestamp/data, plus context.

    ``occurred_at`` is API.md's name for the time; ``timestamp`` Standard Webhooks'. Both are
    sent, the same value, so a receiver written from either reads it.
    """
    timestamp = occurred_at if isinstance(occurred_at, str) else rfc3339(occurred_at)
    return {
        "id": str(event_id),
        "type": event_type,
        "occurred_at": timestamp,
        "timestamp": timestamp,
        "tenant_id": str(tenant_id) if tenant_id else None,
        "actor": actor or {"type": "system", "id": None},
        "data": data,
    }


def envelope_of(event: Any) -> dict[str, Any]:
    """The envelope of a stored outbox event (``OutboxEvent``): what its deliveries POST."""
    return envelope(
        event.id,
        event.type,
        event.occurred_at,
        event.data,
        tenant_id=event.tenant_id,
        actor=actor_of(event),
    )


def actor_of(event: Any) -> dict[str, Any]:
    """The envelope's ``actor`` of a stored outbox event, with ``impersonated_by`` if set."""
    actor = {"type": event.actor_type, "id": str(event.actor_id) if event.actor_id else None}
    if getattr(event, "impersonated_by", None):
        actor["impersonated_by"] = event.impersonated_by
    return actor


def rfc3339(value: dt.datetime) -> str:
    """API.md's form of a time: RFC 3339 in UTC with ``Z``."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def event_types() -> list[dict[str, Any]]:
    """The subscribable types, with a description and a sample envelope each."""
    return [
        {
            "type": e.name,
            "description": e.description,
            "sample": envelope(_SAMPLE_ID, e.name, _SAMPLE_AT, sample_data(e.name)),
        }
        for e in CATALOGUE.values()
    ]


def is_subscribable(event_type: str) -> bool:
    return event_type in CATALOGUE

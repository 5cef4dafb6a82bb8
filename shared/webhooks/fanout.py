"""The dispatch target: one delivery row per enabled endpoint subscribed to the event.

Runs inside ``dispatch_event``'s transaction (:mod:`shared.dispatch`), so the rows
commit together with the event's ``processed`` mark. ``ON CONFLICT DO NOTHING`` on
(endpoint, event) makes a re-run harmless. The ``deliver_webhook`` messages are
sent after that commit (:mod:`shared.webhooks.queue`).
"""

from __future__ import annotations

import uuid

from sqlalchemy import String, cast, func, literal, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.orm import Session

from shared.models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from shared.webhooks import queue
from shared.webhooks.catalogue import envelope
from shared.webhooks.delivery import SWEEP_GRACE_SECONDS

TARGET_NAME = "webhooks"


def fan_out(session: Session, event: OutboxEvent) -> list[uuid.UUID]:
    """Insert the event's deliveries and arrange their first attempt; return their ids."""
    payload = envelope(
        event.id,
        event.type,
        event.occurred_at,
        event.data,
        tenant_id=event.tenant_id,
        actor={"type": event.actor_type, "id": str(event.actor_id) if event.actor_id else None},
    )
    endpoints = select(
        func.gen_random_uuid(),
        WebhookEndpoint.tenant_id,
        WebhookEndpoint.id,
        literal(event.id),
        literal(event.type, String),
        literal(payload, JSONB),
        func.now() + text(f"interval '{int(SWEEP_GRACE_SECONDS)} seconds'"),
    ).where(
        WebhookEndpoint.tenant_id == event.tenant_id,
        WebhookEndpoint.enabled.is_(True),
        WebhookEndpoint.event_types.contains(cast([event.type], ARRAY(String))),
    )
    about = event.data.get("endpoint_id") if event.type.startswith("webhook.") else None
    if about:
        # NOTE: news about an endpoint (disabled, a delivery exhausted) goes to the others.
        endpoints = endpoints.where(WebhookEndpoint.id != uuid.UUID(about))
    stmt = (
        insert(WebhookDelivery)
        .from_select(
            ["id", "tenant_id", "endpoint_id", "event_id", "event_type", "payload", "sweep_at"],
            endpoints,
        )
        .on_conflict_do_nothing(
            index_elements=["endpoint_id", "event_id"],
            index_where=WebhookDelivery.resend_of.is_(None),
        )
        .returning(WebhookDelivery.id)
    )
    ids = list(session.scalars(stmt))
    queue.enqueue_after_commit(session, ids)
    return ids


def target(session: Session, event: OutboxEvent) -> None:
    """The :func:`shared.dispatch.register_target` callable."""
    fan_out(session, event)

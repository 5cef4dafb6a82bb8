"""The dispatch target: one delivery row per enabled endpoint subscribed to the event.

Runs inside ``dispatch_event``'s transaction (:mod:`shared.dispatch`), so the rows
commit together with the event's ``processed`` mark. ``ON CONFLICT DO NOTHING`` on
(endpoint, event) makes a re-run harmless. The ``deliver_webhooks`` message (one
for all of the event's deliveries) is sent after that commit
(:mod:`shared.webhooks.queue`).
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared import dispatch_facts
from shared.models import OutboxEvent
from shared.webhooks import queue
from shared.webhooks.catalogue import envelope_of
from shared.webhooks.delivery import SWEEP_GRACE_SECONDS

TARGET_NAME = "webhooks"

#: PERF: written once as SQL: every event runs it, and building the equivalent
#: SQLAlchemy construct per event cost more CPU than the insert itself.
#: ``:about`` is the endpoint a ``webhook.*`` event is about: news about an endpoint
#: (disabled, a delivery exhausted) goes to the others only.
_FAN_OUT = text(
    """
    INSERT INTO webhook_deliveries
        (id, tenant_id, endpoint_id, event_id, event_type, payload, sweep_at)
    SELECT gen_random_uuid(), e.tenant_id, e.id, :event_id, :event_type,
           CAST(:payload AS jsonb), now() + make_interval(secs => :grace)
      FROM webhook_endpoints e
     WHERE e.tenant_id = :tenant_id AND e.enabled
       AND e.event_types @> ARRAY[CAST(:event_type AS varchar)]
       AND e.id IS DISTINCT FROM CAST(:about AS uuid)
    ON CONFLICT (endpoint_id, event_id) WHERE resend_of IS NULL DO NOTHING
    RETURNING id
    """
)


def fan_out(session: Session, event: OutboxEvent) -> list[uuid.UUID]:
    """Insert the event's deliveries and arrange their first attempt; return their ids."""
    payload = envelope_of(event)
    about = event.data.get("endpoint_id") if event.type.startswith("webhook.") else None
    ids = list(
        session.execute(
            _FAN_OUT,
            {
                "event_id": event.id,
                "event_type": event.type,
                "payload": json.dumps(payload),
                "grace": SWEEP_GRACE_SECONDS,
                "tenant_id": event.tenant_id,
                "about": uuid.UUID(about) if about else None,
            },
        ).scalars()
    )
    queue.enqueue_after_commit(session, ids)
    return ids


def _subscribed(session: Session, tenant_id: uuid.UUID, event_type: str) -> bool:
    """Whether an enabled endpoint of the tenant takes ``event_type``.

    PERF: answered from the per-process dispatch facts (:mod:`shared.dispatch_facts`), not
    a query per batch and event type.
    """
    return event_type in dispatch_facts.of(session, tenant_id).webhook_types


def target(session: Session, event: OutboxEvent) -> None:
    """The :func:`shared.dispatch.register_target` callable.

    PERF: most events of most tenants go to no endpoint; knowing it spares each of them
    its envelope and the fan-out insert.
    """
    if _subscribed(session, event.tenant_id, event.type):
        fan_out(session, event)

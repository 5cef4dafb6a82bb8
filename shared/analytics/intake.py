"""The ``analytics`` dispatch target: queue the events the rollups count.

Runs inside ``dispatch_event``'s transaction (:mod:`shared.dispatch`; a batch target,
one statement for the batch): a counted event gets an ``analytics_events`` row (``ON
CONFLICT DO NOTHING`` on the event id, so a re-dispatch adds nothing, even after the
event was counted) holding only what counting needs, and its tenant's ``roll_up``
message is sent after commit, one per tenant of the batch. The rollup marks the row
counted in the transaction that counts it: an event counts once. Counted rows are
purged after :data:`KEEP_COUNTED_DAYS`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.after_commit_queue import AfterCommitQueue
from shared.models import OutboxEvent

TARGET_NAME = "analytics"
#: How long a counted event's row stays as its processed key (dispatch retries end sooner).
KEEP_COUNTED_DAYS = 7

#: Conversation events re-read the conversation: the rollup diffs its row, whatever changed.
CONVERSATION_EVENTS = frozenset(
    {
        "conversation.created",
        "conversation.assigned",
        "conversation.unassigned",
        "conversation.status_changed",
        "conversation.transferred",
        "conversation.taken_over",
        "conversation.handed_off",
        "conversation.expired",
    }
)
COUNTED = CONVERSATION_EVENTS | {
    "message.created",
    "contact.created",
    "csat.survey_sent",
    "csat.submitted",
}

#: ``[tenant_id, ...]`` -> ``roll_up`` messages (one per tenant), after commit.
QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue("omnistream.analytics", "analytics rollups")
set_enqueuer = QUEUE.set_enqueuer
enqueue = QUEUE.enqueue

_QUEUE_EVENT = text(
    """
    INSERT INTO analytics_events (event_id, tenant_id, type, data, occurred_at)
    VALUES (:event_id, :tenant_id, :type, CAST(:data AS jsonb), :occurred_at)
    ON CONFLICT (event_id) DO NOTHING
    """
)


def _agent_of(data: dict[str, Any]) -> Any:
    """The agent a CSAT event is about: its own field, else the conversation's assignee."""
    for holder in (data, data.get("survey") or {}, data.get("conversation") or {}):
        for key in ("agent_id", "assignee_id"):
            if holder.get(key):
                return holder[key]
    return None


def essentials(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The few fields of an event's payload that counting it needs."""
    if event_type in CONVERSATION_EVENTS:
        return {"conversation_id": data.get("id")}
    if event_type == "message.created":
        return {k: data.get(k) for k in ("channel", "direction", "created_at")}
    if event_type == "contact.created":
        return {k: data.get(k) for k in ("channel", "created_at")}
    survey = data.get("survey") or {}
    rating = data.get("rating", survey.get("rating"))
    return {"agent_id": _agent_of(data), "rating": rating}


def target(session: Session, events: Sequence[OutboxEvent]) -> None:
    """The :func:`shared.dispatch.register_target` callable (``batch=True``).

    PERF: one pipelined statement and one ``roll_up`` per tenant for the whole batch.
    """
    rows = [
        {
            "event_id": event.id,
            "tenant_id": event.tenant_id,
            "type": event.type,
            "data": json.dumps(essentials(event.type, event.data), default=str),
            "occurred_at": event.occurred_at,
        }
        for event in events
        if event.type in COUNTED
    ]
    if not rows:
        return
    session.execute(_QUEUE_EVENT, rows)
    QUEUE.enqueue_after_commit(session, dict.fromkeys(row["tenant_id"] for row in rows))


_STALE_TENANTS = text(
    """
    SELECT DISTINCT tenant_id FROM analytics_events
     WHERE counted_at IS NULL AND queued_at < now() - make_interval(secs => :after)
     LIMIT :limit
    """
)


def sweep(session: Session, *, after_seconds: float = 10.0, limit: int = 1000) -> int:
    """Send ``roll_up`` again for tenants whose queued events wait too long (a lost message)."""
    tenants = list(session.scalars(_STALE_TENANTS, {"after": after_seconds, "limit": limit}))
    if tenants:
        QUEUE.enqueue_after_commit(session, tenants)
    return len(tenants)


_PURGE_COUNTED = text(
    """
    DELETE FROM analytics_events WHERE event_id IN (
        SELECT event_id FROM analytics_events
         WHERE counted_at < now() - make_interval(days => :days) LIMIT :limit)
    """
)


def purge_counted(session: Session, *, limit: int = 50_000) -> int:
    """Drop one batch of processed keys older than :data:`KEEP_COUNTED_DAYS`; how many."""
    return session.execute(_PURGE_COUNTED, {"days": KEEP_COUNTED_DAYS, "limit": limit}).rowcount

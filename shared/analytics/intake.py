"""The ``analytics`` dispatch target: queue the events the rollups count.

Runs inside ``dispatch_event``'s transaction (:mod:`shared.dispatch`; a batch target,
one statement for the batch): a counted event gets an ``analytics_events`` row (``ON
CONFLICT DO NOTHING`` on the event id, so a re-dispatch adds nothing, even after the
event was counted) holding only what counting needs, picked from its outbox row, and
its tenant's ``roll_up`` message is sent after commit, one per tenant of the batch. The
rollup marks the row counted in the transaction that counts it: an event counts once.
Counted rows are purged after :data:`KEEP_COUNTED_DAYS`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.after_commit_queue import AfterCommitQueue
from shared.db import write_rows
from shared.models import OutboxEvent

TARGET_NAME = "analytics"
#: How long a counted event's row stays as its processed key (dispatch retries end sooner).
KEEP_COUNTED_DAYS = 7
#: Processed keys dropped per purge transaction.
PURGE_BATCH = 50_000

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

_CONVERSATION_EVENTS = sorted(CONVERSATION_EVENTS)

#: ``[tenant_id, ...]`` -> ``roll_up`` messages (one per tenant), after commit.
QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue("omnistream.analytics", "analytics rollups")
set_enqueuer = QUEUE.set_enqueuer
enqueue = QUEUE.enqueue

#: The fields of a payload that counting needs, picked by PostgreSQL from the outbox row
#: itself: conversation events name the conversation (the rollup re-reads it), messages and
#: contacts their channel, direction and creation time, CSAT events their agent (its own
#: field, else the survey's, else the conversation's assignee) and rating.
_QUEUE_EVENTS = text(
    """
    INSERT INTO analytics_events (event_id, tenant_id, type, data, occurred_at)
    SELECT e.id, e.tenant_id, e.type,
           CASE
             WHEN e.type = ANY(CAST(:conversation_events AS varchar[]))
               THEN jsonb_build_object('conversation_id', e.data -> 'id')
             WHEN e.type = 'message.created'
               THEN jsonb_build_object('channel', e.data -> 'channel',
                                       'direction', e.data -> 'direction',
                                       'created_at', e.data -> 'created_at')
             WHEN e.type = 'contact.created'
               THEN jsonb_build_object('channel', e.data -> 'channel',
                                       'created_at', e.data -> 'created_at')
             ELSE jsonb_build_object(
               'agent_id',
               (SELECT h.v FROM (VALUES (1, e.data -> 'agent_id'),
                                        (2, e.data -> 'assignee_id'),
                                        (3, e.data -> 'survey' -> 'agent_id'),
                                        (4, e.data -> 'survey' -> 'assignee_id'),
                                        (5, e.data -> 'conversation' -> 'agent_id'),
                                        (6, e.data -> 'conversation' -> 'assignee_id')) AS h (n, v)
                 WHERE h.v IS NOT NULL
                   AND h.v NOT IN ('null', 'false', '0', '""', '[]', '{}')
                 ORDER BY h.n LIMIT 1),
               'rating',
               CASE WHEN e.data ? 'rating' THEN e.data -> 'rating'
                    ELSE e.data -> 'survey' -> 'rating' END)
           END,
           e.occurred_at
      FROM outbox_events e
     WHERE e.id = ANY(:ids)
    ON CONFLICT (event_id) DO NOTHING
    """
)


def target(session: Session, events: Sequence[OutboxEvent]) -> None:
    """The :func:`shared.dispatch.register_target` callable (``batch=True``).

    PERF: one statement for the batch, given only the ids: PostgreSQL picks the fields
    from the outbox rows the dispatch has just locked, so no payload is read, built or
    serialized here per event (that cost more than the insert).
    """
    counted = [event for event in events if event.type in COUNTED]
    if not counted:
        return
    write_rows(
        session.connection(),
        _QUEUE_EVENTS,
        {"ids": [event.id for event in counted], "conversation_events": _CONVERSATION_EVENTS},
    )
    QUEUE.enqueue_after_commit(session, dict.fromkeys(event.tenant_id for event in counted))


#: NOTE: active tenants only, as every sweeper: a suspended tenant's roll_up is dropped by
#: the tenant gate, so its events wait until reactivation; picked every run, such tenants
#: would fill the bounded batch and an active tenant's lost roll_up would never be re-sent.
_STALE_TENANTS = text(
    """
    SELECT DISTINCT e.tenant_id FROM analytics_events e
      JOIN tenants t ON t.id = e.tenant_id AND t.status = 'active'
     WHERE e.counted_at IS NULL AND e.queued_at < now() - make_interval(secs => :after)
     LIMIT :limit
    """
)


def sweep(session: Session, *, after_seconds: float = 10.0, limit: int = 1000) -> int:
    """Send ``roll_up`` again for tenants whose queued events wait too long (a lost message)."""
    tenants = list(session.scalars(_STALE_TENANTS, {"after": after_seconds, "limit": limit}))
    if tenants:
        QUEUE.enqueue_after_commit(session, tenants)
    return len(tenants)


#: NOTE: the key of an event whose dispatch gave up (``failed``) was written by the
#: reconcile's recount of its day (``shared.analytics.reconcile``), and such an event can
#: be revived from its dead letter at any time, long after that day left the recount's
#: window: its key stays while the event is failed (the outbox's retention ends that).
_PURGE_COUNTED = text(
    """
    DELETE FROM analytics_events WHERE event_id IN (
        SELECT a.event_id FROM analytics_events a
         WHERE a.counted_at < now() - make_interval(days => :days)
           AND NOT EXISTS (SELECT 1 FROM outbox_events o
                            WHERE o.id = a.event_id AND o.status = 'failed')
         LIMIT :limit)
    """
)


def purge_counted(session: Session, *, limit: int = PURGE_BATCH) -> int:
    """Drop one batch of processed keys older than :data:`KEEP_COUNTED_DAYS`, but never
    one of an event that may still be revived; how many."""
    return session.execute(_PURGE_COUNTED, {"days": KEEP_COUNTED_DAYS, "limit": limit}).rowcount

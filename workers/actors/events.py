"""dispatch_event: fan a committed outbox event out to its targets, once in effect."""

from __future__ import annotations

import logging
import uuid

import dramatiq

from shared import dispatch
from shared.db import session_scope
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name=queues.EVENTS, max_retries=3, min_backoff=100, max_backoff=1_000)
def mark_event_failed(message_data: dict, retry_info: dict) -> None:
    """Mark an event failed once ``dispatch_event`` exhausted its retries (sweepers stop)."""
    event_id = uuid.UUID(message_data["args"][0])
    with session_scope() as session:
        dispatch.mark_failed(session, event_id, "dispatch_event exhausted its retries")
    log.error("event %s failed for good after %s retries", event_id, retry_info.get("retries"))


@dramatiq.actor(
    queue_name=queues.EVENTS,
    max_retries=8,
    min_backoff=500,
    max_backoff=60_000,
    time_limit=60_000,
    on_retry_exhausted=mark_event_failed.actor_name,
)
def dispatch_event(event_id: str) -> None:
    """Process the outbox event ``event_id``; running it twice has the effect of once."""
    event_uuid = uuid.UUID(event_id)
    try:
        with session_scope() as session:
            outcome = dispatch.dispatch(session, event_uuid)
    except Exception as exc:
        with session_scope() as session:
            dispatch.record_attempt_error(session, event_uuid, f"{type(exc).__name__}: {exc}")
        raise
    log.debug("event %s: %s", event_id, outcome)

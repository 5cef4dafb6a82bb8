"""dispatch_event(s): fan committed outbox events out to their targets, once in effect."""

from __future__ import annotations

import logging
import uuid

import dramatiq
from dramatiq.middleware import CurrentMessage

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


#: Retries and limits of both dispatch actors.
_DISPATCH_OPTIONS = {
    "queue_name": queues.EVENTS,
    "max_retries": 8,
    "min_backoff": 500,
    "max_backoff": 60_000,
    "time_limit": 60_000,
}


@dramatiq.actor(**_DISPATCH_OPTIONS, on_retry_exhausted=mark_event_failed.actor_name)
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


@dramatiq.actor(**_DISPATCH_OPTIONS)
def dispatch_events(event_ids: list[str]) -> None:
    """Process the events one transaction committed, in one transaction of ours.

    PERF: a transaction that emits many events (a bulk import, a campaign) costs one
    message, one fetch, one ack and one commit here instead of one of each per event.

    If any event fails, the batch is rolled back and split: each event gets a
    ``dispatch_event`` of its own, with its own retries and dead-letter, so one bad
    event never holds the others back. Only if that hand-over itself fails does
    this message retry; the events stay pending, so the sweeper re-drives them even
    if it never succeeds.
    """
    ids = [uuid.UUID(event_id) for event_id in event_ids]
    try:
        with session_scope() as session:
            outcomes = dispatch.dispatch_many(session, ids)
    except Exception:
        log.warning(
            "dispatching %d events together failed; retrying each on its own",
            len(ids),
            exc_info=True,
        )
        options = {"tenant_id": tenant_id} if (tenant_id := _tenant_option()) else {}
        for event_id in event_ids:
            dispatch_event.send_with_options(args=(event_id,), **options)
        return
    log.debug("events %s: %s", event_ids, outcomes)


def _tenant_option() -> str | None:
    """The ``tenant_id`` option of the message being processed, passed on to its splits."""
    message = CurrentMessage.get_current_message()
    return message.options.get("tenant_id") if message is not None else None

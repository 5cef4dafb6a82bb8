"""dispatch_event(s): fan committed outbox events out to their targets, once in effect."""

from __future__ import annotations

import logging
import uuid

import dramatiq
from dramatiq.middleware import CurrentMessage

from shared import dispatch
from shared.db import session_scope
from workers import queues, tenant_gate
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)
from workers.publisher import JOINING, MAX_EVENTS_PER_MESSAGE

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name=queues.EVENTS, max_retries=3, min_backoff=100, max_backoff=1_000)
def mark_event_failed(message_data: dict, retry_info: dict) -> None:
    """Mark an event failed once ``dispatch_event`` exhausted its retries (sweepers stop)."""
    event_id = uuid.UUID(message_data["args"][0])
    with session_scope() as session:
        dispatch.mark_failed(session, event_id, "dispatch_event exhausted its retries")
    log.error("event %s failed for good after %s retries", event_id, retry_info.get("retries"))


#: The option of a message that dispatches only its own events (a split of a batch).
_ALONE = "dispatch_alone"

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
    """Process the outbox event ``event_id``; running it twice has the effect of once.

    With the tenant's events that joined this message (:mod:`workers.publisher`), it
    dispatches them all as ``dispatch_events`` does.
    """
    joined = _take_joined([event_id])
    if joined:
        _dispatch_together([event_id, *joined])
        return
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
    if it never succeeds. The tenant's events that joined this message are dispatched
    with its own (:mod:`workers.publisher`).
    """
    _dispatch_together([*event_ids, *_take_joined(event_ids)])


def _dispatch_together(event_ids: list[str]) -> None:
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
            # NOTE: alone: a split takes no joined events, or a bad event would keep
            # splitting with them, its retries never counted.
            dispatch_event.send_with_options(args=(event_id,), **options, **{_ALONE: True})
        return
    log.debug("events %s: %s", event_ids, outcomes)


def _take_joined(own: list[str]) -> list[str]:
    """The tenant's events that joined this message while it waited, up to a full
    message with its own (the rest is sent on in full messages); the flag is freed.

    None for a split or a retry: those dispatch only their own.
    """
    message = CurrentMessage.get_current_message()
    if message is None or message.options.get(_ALONE) or message.options.get("retries"):
        return []
    tenant_id = message.options.get("tenant_id")
    if tenant_id is None:
        return []
    taken = JOINING.take(tenant_id, own, release=True)
    room = max(MAX_EVENTS_PER_MESSAGE - len(own), 0)
    rest = taken[room:]
    for first in range(0, len(rest), MAX_EVENTS_PER_MESSAGE):
        chunk = rest[first : first + MAX_EVENTS_PER_MESSAGE]
        dispatch_events.send_with_options(args=(chunk,), tenant_id=tenant_id)
    return taken[:room]


def _hand_back_joined(message: dramatiq.Message) -> None:
    """A dropped message (suspended tenant) leaves its joined events a message each, so
    each is dropped and recorded in turn, as it would have been without joining."""
    if message.options.get(_ALONE) or message.options.get("retries"):
        return
    tenant_id = message.options.get("tenant_id")
    own = message.args[0] if isinstance(message.args[0], list) else [message.args[0]]
    for event_id in JOINING.take(tenant_id, own, release=True) if tenant_id else ():
        dispatch_event.send_with_options(args=(event_id,), tenant_id=tenant_id, **{_ALONE: True})


def _tenant_option() -> str | None:
    """The ``tenant_id`` option of the message being processed, passed on to its splits."""
    message = CurrentMessage.get_current_message()
    return message.options.get("tenant_id") if message is not None else None


for _actor in (dispatch_event, dispatch_events):
    tenant_gate.on_drop(_actor.actor_name, _hand_back_joined)

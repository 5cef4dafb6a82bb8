"""Process one outbox event exactly once in effect, fanning it out to registered targets.

Later domains (outgoing webhooks, automation, channels, AI, analytics) register a
*target*: a function ``(session, event) -> None`` that writes its own rows (a
delivery, an automation event...) in the same transaction that marks the event
processed. Either all targets' rows and the ``processed`` mark commit together,
or none do and the job retries, so a target never sees an event twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from enum import StrEnum

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from shared.models import OutboxEvent

log = logging.getLogger(__name__)

Target = Callable[[Session, OutboxEvent], None]
_targets: dict[str, Target] = {}


class Outcome(StrEnum):
    PROCESSED = "processed"
    ALREADY_DONE = "already_done"
    IN_PROGRESS = "in_progress"
    UNKNOWN = "unknown"


def register_target(name: str, target: Target) -> None:
    """Add a fan-out target (idempotent by name, so re-imports do not double it)."""
    _targets[name] = target


def unregister_target(name: str) -> None:
    """Remove a fan-out target (tests; a no-op for unknown names)."""
    _targets.pop(name, None)


def registered_targets() -> tuple[str, ...]:
    return tuple(_targets)


_MARK_PROCESSED = text(
    """
    UPDATE outbox_events
       SET status = 'processed', processed_at = clock_timestamp(),
           dispatched_at = coalesce(dispatched_at, :started_at),
           dispatch_attempts = dispatch_attempts + 1
     WHERE id = :id
    """
)


def dispatch(session: Session, event_id: uuid.UUID) -> Outcome:
    """Fan the event out to every target and mark it processed, in the caller's transaction.

    NOTE: ``FOR UPDATE SKIP LOCKED`` makes a duplicate delivery of the same job a
    no-op while the first is running; if the first then fails, the event stays
    pending and the retry (or the sweeper) handles it.
    """
    # NOTE: the start time is read with the lock, not assigned as an SQL expression:
    # that would be evaluated by the UPDATE at commit, after the targets ran.
    row = session.execute(
        select(OutboxEvent, func.clock_timestamp())
        .where(OutboxEvent.id == event_id)
        .with_for_update(skip_locked=True, of=OutboxEvent)
    ).one_or_none()
    event, started_at = row if row is not None else (None, None)
    if event is None:
        exists = session.scalar(select(func.count()).where(OutboxEvent.id == event_id))
        return Outcome.IN_PROGRESS if exists else Outcome.UNKNOWN
    if event.status != "pending":
        return Outcome.ALREADY_DONE
    for name, target in _targets.items():
        log.debug("event %s -> target %s", event.id, name)
        target(session, event)
    # PERF: one written-out UPDATE after the targets ran, instead of the unit of work
    # flushing the event (twice when a target's statement autoflushed it first): on
    # the dispatch hot path that flush cost more than a webhook fan-out. A target
    # that raises rolls all of it back either way.
    session.execute(_MARK_PROCESSED, {"id": event.id, "started_at": started_at})
    return Outcome.PROCESSED


def mark_failed(session: Session, event_id: uuid.UUID, error: str) -> None:
    """Record that dispatching gave up on an event, so sweepers stop re-driving it."""
    session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id == event_id, OutboxEvent.status == "pending")
        .values(status="failed", last_error=error[:4000], processed_at=func.clock_timestamp())
    )


def record_attempt_error(session: Session, event_id: uuid.UUID, error: str) -> None:
    """Keep the latest dispatch error visible on the event while it is being retried."""
    session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id == event_id, OutboxEvent.status == "pending")
        .values(
            last_error=error[:4000],
            dispatch_attempts=OutboxEvent.dispatch_attempts + 1,
        )
    )

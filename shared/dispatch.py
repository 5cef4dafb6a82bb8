"""Process one outbox event exactly once in effect, fanning it out to registered targets.

Later domains (outgoing webhooks, automation, channels, AI, analytics) register a
*target*: a function ``(session, event) -> None`` that writes its own rows (a
delivery, an automation event...) in the same transaction that marks the event
processed. Either all targets' rows and the ``processed`` mark commit together,
or none do and the job retries, so a target never sees an event twice.

A target registered with ``batch=True`` is called once per transaction with all its
pending events (in the order they occurred) instead of once per event, so it can write them in one
statement or look up what they need in one query.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from shared import dead_letters, events
from shared.config import get_settings
from shared.db import fetch_rows, write_rows
from shared.models import OutboxEvent

log = logging.getLogger(__name__)

Target = Callable[[Session, "Event"], None]
#: A target's batch form: the events of one dispatch transaction, in the order they occurred.
BatchTarget = Callable[[Session, Sequence["Event"]], None]
_targets: dict[str, BatchTarget] = {}


class Outcome(StrEnum):
    PROCESSED = "processed"
    ALREADY_DONE = "already_done"
    IN_PROGRESS = "in_progress"
    UNKNOWN = "unknown"


def register_target(name: str, target: Target | BatchTarget, *, batch: bool = False) -> None:
    """Add a fan-out target (idempotent by name, so re-imports do not double it).

    ``batch``: ``target(session, events)`` takes all the pending events of a dispatch
    transaction at once, in the order they occurred (PERF: one statement or lookup for a
    batch, such as a campaign's hundreds of ``message.created``), and must do for each
    what a per-event target would.
    """
    _targets[name] = target if batch else functools.partial(_each, target)  # type: ignore[assignment]


def _each(target: Target, session: Session, events: Sequence[Event]) -> None:
    for event in events:
        target(session, event)


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
     WHERE id = ANY(:ids)
    """
)


class Event(NamedTuple):
    """A locked outbox event as the targets see it: its row's columns, read-only.

    PERF: a plain tuple from the driver's cursor, not an ``OutboxEvent`` instance: loading
    the ORM objects and reading their instrumented attributes in every target cost more
    than the targets' own work for most events. It reads like the instance (``event.type``,
    ``event.data``...), so a target also takes ``OutboxEvent`` rows (tests do).

    ``conversation`` is no column: the ``(assignee_id, division_id)``, as text, of the
    conversation that the ``data.conversation_id`` of an event not of a ``conversation.*``
    type names, read by the statement that locks the events (``(None, None)``: it names
    none, or none of its tenant's; None: not read, as on an ``OutboxEvent``).
    PERF: the realtime feed needs them for every message event's audience; its own query
    per dispatched batch cost it about a third of its CPU.
    """

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str
    actor_type: str
    actor_id: uuid.UUID | None
    data: dict[str, Any]
    causation_id: uuid.UUID | None
    causation: dict[str, Any] | None
    impersonated_by: dict[str, Any] | None
    occurred_at: dt.datetime
    status: str
    conversation: tuple[str | None, str | None] | None = None


#: A ``conversation_id`` that PostgreSQL's uuid input takes (any other names no conversation:
#: a malformed one must not fail the lock, and so every target's work on the batch).
_UUID_TEXT = "^[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}$"

_LOCK_EVENTS = text(
    f"SELECT {', '.join(f'e.{name}' for name in Event._fields[:-1])},"  # noqa: S608
    " c.assignee_id::text, c.division_id::text, clock_timestamp()"
    " FROM outbox_events e"
    # NOTE: a probe of the primary key per event, whatever the statistics say: a lateral
    # subquery with a LIMIT is never hashed into a join, and with the tenant matched
    # outside it no index on the tenant's conversations can be picked to scan them all.
    " LEFT JOIN LATERAL (SELECT c.tenant_id, c.assignee_id, c.division_id"
    "   FROM conversations c"
    "  WHERE e.type NOT LIKE 'conversation.%'"
    "    AND c.id = CASE WHEN e.data ->> 'conversation_id' ~ :uuid_text"
    "                    THEN CAST(e.data ->> 'conversation_id' AS uuid) END"
    "  LIMIT 1) c ON c.tenant_id = e.tenant_id"
    " WHERE e.id = ANY(:ids) ORDER BY e.id FOR UPDATE OF e SKIP LOCKED"
)


def dispatch(session: Session, event_id: uuid.UUID) -> Outcome:
    """Fan the event out to every target and mark it processed, in the caller's transaction."""
    return dispatch_many(session, [event_id])[event_id]


def dispatch_many(session: Session, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Outcome]:
    """Fan each pending event out to every target and mark them processed, in one transaction.

    Events are locked in id order (no deadlock between batches); each target sees them
    in the order they occurred (all of them, then the next target), and the
    ``processed`` marks are one statement. A target
    that raises rolls back the whole transaction (the caller decides what to retry);
    nothing is half done.

    NOTE: ``FOR UPDATE SKIP LOCKED`` makes a duplicate delivery of the same job a
    no-op while the first is running; if the first then fails, the event stays
    pending and the retry (or the sweeper) handles it.
    """
    ids = sorted(set(event_ids))
    # NOTE: the start time is read with the lock, not assigned as an SQL expression:
    # that would be evaluated by the UPDATE at commit, after the targets ran.
    rows = fetch_rows(session.connection(), _LOCK_EVENTS, {"ids": ids, "uuid_text": _UUID_TEXT})
    outcomes: dict[uuid.UUID, Outcome] = {}
    pending: list[Event] = []
    for *columns, assignee, division, _ in rows:
        event = Event(*columns, (assignee, division))
        if event.status == "pending":
            pending.append(event)
        else:
            outcomes[event.id] = Outcome.ALREADY_DONE
    locked_here = {row[0] for row in rows}
    missing = [i for i in ids if i not in locked_here]
    if missing:
        elsewhere = set(
            session.scalars(select(OutboxEvent.id).where(OutboxEvent.id.in_(missing))).all()
        )
        for i in missing:
            outcomes[i] = Outcome.IN_PROGRESS if i in elsewhere else Outcome.UNKNOWN
    if not pending:
        return outcomes
    # NOTE: ids are random: events committed one per transaction and dispatched together
    # (a joined batch) reached the targets in any order, so automation could evaluate a
    # conversation's second message before its first. One transaction's events share
    # occurred_at; their order among themselves was never recorded.
    pending.sort(key=lambda event: (event.occurred_at, event.id))
    for name, target in _targets.items():
        log.debug("%d event(s) -> target %s", len(pending), name)
        target(session, pending)
    # PERF: one written-out UPDATE after the targets ran, instead of the unit of work
    # flushing the events (twice when a target's statement autoflushed one first): on
    # the dispatch hot path that flush cost more than a webhook fan-out.
    write_rows(
        session.connection(),
        _MARK_PROCESSED,
        {"ids": [e.id for e in pending], "started_at": rows[0][-1]},
    )
    for event in pending:
        outcomes[event.id] = Outcome.PROCESSED
    return outcomes


def mark_failed(session: Session, event_id: uuid.UUID, error: str) -> None:
    """Record that dispatching gave up on an event, so sweepers stop re-driving it."""
    session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id == event_id, OutboxEvent.status == "pending")
        .values(status="failed", last_error=error[:4000], processed_at=func.clock_timestamp())
    )


def revive(
    session: Session, tenant_id: uuid.UUID | None, args: Sequence[Any], **_options: Any
) -> None:
    """Make a ``dispatch_event`` dead letter's event pending again, or 409 saying why not.

    WHY: :func:`mark_failed` made it final when the job ran out of retries, so the
    requeued job found it done and fanned nothing out (no webhook, no rule, no send).
    Safe: a failed dispatch committed none of its targets' rows. Under the event's lock,
    in the requeue's transaction; dispatched again after commit, since the requeued job
    may run before it and skip the locked event.
    """
    event = dead_letters.locked_row(
        session,
        OutboxEvent,
        tenant_id,
        dead_letters.row_id(args),
        gone=("event_gone", "The event was deleted: there is nothing to dispatch"),
    )
    if event.status == "processed":
        raise dead_letters.NotRequeueable(
            "event_processed", "The event was dispatched already: nothing is left to do"
        )
    if event.status != "failed":
        return
    sweep_after = dt.timedelta(seconds=get_settings().outbox_sweep_after_seconds)
    event.status, event.processed_at, event.dispatch_attempts = "pending", None, 0
    event.next_sweep_at = func.now() + sweep_after
    session.flush()
    events.publish_after_commit(session, event.id, event.tenant_id)


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

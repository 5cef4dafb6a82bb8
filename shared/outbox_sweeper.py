"""Re-drive outbox events whose after-commit publish never happened.

The fast path (:func:`shared.events.publish` after commit) enqueues nearly every
event within milliseconds. An event still ``pending`` at its ``next_sweep_at``
lost that path: its process died between commit and publish, or the broker was
down. :func:`sweep` claims a batch of them with ``FOR UPDATE SKIP LOCKED`` (two
sweepers never claim the same row), pushes each one's ``next_sweep_at`` out with
exponential backoff, commits, and only then publishes. ``dispatch_event`` is
idempotent, so an event enqueued twice (sweeper + a late fast path) takes effect once.

Example::

    with session_scope() as session:
        sweep(session, publish=events.publish)
"""

from __future__ import annotations

import logging

from sqlalchemy import exists, func, literal_column, select, update
from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.events import PendingEvent, Publisher
from shared.models import OutboxEvent, Tenant

log = logging.getLogger(__name__)

#: Longest wait between two re-drives of one event, so a backlog (broker down for
#: an hour) is retried every few minutes rather than every sweep.
MAX_BACKOFF_SECONDS = 300.0
#: Cap on the exponent of ``2 ** sweep_count``: past it the wait is capped anyway,
#: and ``power()`` must not overflow for an event swept thousands of times.
_MAX_EXPONENT = 16

_ONE_SECOND = literal_column("interval '1 second'")


def sweep(session: Session, *, batch: int | None = None, publish: Publisher) -> int:
    """Claim due pending events, defer their next sweep, commit, publish; return how many.

    ``batch`` defaults to ``OUTBOX_SWEEP_BATCH``. The session's transaction is
    committed before ``publish`` is called, so a crash after the commit costs one
    backoff period, never an event.
    """
    settings = get_settings()
    # PERF: served by the partial index ix_outbox_events_pending_sweep; ORDER BY
    # next_sweep_at drains the oldest first when the backlog exceeds one batch.
    # NOTE: MATERIALIZED so Postgres runs the locking SELECT exactly once; an
    # inlined subquery could be rescanned and, with SKIP LOCKED, see other rows.
    due = (
        select(OutboxEvent.id)
        .where(
            OutboxEvent.status == "pending",
            OutboxEvent.next_sweep_at <= func.now(),
            # A suspended tenant's events wait, pending, until it is reactivated.
            ~exists().where(Tenant.id == OutboxEvent.tenant_id, Tenant.status != "active"),
        )
        .order_by(OutboxEvent.next_sweep_at)
        .limit(batch or settings.outbox_sweep_batch)
        .with_for_update(skip_locked=True)
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    # "after * 2 ** sweep_count seconds, at most MAX_BACKOFF_SECONDS", by the database clock.
    backoff = func.least(
        settings.outbox_sweep_after_seconds
        * func.power(2, func.least(OutboxEvent.sweep_count, _MAX_EXPONENT)),
        MAX_BACKOFF_SECONDS,
    )
    claimed = session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id == due.c.id)
        .values(
            next_sweep_at=func.now() + backoff * _ONE_SECOND,
            sweep_count=OutboxEvent.sweep_count + 1,
        )
        .returning(OutboxEvent.id, OutboxEvent.tenant_id)
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    if not claimed:
        return 0
    # NOTE: INFO, not DEBUG: every event here means the fast path failed somewhere.
    log.info("outbox sweeper re-driving %d pending event(s)", len(claimed))
    publish([PendingEvent(row.id, row.tenant_id) for row in claimed])
    return len(claimed)

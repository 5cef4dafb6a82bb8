"""Deliver a batch of deliveries: one claim, concurrent sends, one record, for all of them.

What the ``deliver_webhooks`` job runs (:func:`deliver_batch`). The steps and
guarantees are those of one attempt (:mod:`shared.webhooks.delivery`), made
per batch rather than per delivery:

1. claim: one ``UPDATE ... WHERE id = ANY(:ids)`` over the due pending rows,
   locked ``FOR UPDATE SKIP LOCKED`` (a row another worker holds is its own, and
   a duplicate message claims nothing). Autocommit, one round trip.
2. leases: one Redis script call takes a lease per claimed delivery
   (:mod:`.limiter`); a delivery whose endpoint is at its limit is parked.
3. send: every attempt at once, on this process's event loop (:mod:`.sender`),
   outside any transaction.
4. record: the 2xx attempts in one statement (attempt rows, deliveries
   succeeded, endpoint health); every other outcome through the per-delivery
   path (:func:`shared.webhooks.delivery.record`), which is rare and does more.

PERF: the hot path runs pre-written SQL on a raw autocommit connection, and no
ORM objects: building SQLAlchemy constructs and loading objects per delivery cost
more CPU than the delivery's HTTP exchange.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from shared.db import get_engine, session_scope
from shared.webhooks import delivery, queue, sender
from shared.webhooks.delivery import LOCK_MARGIN_SECONDS, Claimed, Outcome, Result
from shared.webhooks.limiter import Limiter

log = logging.getLogger(__name__)

#: Deliveries per ``deliver_webhooks`` message at most (bounds one job's work).
MAX_BATCH = 50

#: Both statements start with ``cfg``: PERF: asynchronous commit for the statement's
#: own transaction. A server crash may lose the last few hundred milliseconds of
#: claims and outcomes: a lost claim never happened, a lost outcome re-sends
#: (at-least-once; receivers dedupe by webhook-id). Joining ``cfg`` makes Postgres
#: evaluate it. ``ORDER BY id`` takes the row locks in one order in every worker.
_CLAIM_MANY = text(
    """
    WITH cfg AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS v),
    due AS MATERIALIZED (
        SELECT id FROM webhook_deliveries
         WHERE id = ANY(:ids) AND status = 'pending' AND next_attempt_at <= now()
         ORDER BY id
         FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_deliveries d
       SET status = 'in_flight',
           attempt_count = d.attempt_count + 1,
           locked_until = now() + make_interval(
               secs => least(e.timeout_seconds, :default_timeout) + :margin),
           last_attempt_at = now()
      FROM due, webhook_endpoints e, cfg
     WHERE d.id = due.id AND e.id = d.endpoint_id
    RETURNING d.id, d.tenant_id, d.endpoint_id, d.event_id, d.event_type, d.payload,
              d.attempt_count, e.url, e.enabled, e.secret_encrypted,
              e.previous_secret_encrypted, e.previous_secret_expires_at,
              least(e.timeout_seconds, :default_timeout) AS timeout, e.max_concurrency
    """
)


def claim_many(
    connection: Connection, ids: Sequence[uuid.UUID], default_timeout: float
) -> list[Claimed]:
    """Take the due pending deliveries among ``ids``; the others are not ours to send."""
    rows = connection.execute(
        _CLAIM_MANY,
        {"ids": list(ids), "default_timeout": default_timeout, "margin": LOCK_MARGIN_SECONDS},
    ).all()
    return [
        Claimed(
            id=row.id,
            tenant_id=row.tenant_id,
            endpoint_id=row.endpoint_id,
            event_id=row.event_id,
            event_type=row.event_type,
            payload=row.payload,
            attempt=row.attempt_count,
            url=row.url,
            enabled=row.enabled,
            secrets=delivery.secrets_of(row),
            timeout=float(row.timeout),
            max_concurrency=row.max_concurrency,
        )
        for row in rows
    ]


def _record_other(claimed: Claimed, result: Result, parked_waiting: bool) -> Outcome:
    """A failure, or a success whose endpoint has parked deliveries to pull: one transaction."""
    try:
        with session_scope() as session:
            outcome = delivery.record(session, claimed, result)
            if parked_waiting:
                outcome.pulled = delivery.pull_parked(session, claimed.endpoint_id)
                queue.enqueue_after_commit(session, outcome.pulled)
    except IntegrityError:
        return Outcome("gone", attempt=result)
    return outcome


def deliver_batch(
    ids: Sequence[uuid.UUID],
    *,
    limiter: Limiter | None,
    default_timeout: float,
    park_seconds: float = 5.0,
) -> dict[uuid.UUID, Outcome]:
    """Run one attempt of each due delivery among ``ids``; see the module docstring.

    Returns each id's outcome (``noop`` for one that was not claimed).
    """
    outcomes = {i: Outcome("noop") for i in ids}
    with get_engine().connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        claims = claim_many(connection, ids, default_timeout)
        if not claims:
            return outcomes
        live = [c for c in claims if c.enabled]
        if len(live) < len(claims):
            with session_scope() as session:
                for c in claims:
                    if not c.enabled:
                        outcomes[c.id] = delivery.end_disabled(session, c)
        leases = (
            limiter.acquire_many(
                [(c.endpoint_id, c.max_concurrency, c.timeout + LOCK_MARGIN_SECONDS) for c in live]
            )
            if limiter is not None
            else [None] * len(live)
        )
        sending = [c for c, lease in zip(live, leases, strict=True) if lease or limiter is None]
        if len(sending) < len(live):
            with session_scope() as session:
                for c, lease in zip(live, leases, strict=True):
                    if lease is None:
                        delivery.unclaim(session, c, park_seconds=park_seconds)
                        outcomes[c.id] = Outcome("parked", delay=park_seconds)
        held = [(c.endpoint_id, lease) for c, lease in zip(live, leases, strict=True) if lease]
        try:
            results = sender.send_all(sending)
        finally:
            waiting = limiter.release_many(held) if limiter is not None else []
        waiting = waiting or [False] * len(sending)
        parked_waiting = dict(zip((c.id for c in sending), waiting, strict=True))
        fast, slow = [], []
        for c, r in zip(sending, results, strict=True):
            (fast if r.ok and not parked_waiting[c.id] else slow).append((c, r))
        outcomes.update(delivery.record_successes(connection, fast))
    for c, r in slow:
        outcomes[c.id] = _record_other(c, r, parked_waiting[c.id])
    return outcomes


def chunks(ids: Sequence[uuid.UUID], size: int = MAX_BATCH) -> list[list[uuid.UUID]]:
    """``ids`` cut into batches of at most ``size``, in order."""
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]

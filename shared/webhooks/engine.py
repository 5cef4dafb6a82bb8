"""Deliver a batch of deliveries: one claim, concurrent sends, one record, for all of them.

:func:`begin` and :func:`finish` are the stages; the ``deliver_webhooks`` job runs
them around one concurrent send (:func:`deliver_batch`), the in-process pipeline
(:mod:`.pipeline`) runs them as separate stages. The steps and guarantees are
those of one attempt (:mod:`shared.webhooks.delivery`), made per batch rather
than per delivery:

1. claim: one ``UPDATE ... WHERE id = ANY(:ids)`` over the due pending rows,
   locked ``FOR UPDATE SKIP LOCKED`` (a row another worker holds is its own, and
   a duplicate message claims nothing). Autocommit, one round trip.
2. leases: one Redis script call takes a lease per claimed delivery
   (:mod:`.limiter`); a delivery whose endpoint is at its limit is parked.
3. send: every attempt at once, on this process's event loop (:mod:`.sender`),
   outside any transaction.
4. release: the leases go back as soon as the answers are in (:func:`release`):
   the limit bounds requests at the receiver, not our bookkeeping.
5. record: the 2xx attempts in one statement (attempt rows, deliveries
   succeeded, endpoint health); every other outcome through the per-delivery
   path (:func:`shared.webhooks.delivery.record`), which is rare and does more.

PERF: the hot path runs pre-written SQL on a raw autocommit connection, and no
ORM objects: building SQLAlchemy constructs and loading objects per delivery cost
more CPU than the delivery's HTTP exchange.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from shared.admin import dropped_work
from shared.db import get_engine, session_scope
from shared.webhooks import delivery, queue, sender
from shared.webhooks.delivery import LOCK_MARGIN_SECONDS, Claimed, Outcome, Result
from shared.webhooks.limiter import Limiter

log = logging.getLogger(__name__)

#: Deliveries per ``deliver_webhooks`` message or pipeline claim at most.
MAX_BATCH = 50

#: The claim starts with ``cfg``: PERF: asynchronous commit for the statement's
#: own transaction (as for the record, :mod:`.delivery`). A server crash may lose the
#: last few hundred milliseconds of claims: a lost claim never happened. Joining
#: ``cfg`` makes Postgres evaluate it. ``ORDER BY id``: every worker locks in one order.
_CLAIM_MANY = text(
    """
    WITH cfg AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS v),
    due AS MATERIALIZED (
        SELECT id FROM webhook_deliveries
         WHERE id = ANY(:ids) AND status = 'pending' AND next_attempt_at <= now()
           AND NOT EXISTS (SELECT 1 FROM tenants t
                            WHERE t.id = webhook_deliveries.tenant_id AND t.status <> 'active')
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


_DUE = text(
    """
    SELECT d.id, d.endpoint_id, e.max_concurrency,
           least(e.timeout_seconds, :default_timeout) + :margin AS lease_seconds
      FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
     WHERE d.id = ANY(:ids) AND d.status = 'pending' AND d.next_attempt_at <= now()
       AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = d.tenant_id AND t.status <> 'active')
     ORDER BY d.next_attempt_at, d.id
    """
)

#: The pending deliveries among ``ids`` that a suspended tenant's suspension held back.
_SUSPENDED = text(
    """
    SELECT d.id, d.tenant_id
      FROM webhook_deliveries d JOIN tenants t ON t.id = d.tenant_id
     WHERE d.id = ANY(:ids) AND d.status = 'pending' AND t.status <> 'active'
    """
)

#: The message a requeue of a held delivery sends (one delivery; same engine), and its
#: queue (``workers.queues.WEBHOOKS``: shared code does not import the workers).
HELD_ACTOR, HELD_QUEUE = "deliver_webhook", "webhooks"


@dataclass(frozen=True, slots=True)
class Due:
    """A due pending delivery, with what taking a lease for it needs."""

    id: uuid.UUID
    endpoint_id: uuid.UUID
    limit: int
    lease_seconds: float


def due(ids: Sequence[uuid.UUID], default_timeout: float) -> list[Due]:
    """The due pending deliveries among ``ids``, oldest first.

    Read without locking: what a caller learns here only decides what it tries to claim.
    """
    params = {"ids": list(ids), "default_timeout": default_timeout, "margin": LOCK_MARGIN_SECONDS}
    with get_engine().connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        return [
            Due(row.id, row.endpoint_id, row.max_concurrency, float(row.lease_seconds))
            for row in connection.execute(_DUE, params)
        ]


def hold_suspended(ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Record, once each, the deliveries among ``ids`` not sent because their tenant is suspended.

    Called with the ids a batch did not claim (usually none: the query is skipped). A
    batch mixes tenants, so only the suspended tenant's rows are held: they stay
    pending (the sweeper re-drives them once the tenant is reactivated) and each gets a
    dead letter with the reason, which operators see and may requeue. Returns the held ids.
    """
    if not ids:
        return []
    with session_scope() as session:
        held = session.execute(_SUSPENDED, {"ids": list(ids)}).all()
        for delivery_id, tenant_id in held:
            dropped_work.record(
                session,
                tenant_id=tenant_id,
                queue_name=HELD_QUEUE,
                actor_name=HELD_ACTOR,
                args=[str(delivery_id)],
            )
    if held:
        log.warning("webhooks: %d deliveries held, their tenant is suspended", len(held))
    return [delivery_id for delivery_id, _ in held]


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


@dataclass(slots=True)
class Attempt:
    """A claimed delivery to send, with its endpoint lease (None when there is no limiter)."""

    claimed: Claimed
    lease: str | None


@dataclass(slots=True)
class Started:
    """What :func:`begin` claimed: the attempts to send, and the outcome of every id so far."""

    attempts: list[Attempt]
    outcomes: dict[uuid.UUID, Outcome]


def _claim_live(
    ids: Sequence[uuid.UUID], default_timeout: float
) -> tuple[list[Claimed], dict[uuid.UUID, Outcome]]:
    """Claim the due deliveries among ``ids``: those to send, and every id's outcome so far
    (``noop``, ``suspended`` or ``disabled`` for those not to send)."""
    outcomes = {i: Outcome("noop") for i in ids}
    with get_engine().connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        claims = claim_many(connection, ids, default_timeout)
    claimed = {c.id for c in claims}
    for held in hold_suspended([i for i in ids if i not in claimed]):
        outcomes[held] = Outcome("suspended")
    live = [c for c in claims if c.enabled]
    if len(live) < len(claims):
        with session_scope() as session:
            for c in claims:
                if not c.enabled:
                    outcomes[c.id] = delivery.end_disabled(session, c)
    return live, outcomes


def begin(
    ids: Sequence[uuid.UUID],
    *,
    limiter: Limiter | None,
    default_timeout: float,
    park_seconds: float = 5.0,
) -> Started:
    """Claim the due deliveries among ``ids`` and take their leases; park those over the limit.

    Every id's outcome is ``noop`` (not claimed), ``disabled`` or ``parked``
    unless it is in ``attempts``: the caller sends those, then calls :func:`finish`.
    """
    live, outcomes = _claim_live(ids, default_timeout)
    if limiter is None:
        return Started([Attempt(c, None) for c in live], outcomes)
    leases = limiter.acquire_many(
        [(c.endpoint_id, c.max_concurrency, c.timeout + LOCK_MARGIN_SECONDS) for c in live]
    )
    if None in leases:
        parked: Counter[uuid.UUID] = Counter()
        limits: dict[uuid.UUID, int] = {}
        with session_scope() as session:
            for c, lease in zip(live, leases, strict=True):
                if lease is None:
                    delivery.unclaim(session, c, park_seconds=park_seconds)
                    outcomes[c.id] = Outcome("parked", delay=park_seconds)
                    parked[c.endpoint_id] += 1
                    limits[c.endpoint_id] = c.max_concurrency
        # NOTE: counted once the rows are pending again (committed above), so the
        # release that reads the count finds them to pull (see :mod:`.limiter`).
        pull_parked(limiter.park(parked, limits))
    attempts = [Attempt(c, lease) for c, lease in zip(live, leases, strict=True) if lease]
    return Started(attempts, outcomes)


def begin_leased(
    leased: Sequence[tuple[Due, str | None]], *, limiter: Limiter | None, default_timeout: float
) -> Started:
    """Claim deliveries whose leases the caller already holds (the pipeline: lease first).

    A lease whose delivery is not claimed (sent elsewhere meanwhile, its endpoint
    disabled, its tenant suspended) is given back at once.
    """
    lease_of = {d.id: lease for d, lease in leased}
    ids = list(lease_of)
    live, outcomes = _claim_live(ids, default_timeout)
    attempts = [Attempt(c, lease_of[c.id]) for c in live]
    sending = {a.claimed.id for a in attempts}
    unused = [(d.endpoint_id, lease) for d, lease in leased if lease and d.id not in sending]
    if unused and limiter is not None:
        parked: Counter[uuid.UUID] = Counter()
        for (endpoint_id, _lease), waiting in zip(
            unused, limiter.release_many(unused), strict=True
        ):
            parked[endpoint_id] += waiting
        pull_parked({e: n for e, n in parked.items() if n})
    return Started(attempts, outcomes)


def pull_parked(counts: dict[uuid.UUID, int]) -> None:
    """Send again parked deliveries whose endpoint had room by the time they were counted."""
    if not counts:
        return
    with session_scope() as session:
        for endpoint_id, count in counts.items():
            queue.enqueue_after_commit(session, delivery.pull_parked(session, endpoint_id, count))


def release(attempts: Sequence[Attempt], limiter: Limiter | None) -> list[bool]:
    """Give the attempts' leases back; for each, whether a parked delivery waits for it."""
    held = [(a.claimed.endpoint_id, a.lease) for a in attempts if a.lease]
    waiting = iter(limiter.release_many(held) if limiter is not None and held else ())
    return [next(waiting) if a.lease else False for a in attempts]


def record(done: Sequence[tuple[Attempt, Result, bool]]) -> dict[uuid.UUID, Outcome]:
    """Record sent attempts whose leases are already given back (2xx ones in one statement).

    Each entry is ``(attempt, result, parked_waiting)``, the last from :func:`release`.
    """
    fast, slow = [], []
    for attempt, result, parked_waiting in done:
        if result.ok and not parked_waiting:
            fast.append((attempt.claimed, result))
        else:
            slow.append((attempt.claimed, result, parked_waiting))
    outcomes: dict[uuid.UUID, Outcome] = {}
    if fast:
        with get_engine().connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            outcomes.update(delivery.record_successes(connection, fast))
    for claimed, result, parked_waiting in slow:
        outcomes[claimed.id] = _record_other(claimed, result, parked_waiting)
    return outcomes


def finish(
    done: Sequence[tuple[Attempt, Result]], *, limiter: Limiter | None
) -> dict[uuid.UUID, Outcome]:
    """Release the sent attempts' leases and record their outcomes."""
    waiting = release([a for a, _ in done], limiter)
    return record([(a, r, w) for (a, r), w in zip(done, waiting, strict=True)])


def deliver_batch(
    ids: Sequence[uuid.UUID],
    *,
    limiter: Limiter | None,
    default_timeout: float,
    park_seconds: float = 5.0,
) -> dict[uuid.UUID, Outcome]:
    """Run one attempt of each due delivery among ``ids``, waiting for all of them.

    Returns each id's outcome (``noop`` for one that was not claimed).
    """
    started = begin(
        ids, limiter=limiter, default_timeout=default_timeout, park_seconds=park_seconds
    )
    try:
        results = sender.send_all([a.claimed for a in started.attempts])
    except BaseException:
        release(started.attempts, limiter)
        raise
    started.outcomes.update(
        finish(list(zip(started.attempts, results, strict=True)), limiter=limiter)
    )
    return started.outcomes


def chunks(ids: Sequence[uuid.UUID], size: int = MAX_BATCH) -> list[list[uuid.UUID]]:
    """``ids`` cut into batches of at most ``size``, in order."""
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]

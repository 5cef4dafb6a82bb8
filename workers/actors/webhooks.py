"""deliver_webhooks: one attempt of each of a batch of outgoing-webhook deliveries; the fan-out.

Importing this module registers the ``webhooks`` dispatch target (delivery rows
in ``dispatch_event``'s transaction) and installs the after-commit enqueuer,
which sends the deliveries a transaction wrote as batched messages.

The retry *schedule* (5 s ... 10 h) is the delivery row's ``next_attempt_at`` in
Postgres, re-driven by the scheduler's sweeper; Dramatiq's own retries below only
cover a crash of the job itself (database down...).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence

import dramatiq
from dramatiq.middleware import CurrentMessage

from shared import dispatch
from shared.config import get_settings
from shared.webhooks import engine, fanout, pipeline, queue
from shared.webhooks.limiter import Limiter
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)

#: NOTE: above the attempts' own timeout (the engine enforces it); TimeLimit then
#: interrupts a job stuck waiting for its batch.
_OPTIONS = {
    "queue_name": queues.WEBHOOKS,
    "max_retries": 5,
    "min_backoff": 1_000,
    "max_backoff": 30_000,
    "time_limit": 120_000,
}


@functools.cache
def _limiter() -> Limiter:
    return Limiter()


def _deliver(delivery_ids: Sequence[str]) -> None:
    outcomes = engine.deliver_batch(
        [uuid.UUID(i) for i in delivery_ids],
        limiter=_limiter(),
        default_timeout=get_settings().webhook_timeout_seconds,
    )
    for delivery_id, outcome in outcomes.items():
        log.debug("delivery %s: %s", delivery_id, outcome.kind)


@dramatiq.actor(**_OPTIONS)
def deliver_webhooks(delivery_ids: list[str]) -> None:
    """Run one attempt of each due delivery of the batch; duplicates and repeats are no-ops."""
    _deliver(delivery_ids)


@dramatiq.actor(**_OPTIONS)
def deliver_webhook(delivery_id: str) -> None:
    """One delivery: the message of earlier releases (still queued), same engine."""
    _deliver([delivery_id])


def _pipeline() -> pipeline.Pipeline:
    return pipeline.pipeline(
        limiter=_limiter(), default_timeout=get_settings().webhook_timeout_seconds
    )


def enqueue_deliveries(items: Sequence[tuple[uuid.UUID, float]]) -> None:
    """The :mod:`shared.webhooks.queue` enqueuer.

    PERF: inside a job of this worker (``dispatch_event`` fanning out, a delivery
    pulling a parked one), deliveries due now go to this process's pipeline
    rather than through the broker: one message per event instead of two. The
    rest (delayed retries; the API's resends; the sweeper) become
    ``deliver_webhooks`` messages, one per batch of equal delay.
    """
    in_job = CurrentMessage.get_current_message() is not None
    local = [i for i, delay in items if in_job and delay <= 0]
    by_delay: dict[float, list[uuid.UUID]] = defaultdict(list)
    for delivery_id, delay in items:
        if not (in_job and delay <= 0):
            by_delay[max(delay, 0.0)].append(delivery_id)
    for delay, ids in by_delay.items():
        options = {"delay": int(delay * 1000)} if delay > 0 else {}
        for batch in engine.chunks(ids):
            deliver_webhooks.send_with_options(args=([str(i) for i in batch],), **options)
    if local:
        _pipeline().submit(local)


dispatch.register_target(fanout.TARGET_NAME, fanout.target)
queue.set_enqueuer(enqueue_deliveries)

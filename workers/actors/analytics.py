"""Analytics: ``roll_up`` keeps a tenant's rollups current; ``reconcile_analytics`` recounts.

Importing this module registers the ``analytics`` dispatch target (events queued in
``dispatch_event``'s transaction) and installs the after-commit enqueuer that sends
one ``roll_up`` per tenant of a dispatched batch, unless one is already waiting.

PERF: a tenant's ``roll_up`` that waits in the queue or runs will count every event
committed before it looks, so a batch dispatched meanwhile sends none (a Redis flag, set
by the sender, cleared by the job once it has drained, and then it looks once more).
A tenant that still has events waiting after a drain is busy: its next ``roll_up`` is
sent :data:`BUSY_DELAY_MS` later, with the flag kept, so a steady stream of events is
counted in a few larger drains per second instead of one small drain (and message)
per dispatched batch; each drain costs about as much as its events. A quiet tenant's
event is counted at once. The flag expires after :data:`WAITING_FLAG_MS`, and the
scheduler's sweeper re-sends for events left waiting, so a lost message delays
counting, never loses it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq
from redis.exceptions import RedisError

from shared import dispatch
from shared.analytics import intake, reconcile, rollup
from shared.redis_client import get_redis, key
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)
from workers.metrics import count_items

log = logging.getLogger(__name__)

#: How long a sent ``roll_up`` holds off the next ones of its tenant at most.
WAITING_FLAG_MS = 5_000
#: How long a busy tenant's events batch up before its next drain (its counting lag).
BUSY_DELAY_MS = 100


def _waiting_flag(tenant_id: str) -> str:
    return key("analytics", "roll_up_waiting", tenant_id)


@dramatiq.actor(
    queue_name=queues.ANALYTICS,
    max_retries=10,
    min_backoff=500,
    max_backoff=60_000,
    time_limit=120_000,
)
def roll_up(tenant_id: str) -> None:
    """Count the tenant's queued events; a duplicate or concurrent message is harmless."""
    tenant = uuid.UUID(tenant_id)
    result = rollup.drain(tenant, recheck=False)
    count_items({"analytics_events": result.counted})
    if result.locked_out:
        # NOTE: a drainer holding the lock looks again once done; the nightly reconcile
        # does not, it sends a roll_up when done with the tenant: the flag must let it.
        _clear_waiting(tenant_id)
        return
    if result.unfinished:
        roll_up.send_with_options(args=(tenant_id,), tenant_id=tenant_id)  # flag kept
        return
    # NOTE: the flag was kept while draining, so events committed meanwhile sent no
    # message: cleared now, an event committed from here on sends one, and one committed
    # before is seen by the look below (whose message is then ours, delayed: busy tenant).
    _clear_waiting(tenant_id)
    if rollup.has_pending(tenant) and _mark_waiting(tenant_id):
        try:
            roll_up.send_with_options(args=(tenant_id,), tenant_id=tenant_id, delay=BUSY_DELAY_MS)
        except BaseException:
            _clear_waiting(tenant_id)
            raise


def enqueue_rollups(tenant_ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.analytics.intake` enqueuer: one message per tenant of the batch
    that has none waiting."""
    for tenant_id in map(str, dict.fromkeys(tenant_ids)):
        if not _mark_waiting(tenant_id):
            continue
        try:
            roll_up.send_with_options(args=(tenant_id,), tenant_id=tenant_id)
        except BaseException:
            _clear_waiting(tenant_id)
            raise


def _mark_waiting(tenant_id: str) -> bool:
    """Whether no ``roll_up`` of the tenant waits (now one does); Redis down: send anyway."""
    try:
        return bool(get_redis().set(_waiting_flag(tenant_id), 1, nx=True, px=WAITING_FLAG_MS))
    except RedisError:
        return True


def _clear_waiting(tenant_id: str) -> None:
    try:
        get_redis().delete(_waiting_flag(tenant_id))
    except RedisError:
        log.warning("could not clear the roll_up flag of %s; it expires", tenant_id)


@dramatiq.actor(
    queue_name=queues.ANALYTICS,
    max_retries=3,
    min_backoff=60_000,
    max_backoff=15 * 60_000,
    time_limit=60 * 60_000,
)
def reconcile_analytics() -> None:
    """Recount the previous days from the source rows and correct the rollups' drift."""
    # NOTE: through the intake queue, which logs a failed send: the sweeper re-sends a
    # lost roll_up, so a broker blip must not fail the run (and skip the tenants after).
    run = reconcile.reconcile_all(on_tenant_done=intake.enqueue)
    log.info("analytics reconcile: %s", run)


dispatch.register_target(intake.TARGET_NAME, intake.target, batch=True)
intake.set_enqueuer(enqueue_rollups)

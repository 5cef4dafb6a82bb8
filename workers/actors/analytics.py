"""Analytics: ``roll_up`` keeps a tenant's rollups current; ``reconcile_analytics`` recounts.

Importing this module registers the ``analytics`` dispatch target (events queued in
``dispatch_event``'s transaction) and installs the after-commit enqueuer that sends
one ``roll_up`` per tenant of a dispatched batch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq

from shared import dispatch
from shared.analytics import intake, reconcile, rollup
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)
from workers.metrics import count_items

log = logging.getLogger(__name__)


@dramatiq.actor(
    queue_name=queues.ANALYTICS,
    max_retries=10,
    min_backoff=500,
    max_backoff=60_000,
    time_limit=120_000,
)
def roll_up(tenant_id: str) -> None:
    """Count the tenant's queued events; a duplicate or concurrent message is harmless."""
    result = rollup.drain(uuid.UUID(tenant_id))
    count_items({"analytics_events": result.counted})
    if result.unfinished:
        roll_up.send_with_options(args=(tenant_id,), tenant_id=tenant_id)


def enqueue_rollups(tenant_ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.analytics.intake` enqueuer: one message per tenant of the batch."""
    for tenant_id in dict.fromkeys(tenant_ids):
        roll_up.send_with_options(args=(str(tenant_id),), tenant_id=str(tenant_id))


@dramatiq.actor(
    queue_name=queues.ANALYTICS,
    max_retries=3,
    min_backoff=60_000,
    max_backoff=15 * 60_000,
    time_limit=60 * 60_000,
)
def reconcile_analytics() -> None:
    """Recount the previous days from the source rows and correct the rollups' drift."""
    run = reconcile.reconcile_all(on_tenant_done=enqueue_rollups)
    log.info("analytics reconcile: %s", run)


dispatch.register_target(intake.TARGET_NAME, intake.target, batch=True)
intake.set_enqueuer(enqueue_rollups)

"""evaluate_rules: one automation event's rules, on the ``automation`` queue;
roll_up_automation_stats: the stats rollups of a tenant.

Importing this module registers the ``automation`` dispatch target (queue rows in
``dispatch_event``'s transaction) and installs the after-commit enqueuer, in the
worker and in the API (retry, reprocess).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq

from shared import dispatch
from shared.automation import evaluator, queue, stats
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)


@dramatiq.actor(
    queue_name=queues.AUTOMATION,
    # NOTE: the row counts its own attempts and turns failed after AUTOMATION_MAX_ATTEMPTS;
    # Dramatiq's retries (with backoff) are what re-runs it until then.
    max_retries=10,
    min_backoff=500,
    max_backoff=60_000,
    time_limit=120_000,
)
def evaluate_rules(automation_event_id: str) -> None:
    """Evaluate the event's rules and apply the matched actions; a duplicate is a no-op."""
    outcome = evaluator.evaluate_event(uuid.UUID(automation_event_id))
    log.debug("automation event %s: %s", automation_event_id, outcome)


def enqueue_evaluations(ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.automation.queue` enqueuer: one message per queue row."""
    for event_id in ids:
        evaluate_rules.send(str(event_id))


@dramatiq.actor(
    queue_name=queues.AUTOMATION,
    max_retries=10,
    min_backoff=500,
    max_backoff=60_000,
    time_limit=120_000,
)
def roll_up_automation_stats(tenant_id: str) -> None:
    """Add the tenant's queued run figures to the stats rollups; duplicates are harmless."""
    counted, again = stats.drain(uuid.UUID(tenant_id))
    log.debug("automation stats of %s: %d event(s) counted", tenant_id, counted)
    if again:
        roll_up_automation_stats.send_with_options(
            args=(tenant_id,), delay=stats.ROLLUP_DELAY_MS, tenant_id=tenant_id
        )


def enqueue_stats_rollups(tenant_ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.automation.stats` enqueuer: a delayed message per tenant and second."""
    for tenant_id in stats.throttled(tenant_ids):
        roll_up_automation_stats.send_with_options(
            args=(str(tenant_id),), delay=stats.ROLLUP_DELAY_MS, tenant_id=str(tenant_id)
        )


dispatch.register_target(queue.TARGET_NAME, queue.target)
queue.set_enqueuer(enqueue_evaluations)
stats.set_enqueuer(enqueue_stats_rollups)

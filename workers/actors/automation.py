"""evaluate_rules: a batch of automation events' rules, on the ``automation`` queue;
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
def evaluate_rules(automation_event_ids: str | list[str]) -> None:
    """Evaluate the events' rules and apply the matched actions; a duplicate is a no-op.

    One row id (a dead letter's redo, an older message) or a batch of them.
    """
    ids = [automation_event_ids] if isinstance(automation_event_ids, str) else automation_event_ids
    outcomes = evaluator.evaluate_events([uuid.UUID(event_id) for event_id in ids])
    log.debug("automation events: %s", outcomes)


def enqueue_evaluations(ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.automation.queue` enqueuer: a message per batch of queue rows.

    PERF: a message per row cost its broker round trips, middleware and claim
    transaction each; a batch shares them and is evaluated in one transaction.
    """
    size = queue.EVALUATION_BATCH
    for first in range(0, len(ids), size):
        evaluate_rules.send([str(event_id) for event_id in ids[first : first + size]])


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


dispatch.register_target(queue.TARGET_NAME, queue.target_many, batch=True)
queue.set_enqueuer(enqueue_evaluations)
stats.set_enqueuer(enqueue_stats_rollups)

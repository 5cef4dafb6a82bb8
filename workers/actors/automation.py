"""evaluate_rules: a batch of automation events' rules, on the ``automation`` queue;
roll_up_automation_stats: the stats rollups of a tenant.

Importing this module registers the ``automation`` dispatch target (queue rows in
``dispatch_event``'s transaction) and installs the after-commit enqueuer, in the
worker and in the API (retry, reprocess).

PERF: a batch smaller than :data:`~shared.automation.queue.EVALUATION_BATCH` (most
transactions emit one event) joins the ``evaluate_rules`` message that already waits
or runs, if there is one (:mod:`workers.joining`, one for the deployment), instead of
sending its own: that message takes the joined ids when it starts (up to a full
batch; the rest goes out in full batches) and when it ends (sent on as the next
message, which keeps the flag). One event per message evaluated each batch's claim,
locks, run states, facts, targets, runs and finish (eight statements, two commits) and
its message's broker work for one event: about three quarters of its CPU. A quiet
deployment's event still goes at once, alone; a busy one's are evaluated together, in
queue order. Ids left joined (a worker killed between a take and a send) are hints
only: the rows stay pending and the scheduler's sweeper re-drives them.
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
from workers.joining import Joining

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

    One row id (a dead letter's redo, an older message) or a batch of them, plus the ids
    smaller batches left for the waiting message (see the module's note). If the
    evaluation raises for a retry, Dramatiq retries this message's own ids; the joined
    ones are sent again on their own, after the same backoff.
    """
    ids = [automation_event_ids] if isinstance(automation_event_ids, str) else automation_event_ids
    joined = _take_joined(ids)
    try:
        outcomes = evaluator.evaluate_events([uuid.UUID(event_id) for event_id in ids + joined])
    except Exception:
        if joined:
            evaluate_rules.send_with_options(args=(joined,), delay=_RETRY_JOINED_MS)
        raise
    finally:
        # Joined while this message ran: sent on now, their message keeping the flag.
        _send_batches(JOINING.end_turn(_SCOPE))
    log.debug("automation events: %s", outcomes)


def enqueue_evaluations(ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.automation.queue` enqueuer: a message per batch of queue rows.

    PERF: a message per row cost its broker round trips, middleware and claim
    transaction each; a batch shares them and is evaluated in one transaction. A last
    batch smaller than a full one joins the waiting message if there is one.
    """
    size = queue.EVALUATION_BATCH
    batches = [[str(i) for i in ids[first : first + size]] for first in range(0, len(ids), size)]
    last = batches.pop() if batches and len(batches[-1]) < size else None
    for batch in batches:
        evaluate_rules.send(batch)
    if last is None or JOINING.join(_SCOPE, last):
        return
    try:
        evaluate_rules.send(last)  # the flag is ours: others join this message
    except BaseException:
        JOINING.clear(_SCOPE)
        raise


# --- one waiting message for the small batches -----------------------------------------------

#: The deployment's small evaluation batches (one scope: any tenant's rows evaluate together).
JOINING = Joining("evaluate_rules")
_SCOPE = "all"
#: Joined ids of a failed evaluation go again after this (the actor's ``min_backoff``).
_RETRY_JOINED_MS = 500


def _take_joined(own: list[str]) -> list[str]:
    """The ids joined while this message waited, up to a full batch with its own; the rest
    is sent in full batches."""
    taken = JOINING.take(_SCOPE, own, release=False)
    room = max(queue.EVALUATION_BATCH - len(own), 0)
    _send_batches(taken[room:])
    return taken[:room]


def _send_batches(ids: list[str]) -> None:
    size = queue.EVALUATION_BATCH
    for first in range(0, len(ids), size):
        evaluate_rules.send(ids[first : first + size])


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

"""evaluate_rules: one automation event's rules, on the ``automation`` queue.

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
from shared.automation import evaluator, queue
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


dispatch.register_target(queue.TARGET_NAME, queue.target)
queue.set_enqueuer(enqueue_evaluations)

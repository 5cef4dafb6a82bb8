"""Retention: ``purge_old_rows``, a chain of bounded jobs deleting old finished history.

The scheduler sends it once a day. Each job purges for at most
:data:`SLICE_SECONDS` (batches of ``RETENTION_BATCH_SIZE`` rows, each its own
transaction) and sends itself again while old rows are left, so a large backlog
never holds one worker thread for minutes, and a restart loses at most a slice.
Two chains at once (a re-delivery, a manual send) only share the work: every
batch skips the rows another one has locked.
"""

from __future__ import annotations

import logging

import dramatiq

from shared.config import get_settings
from shared.retention import purge
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)
from workers.metrics import count_items

log = logging.getLogger(__name__)

#: How long one job purges before it hands the rest to the next one.
SLICE_SECONDS = 30.0


@dramatiq.actor(
    queue_name=queues.MAINTENANCE,
    max_retries=3,
    min_backoff=10_000,
    max_backoff=5 * 60_000,
    time_limit=5 * 60_000,
)
def purge_old_rows() -> None:
    """Purge for one slice; send the next slice when old rows are left."""
    settings = get_settings()
    if not settings.retention_days:
        return
    result = purge.purge(
        days=settings.retention_days,
        batch_size=settings.retention_batch_size,
        budget_seconds=SLICE_SECONDS,
        on_batch=count_items,
    )
    if result.counts:
        log.info("purged rows older than %d days: %s", settings.retention_days, dict(result.counts))
    if not result.finished:
        purge_old_rows.send()

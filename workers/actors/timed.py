"""Time-driven jobs: ``send_scheduled_messages`` (the due sends the scheduler hands out).

Importing this module installs the enqueuer of
:data:`shared.timekeeping.scheduled_messages.QUEUE` (the scheduler imports it too).
Each id is delivered in its own transaction, so one refused send never holds back the
others; an unexpected error fails the job after the rest are done and Dramatiq retries
it (delivered ids are skipped on the retry). NOTE: one transaction per job was tried and
measured far slower: 16 threads' jobs then hold many conversations' counters at once,
wait on each other and deadlock. Past the retries the rows stay pending and
the scheduler hands them out again; after ``MAX_ATTEMPTS`` they fail visibly.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq

from shared.db import session_scope
from shared.timekeeping import scheduled_messages
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)


class ScheduledSendError(Exception):
    """At least one scheduled message of the job could not be handled; retried."""


@dramatiq.actor(
    queue_name=queues.CHANNELS,
    max_retries=3,
    min_backoff=2_000,
    max_backoff=30_000,
    time_limit=5 * 60_000,
)
def send_scheduled_messages(scheduled_ids: list[str]) -> None:
    """Create the due message of each pending scheduled message; repeats change nothing."""
    errors = 0
    for raw in scheduled_ids:
        try:
            with session_scope() as session:
                outcome = scheduled_messages.deliver(session, uuid.UUID(raw))
            log.debug("scheduled message %s: %s", raw, outcome)
        except Exception:
            errors += 1
            log.exception("scheduled message %s could not be delivered", raw)
    if errors:
        raise ScheduledSendError(f"{errors} of {len(scheduled_ids)} scheduled messages failed")


def enqueue(scheduled_ids: Sequence[uuid.UUID]) -> None:
    """The queue's enqueuer: one job per :data:`~scheduled_messages.JOB_SIZE` ids."""
    size = scheduled_messages.JOB_SIZE
    ids = [str(i) for i in scheduled_ids]
    for start in range(0, len(ids), size):
        send_scheduled_messages.send(ids[start : start + size])


scheduled_messages.QUEUE.set_enqueuer(enqueue)

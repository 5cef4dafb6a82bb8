"""Time-driven jobs: ``send_scheduled_messages`` (the due sends the scheduler hands out).

Importing this module installs the enqueuer of
:data:`shared.timekeeping.scheduled_messages.QUEUE` (the scheduler imports it too).
A job delivers its ids in one transaction (:func:`~scheduled_messages.deliver_many`:
multi-row writes, so the ``message.created`` events reach ``dispatch_events`` and the
outbound engine as batches); a refused send fails its own row and the others go on.
If the batch itself fails (an unexpected error), each id is delivered again in its own
transaction, so one bad row never holds back the others; if any of those fails too, the
job fails after the rest are done and Dramatiq retries it (delivered ids are skipped on
the retry). Past the retries the rows stay pending and the scheduler hands them out
again; after ``MAX_ATTEMPTS`` they fail visibly.
NOTE: one transaction per job used to deadlock and wait: a per-message loop took each
conversation's counter lock first and held it to the commit; the batch takes them last.
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
    ids = [uuid.UUID(raw) for raw in scheduled_ids]
    try:
        with session_scope() as session:
            outcomes = scheduled_messages.deliver_many(session, ids)
        log.debug("scheduled messages %s", outcomes)
        return
    except Exception:
        log.warning("delivering %d scheduled messages together failed", len(ids), exc_info=True)
    errors = 0
    for scheduled_id in ids:
        try:
            with session_scope() as session:
                outcome = scheduled_messages.deliver(session, scheduled_id)
            log.debug("scheduled message %s: %s", scheduled_id, outcome)
        except Exception:
            errors += 1
            log.exception("scheduled message %s could not be delivered", scheduled_id)
    if errors:
        raise ScheduledSendError(f"{errors} of {len(scheduled_ids)} scheduled messages failed")


def enqueue(scheduled_ids: Sequence[uuid.UUID]) -> None:
    """The queue's enqueuer: one job per :data:`~scheduled_messages.JOB_SIZE` ids."""
    size = scheduled_messages.JOB_SIZE
    ids = [str(i) for i in scheduled_ids]
    for start in range(0, len(ids), size):
        send_scheduled_messages.send(ids[start : start + size])


scheduled_messages.QUEUE.set_enqueuer(enqueue)

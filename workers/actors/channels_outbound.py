"""send_outbound_batch / send_outbound: send queued outbound messages; and their fan-out.

Importing this module registers the ``channels_outbound`` dispatch target and
installs the after-commit enqueuer (:mod:`shared.channels.outbound_queue`), which
sends the messages a transaction committed as ``send_outbound_batch`` jobs of up
to :data:`~shared.channels.outbound_engine.MAX_BATCH` ids.

Each job runs the outbound engine (:mod:`shared.channels.outbound_engine`): one
claim, the provider calls concurrently on the process's send threads, one record.
The retry *schedule* is the send row's (``next_attempt_at``): a transient failure
is recorded with its retry time and re-enqueued here with that delay; a lost
re-enqueue is the sweeper's. When retries run out the engine fails the message and
writes its dead letter itself. Dramatiq's own retries below only cover a crash of
the job (the database down...); its claims then run out and the sweeper re-drives.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence

import dramatiq

from shared import dispatch
from shared.channels import outbound_engine, outbound_queue
from shared.channels.send_errors import Outcome
from shared.config import get_settings
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)

_settings = get_settings()

#: Added to a retry's delay: the delayed job must not arrive before the row is due.
_DELAY_SLACK_MS = 50

_OPTIONS = {
    "queue_name": queues.OUTBOUND,
    "max_retries": _settings.outbound_max_retries,
    "min_backoff": _settings.outbound_min_backoff_ms,
    "max_backoff": _settings.outbound_max_backoff_ms,
    # NOTE: above a batch's claim (the engine starts no send its claim cannot cover).
    "time_limit": outbound_engine.batch_time_limit_ms(_settings),
}


def _send(message_ids: Sequence[str]) -> None:
    results = outbound_engine.send_batch([uuid.UUID(i) for i in message_ids])
    later: dict[int, list[uuid.UUID]] = defaultdict(list)
    for message_id, result in results.items():
        log.debug("send %s: %s", message_id, result.outcome)
        if result.outcome == Outcome.RETRY:
            later[int((result.retry_in or 0.0) * 1000)].append(message_id)
    for delay_ms, ids in later.items():
        options = {"delay": delay_ms + _DELAY_SLACK_MS} if delay_ms > 0 else {}
        for batch in outbound_engine.chunks(ids):
            send_outbound_batch.send_with_options(args=([str(i) for i in batch],), **options)


@dramatiq.actor(**_OPTIONS)
def send_outbound_batch(message_ids: list[str]) -> None:
    """Send the due messages of the batch; those sent, failed or claimed elsewhere are no-ops."""
    _send(message_ids)


@dramatiq.actor(**_OPTIONS)
def send_outbound(message_id: str) -> None:
    """One message, by the same engine (re-drives, requeued dead letters, older messages)."""
    _send([message_id])


def enqueue_sends(message_ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.channels.outbound_queue` enqueuer: one job per batch of ids."""
    for batch in outbound_engine.chunks(list(message_ids)):
        send_outbound_batch.send([str(i) for i in batch])


dispatch.register_target(outbound_queue.TARGET_NAME, outbound_queue.target, batch=True)
outbound_queue.set_enqueuer(enqueue_sends)

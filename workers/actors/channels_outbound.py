"""send_outbound: send one queued outbound message through its channel; and its fan-out.

Importing this module registers the ``channels_outbound`` dispatch target and
installs the after-commit enqueuer (:mod:`shared.channels.outbound_queue`).

Transient provider failures (5xx, 429, timeouts, SMTP 4xx) raise, so Dramatiq
retries with backoff (a provider's ``Retry-After`` is honoured when longer). On
the last attempt the message is failed with the last error *and* the job still
raises, so the dead letter is recorded and visible to operators.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq
from dramatiq.middleware import CurrentMessage

from shared import dispatch
from shared.channels import outbound, outbound_queue
from shared.channels.send_errors import SendFailed
from shared.config import get_settings
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)

_settings = get_settings()


class TransientSendError(Exception):
    """A provider failure worth retrying (the message stays ``queued``)."""


@dramatiq.actor(
    queue_name=queues.OUTBOUND,
    max_retries=_settings.outbound_max_retries,
    min_backoff=_settings.outbound_min_backoff_ms,
    max_backoff=_settings.outbound_max_backoff_ms,
    # NOTE: above one provider call's own timeout (httpx / smtplib enforce it).
    time_limit=10 * 60_000,
)
def send_outbound(message_id: str) -> None:
    """Send the message unless it was sent already; a duplicate job is a no-op."""
    current = CurrentMessage.get_current_message()
    retries = current.options.get("retries", 0) if current is not None else 0
    max_retries = send_outbound.options.get("max_retries", 0)
    result = outbound.send(uuid.UUID(message_id), last_attempt=retries >= max_retries)
    log.debug("send_outbound %s: %s", message_id, result.outcome)
    error = result.error
    if result.outcome == outbound.Outcome.RETRY and error is not None:
        raise _retry(error, retries)
    if result.outcome == outbound.Outcome.FAILED and error is not None and error.transient:
        # The last attempt: the message is failed; raising records the dead letter.
        raise TransientSendError(f"gave up after {retries} retries: {error}")


def _retry(error: SendFailed, retries: int) -> Exception:
    if error.retry_after:
        backoff = min(
            _settings.outbound_max_backoff_ms, _settings.outbound_min_backoff_ms * 2**retries
        )
        return dramatiq.Retry(str(error), delay=max(backoff, int(error.retry_after * 1000)))
    return TransientSendError(str(error))


def enqueue_sends(message_ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.channels.outbound_queue` enqueuer: one message per send."""
    for message_id in message_ids:
        send_outbound.send(str(message_id))


dispatch.register_target(outbound_queue.TARGET_NAME, outbound_queue.target)
outbound_queue.set_enqueuer(enqueue_sends)

"""mark_read_upstream: send one read receipt to WhatsApp, Messenger or Instagram.

Importing this module installs the after-commit enqueuer of
:mod:`shared.channels.read_receipts` (the API and the scheduler import it for that).
Transient provider failures raise, so Dramatiq retries with backoff (the outbound
retry settings: a receipt is a send); on the last attempt the receipt is failed and
the job still raises, so the dead letter is recorded and visible to operators.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq
from dramatiq.middleware import CurrentMessage
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.channels import read_receipts, receipt_sender
from shared.config import get_settings
from shared.models import Message
from workers import queues, tenant_gate
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)

_settings = get_settings()


class TransientReceiptError(Exception):
    """A provider failure worth retrying (the receipt stays ``pending``)."""


@dramatiq.actor(
    queue_name=queues.CHANNELS,
    max_retries=_settings.outbound_max_retries,
    min_backoff=_settings.outbound_min_backoff_ms,
    max_backoff=_settings.outbound_max_backoff_ms,
    time_limit=5 * 60_000,
)
def mark_read_upstream(message_id: str) -> None:
    """Send the receipt of inbound message ``message_id`` unless it was sent already."""
    current = CurrentMessage.get_current_message()
    retries = current.options.get("retries", 0) if current is not None else 0
    max_retries = mark_read_upstream.options.get("max_retries", 0)
    result = receipt_sender.send(uuid.UUID(message_id), last_attempt=retries >= max_retries)
    log.debug("mark_read_upstream %s: %s", message_id, result.outcome)
    error = result.error
    if result.outcome == receipt_sender.Outcome.RETRY and error is not None:
        if error.retry_after:
            backoff = min(
                _settings.outbound_max_backoff_ms, _settings.outbound_min_backoff_ms * 2**retries
            )
            # A longer Retry-After than our backoff wins, as for sends.
            raise dramatiq.Retry(str(error), delay=max(backoff, int(error.retry_after * 1000)))
        raise TransientReceiptError(str(error))
    if result.outcome == receipt_sender.Outcome.FAILED and error is not None and error.transient:
        # The last attempt: the receipt is failed; raising records the dead letter.
        raise TransientReceiptError(f"gave up after {retries} retries: {error}")


def enqueue_receipts(message_ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.channels.read_receipts` enqueuer: one message per receipt."""
    for message_id in message_ids:
        mark_read_upstream.send(str(message_id))


read_receipts.set_enqueuer(enqueue_receipts)


def tenant_of_receipt(session: Session, args: tuple) -> uuid.UUID | None:
    """The tenant of the message a receipt is for: a suspended tenant's is not sent."""
    return session.scalar(select(Message.tenant_id).where(Message.id == uuid.UUID(args[0])))


tenant_gate.resolve_tenant_with(mark_read_upstream.actor_name, tenant_of_receipt)

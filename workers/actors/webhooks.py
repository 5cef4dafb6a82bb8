"""deliver_webhook: one attempt of one outgoing-webhook delivery; and the dispatch fan-out.

Importing this module registers the ``webhooks`` dispatch target (delivery rows
in ``dispatch_event``'s transaction) and installs the after-commit enqueuer.

The retry *schedule* (5 s ... 10 h) is the delivery row's ``next_attempt_at`` in
Postgres, re-driven by the scheduler's sweeper; Dramatiq's own retries below only
cover a crash of the job itself (database down...).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Sequence

import dramatiq

from shared import dispatch
from shared.config import get_settings
from shared.webhooks import delivery, fanout, queue
from shared.webhooks.limiter import Limiter
from shared.webhooks.transport import shared_client
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)


@functools.cache
def _limiter() -> Limiter:
    return Limiter()


@dramatiq.actor(
    queue_name=queues.WEBHOOKS,
    max_retries=5,
    min_backoff=1_000,
    max_backoff=30_000,
    # NOTE: above the attempt's own timeout (httpx enforces it); TimeLimit cannot
    # interrupt a blocking socket call anyway.
    time_limit=120_000,
)
def deliver_webhook(delivery_id: str) -> None:
    """Run one attempt of the delivery if it is due; a duplicate message is a no-op."""
    settings = get_settings()
    outcome = delivery.deliver(
        uuid.UUID(delivery_id),
        client=shared_client(),
        limiter=_limiter(),
        default_timeout=settings.webhook_timeout_seconds,
    )
    log.debug("delivery %s: %s", delivery_id, outcome.kind)


def enqueue_deliveries(items: Sequence[tuple[uuid.UUID, float]]) -> None:
    """The :mod:`shared.webhooks.queue` enqueuer: one message per delivery, delayed if asked."""
    for delivery_id, delay in items:
        options = {"delay": int(delay * 1000)} if delay > 0 else {}
        deliver_webhook.send_with_options(args=(str(delivery_id),), **options)


dispatch.register_target(fanout.TARGET_NAME, fanout.target)
queue.set_enqueuer(enqueue_deliveries)

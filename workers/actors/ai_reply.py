"""ai_reply: answer a conversation as its AI agent, on the ``ai`` queue; and its fan-out.

Importing this module registers the ``ai`` dispatch target (an inbound message on an
AI-owned conversation owes a reply, :mod:`shared.ai.replies`) and installs the
after-commit enqueuer, which sends ``ai_reply`` delayed by the settle window.

PERF: the job claims and prepares the reply, hands the model call to this process's
event loop and returns (:func:`shared.ai.generation.start`): a worker thread is busy
for the milliseconds around the model, not its seconds. The reply row is the
durable record; a worker that dies mid-answer leaves it ``generating`` for the
sweeper. Dramatiq's retries cover a failure while preparing (database down...).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq

from shared import dispatch
from shared.ai import generation, replies
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)


@dramatiq.actor(
    queue_name=queues.AI,
    max_retries=5,
    min_backoff=500,
    max_backoff=30_000,
    # NOTE: the job never waits for the model; preparing is a few queries.
    time_limit=60_000,
)
def ai_reply(reply_id: str) -> None:
    """Generate the reply ``reply_id`` if it is due and pending; a duplicate is a no-op."""
    outcome = generation.start(uuid.UUID(reply_id))
    log.debug("ai_reply %s: %s", reply_id, outcome)


def enqueue_replies(items: Sequence[tuple[uuid.UUID, float, uuid.UUID]]) -> None:
    """The :mod:`shared.ai.replies` enqueuer: one message per reply, delayed by its window."""
    for reply_id, delay, tenant_id in items:
        options = {"delay": int(delay * 1000)} if delay > 0 else {}
        ai_reply.send_with_options(args=(str(reply_id),), tenant_id=str(tenant_id), **options)


dispatch.register_target(replies.TARGET_NAME, replies.target)
replies.set_enqueuer(enqueue_replies)

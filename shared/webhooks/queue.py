"""Hand deliveries to the ``deliver_webhook`` job after the transaction that wrote them commits.

Like the outbox (:mod:`shared.events`): the worker process installs an *enqueuer*
with :func:`set_enqueuer`; services call :func:`enqueue_after_commit`, and the ids
are sent only once the rows are committed, never from inside the transaction. A
delivery whose message is lost (crash, broker down) is re-driven by the sweeper
once its ``sweep_at`` passes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from shared.after_commit_queue import AfterCommitQueue

#: ``[(delivery_id, delay_seconds), ...]`` -> ``deliver_webhook(s)`` messages, after commit.
QUEUE: AfterCommitQueue[tuple[uuid.UUID, float]] = AfterCommitQueue(
    "omnistream.webhook_deliveries", "webhook deliveries"
)
set_enqueuer = QUEUE.set_enqueuer
enqueue = QUEUE.enqueue


def enqueue_after_commit(
    session: Session, delivery_ids: Sequence[uuid.UUID], delay: float = 0.0
) -> None:
    """Send ``deliver_webhook`` for these rows once the transaction commits (batched)."""
    QUEUE.enqueue_after_commit(session, ((i, delay) for i in delivery_ids))

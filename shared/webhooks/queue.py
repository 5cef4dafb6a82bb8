"""Hand deliveries to the ``deliver_webhook`` job after the transaction that wrote them commits.

Like the outbox (:mod:`shared.events`): the worker process installs an *enqueuer*
with :func:`set_enqueuer`; services call :func:`enqueue_after_commit`, and the ids
are sent only once the rows are committed, never from inside the transaction. A
delivery whose message is lost (crash, broker down) is re-driven by the sweeper
once its ``sweep_at`` passes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from shared import db

log = logging.getLogger(__name__)

#: ``[(delivery_id, delay_seconds), ...] -> None``: sends ``deliver_webhook`` messages.
Enqueuer = Callable[[Sequence[tuple[uuid.UUID, float]]], None]
_enqueuer: Enqueuer | None = None
_PENDING_KEY = "omnistream.webhook_deliveries"


def set_enqueuer(enqueuer: Enqueuer | None) -> None:
    global _enqueuer
    _enqueuer = enqueuer


def enqueue(items: Sequence[tuple[uuid.UUID, float]]) -> None:
    """Send now (the rows must be committed); failures are logged, the sweeper retries."""
    if not items or _enqueuer is None:
        return
    try:
        _enqueuer(items)
    except Exception:
        log.warning("could not enqueue %d webhook deliveries; the sweeper will", len(items))


def enqueue_after_commit(
    session: Session, delivery_ids: Sequence[uuid.UUID], delay: float = 0.0
) -> None:
    """Send ``deliver_webhook`` for these rows once the transaction commits (batched)."""
    pending = db.collected_until_commit(session, _PENDING_KEY, enqueue)
    pending.extend((i, delay) for i in delivery_ids)

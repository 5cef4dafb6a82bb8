"""Hand stored inbound payloads to ``process_inbound`` once their transaction commits.

Like :mod:`shared.webhooks.queue`: the actor module installs the enqueuer; the ack
path calls :func:`enqueue_after_commit`. An id whose message is lost (crash, broker
down) stays ``pending`` and the scheduler's :func:`shared.channels.inbound_sweeper.sweep`
re-enqueues it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from shared import db

log = logging.getLogger(__name__)

Enqueuer = Callable[[Sequence[uuid.UUID]], None]
_enqueuer: Enqueuer | None = None
_PENDING_KEY = "omnistream.inbound_events"


def set_enqueuer(enqueuer: Enqueuer | None) -> None:
    global _enqueuer
    _enqueuer = enqueuer


def enqueue(ids: Sequence[uuid.UUID]) -> None:
    """Send now (the rows must be committed); failures are logged, the sweeper retries."""
    if not ids or _enqueuer is None:
        return
    try:
        _enqueuer(ids)
    except Exception:
        log.warning("could not enqueue %d inbound payload(s); the sweeper will", len(ids))


def enqueue_after_commit(session: Session, ids: Sequence[uuid.UUID]) -> None:
    db.collected_until_commit(session, _PENDING_KEY, enqueue).extend(ids)

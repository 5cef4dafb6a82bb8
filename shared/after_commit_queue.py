"""Hand ids to a job only once the transaction that wrote their rows has committed.

The pattern every background family shares (the webhook deliveries, inbound payloads,
outbound sends, automation events): the worker process installs an *enqueuer* that
sends the broker messages; services call :meth:`AfterCommitQueue.enqueue_after_commit`
inside their transaction and the ids are sent, in one batch, after the commit — never
from inside it. A message that is lost (a crash, the broker down) is not an error here:
each family's scheduler sweeper re-drives rows still waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from shared import db

log = logging.getLogger(__name__)

Item = TypeVar("Item")


class AfterCommitQueue(Generic[Item]):
    """One job family's after-commit hand-off; ``what`` names its items in the logs."""

    def __init__(self, session_key: str, what: str) -> None:
        self.session_key = session_key
        self.what = what
        #: ``[item, ...] -> None``, installed by the worker module that owns the job.
        self.enqueuer: Callable[[Sequence[Item]], None] | None = None

    def set_enqueuer(self, enqueuer: Callable[[Sequence[Item]], None] | None) -> None:
        self.enqueuer = enqueuer

    def enqueue(self, items: Sequence[Item]) -> None:
        """Send now (the rows must be committed); a failure is logged, the sweeper retries."""
        if not items or self.enqueuer is None:
            return
        try:
            self.enqueuer(items)
        except Exception:
            log.warning("could not enqueue %d %s; the sweeper will", len(items), self.what)

    def enqueue_after_commit(self, session: Session, items: Iterable[Item]) -> None:
        db.collected_until_commit(session, self.session_key, self.enqueue).extend(items)

"""Getting campaign batches to ``run_campaign``: the after-commit hand-off.

Each item is ``(campaign_id, step, delay_seconds)``: the batch a campaign's row says
is next (its ``step``), and how long to wait before running it (the pacing, or a
throttling backoff). The item is queued in the transaction that made the batch due
(the send, the scheduler's start, the previous batch), so it is sent only if that
commits; a lost one is re-driven by the scheduler's ``start_due_campaigns`` from
the row's ``next_batch_at``.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from shared.after_commit_queue import AfterCommitQueue

Item = tuple[uuid.UUID, int, float]

#: ``[(campaign_id, step, delay_seconds), ...]`` -> ``run_campaign`` messages, after commit.
QUEUE: AfterCommitQueue[Item] = AfterCommitQueue("omnistream.campaign_batches", "campaign batches")
set_enqueuer = QUEUE.set_enqueuer


def enqueue_after_commit(
    session: Session, campaign_id: uuid.UUID, step: int, delay_seconds: float = 0.0
) -> None:
    QUEUE.enqueue_after_commit(session, [(campaign_id, step, max(0.0, delay_seconds))])

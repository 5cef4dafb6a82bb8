"""run_campaign: one batch of a running campaign (see :mod:`shared.campaigns.runner`).

Importing this module installs the enqueuer of :data:`shared.campaigns.queue.QUEUE`
(the API and the scheduler import it too) and registers the dispatch target that
marks campaign recipients who replied. The next batch is queued by the batch's own
transaction, with the pacing as the broker delay; a job that fails is retried, and
past its retries the scheduler's ``start_due_campaigns`` re-drives the campaign.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import dispatch
from shared.campaigns import queue, runner, tracking
from shared.db import session_scope
from shared.models import Campaign
from workers import queues, tenant_gate
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)


@dramatiq.actor(
    queue_name=queues.CHANNELS,
    max_retries=5,
    min_backoff=1_000,
    max_backoff=30_000,
    time_limit=5 * 60_000,
)
def run_campaign(campaign_id: str, step: int) -> str:
    """Run the campaign's batch ``step`` unless it ran already (a duplicate is a no-op)."""
    with session_scope() as session:
        outcome = runner.run_batch(session, uuid.UUID(campaign_id), step)
    log.debug("run_campaign %s step %s: %s", campaign_id, step, outcome)
    return str(outcome)


def enqueue(items: Sequence[queue.Item]) -> None:
    """The queue's enqueuer: one message per batch, delayed by its pacing or backoff."""
    for campaign_id, step, delay in items:
        run_campaign.send_with_options(
            args=(str(campaign_id), step), delay=int(delay * 1000) if delay > 0 else None
        )


def tenant_of_campaign(session: Session, args: tuple) -> uuid.UUID | None:
    """The campaign's tenant, for its dead letters only: ``run_batch`` holds a suspended
    workspace's batch itself (re-driven on reactivation), so the gate does not drop it."""
    return session.scalar(select(Campaign.tenant_id).where(Campaign.id == uuid.UUID(args[0])))


tenant_gate.resolve_tenant_with(run_campaign.actor_name, tenant_of_campaign, gate=False)
queue.set_enqueuer(enqueue)
dispatch.register_target(tracking.TARGET_NAME, tracking.target)

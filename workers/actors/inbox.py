"""Inbox jobs: bulk conversation actions too large for one request."""

from __future__ import annotations

import logging
import uuid

import dramatiq

from shared import jobs
from shared.db import session_scope
from shared.inbox import bulk
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name=queues.MAINTENANCE, max_retries=3, min_backoff=100, max_backoff=1_000)
def mark_bulk_job_failed(message_data: dict, retry_info: dict) -> None:
    """Fail the job once ``bulk_conversation_action`` exhausted its retries."""
    job_id = uuid.UUID(message_data["args"][0])
    error = (message_data.get("options") or {}).get("traceback") or "the job kept failing"
    with session_scope() as session:
        jobs.mark_failed(
            session,
            job_id,
            f"gave up after {retry_info.get('retries')} retries\n" + error.strip().splitlines()[-1],
        )
    log.error("bulk job %s failed for good", job_id)


@dramatiq.actor(
    queue_name=queues.MAINTENANCE,
    max_retries=3,
    min_backoff=1_000,
    max_backoff=30_000,
    time_limit=15 * 60_000,
    on_retry_exhausted=mark_bulk_job_failed.actor_name,
)
def bulk_conversation_action(job_id: str) -> None:
    """Run or resume the bulk job ``job_id``; a re-delivery changes nothing twice."""
    status = bulk.process_job(uuid.UUID(job_id))
    log.info("bulk job %s: %s", job_id, status)


def enqueue_bulk(job_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
    """The ``enqueue`` the API hands :func:`shared.inbox.bulk.run` (called after commit)."""
    bulk_conversation_action.send_with_options(args=(str(job_id),), tenant_id=str(tenant_id))

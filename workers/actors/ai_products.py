"""AI product imports: ``import_products`` upserts a CSV or JSON import in batches."""

from __future__ import annotations

import logging
import uuid

import dramatiq

from shared import jobs
from shared.ai import product_import
from shared.db import session_scope
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name=queues.KNOWLEDGE, max_retries=3, min_backoff=100, max_backoff=1_000)
def mark_product_import_failed(message_data: dict, retry_info: dict) -> None:
    """Fail the job once ``import_products`` exhausted its retries (its rows so far stay)."""
    job_id = uuid.UUID(message_data["args"][0])
    error = (message_data.get("options") or {}).get("traceback") or "the import kept failing"
    with session_scope() as session:
        jobs.mark_failed(
            session,
            job_id,
            f"gave up after {retry_info.get('retries')} retries\n" + error.strip().splitlines()[-1],
        )
        product_import.discard(session, job_id)
    log.error("product import %s failed for good", job_id)


@dramatiq.actor(
    queue_name=queues.KNOWLEDGE,
    max_retries=5,
    min_backoff=1_000,
    max_backoff=60_000,
    time_limit=30 * 60_000,
    on_retry_exhausted=mark_product_import_failed.actor_name,
)
def import_products(job_id: str) -> None:
    """Run or resume the import job ``job_id``; a retry resumes after its last batch."""
    status = product_import.process_import(uuid.UUID(job_id))
    log.info("product import %s: %s", job_id, status)


def enqueue_import(job_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
    """The ``enqueue`` the API hands :func:`shared.ai.product_import.start_import`."""
    import_products.send_with_options(args=(str(job_id),), tenant_id=str(tenant_id))

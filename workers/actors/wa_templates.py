"""WhatsApp template sync: ``sync_wa_templates`` per account (see shared.channels.templates.sync).

Importing this module installs the enqueuer of :mod:`shared.channels.templates.sync_queue`
(the API's sync request, the review webhook and the scheduler's claim rely on it).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq
from dramatiq.middleware import CurrentMessage

from shared.channels.templates import sync, sync_queue
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


#: The message option holding the sync row's ``attempts`` its last run set (see mark_failed).
SYNC_ATTEMPT = "wa_template_sync_attempt"


def _attempt_recorder():
    """Keep this run's attempt in the message's options, None until the run starts.

    WHY: Dramatiq's Retries re-enqueues the same message (options included) and hands
    them to ``on_retry_exhausted``: the handler fails the run that gave up, not a newer one.
    """
    message = CurrentMessage.get_current_message()
    if message is None:
        return None
    message.options.pop(SYNC_ATTEMPT, None)  # a run that never starts records none
    return lambda attempt: message.options.__setitem__(SYNC_ATTEMPT, attempt)


@dramatiq.actor(queue_name=queues.MAINTENANCE, max_retries=3, min_backoff=100, max_backoff=1_000)
def mark_wa_template_sync_failed(message_data: dict, retry_info: dict) -> None:
    """Make the account's sync ``failed`` once ``sync_wa_templates`` exhausted its retries."""
    args = message_data["args"]
    options = message_data.get("options") or {}
    error = options.get("traceback") or "the sync kept failing"
    sync.mark_failed(
        uuid.UUID(args[0]),
        _uuid(args[1] if len(args) > 1 else None),
        f"gave up after {retry_info.get('retries')} retries: " + error.strip().splitlines()[-1],
        options.get(SYNC_ATTEMPT),
    )
    log.error("template sync of account %s failed for good", args[0])


@dramatiq.actor(
    queue_name=queues.CHANNELS,
    max_retries=5,
    min_backoff=5_000,
    max_backoff=600_000,
    time_limit=10 * 60_000,
    on_retry_exhausted=mark_wa_template_sync_failed.actor_name,
)
def sync_wa_templates(integration_account_id: str, job_id: str | None = None) -> None:
    """Make the account's templates what Meta lists; a repeat changes nothing."""
    outcome = sync.run(uuid.UUID(integration_account_id), _uuid(job_id), _attempt_recorder())
    log.debug("template sync of account %s: %s", integration_account_id, outcome)


def enqueue_syncs(requests: Sequence[sync.SyncRequest]) -> None:
    for request in requests:
        sync_wa_templates.send_with_options(
            args=(
                str(request.integration_account_id),
                str(request.job_id) if request.job_id else None,
            ),
            tenant_id=str(request.tenant_id),
        )


@dramatiq.actor(queue_name=queues.MAINTENANCE, max_retries=3, min_backoff=1_000)
def resume_wa_template_sync_job(job_id: str) -> None:
    """Send again the syncs of a job whose messages were lost (the scheduler's re-drive)."""
    enqueue_syncs(sync.resume_job(uuid.UUID(job_id)))


def enqueue_sync_job(job_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
    """The re-drive of a ``wa_templates.sync`` job still queued (``redrive_queued_jobs``)."""
    resume_wa_template_sync_job.send_with_options(args=(str(job_id),), tenant_id=str(tenant_id))


sync_queue.set_enqueuer(enqueue_syncs)

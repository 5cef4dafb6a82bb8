"""process_inbound: turn one stored provider payload into contacts, conversations and messages.

Importing this module installs the after-commit enqueuer of :mod:`shared.channels.inbound_queue`
(the API's webhook receivers and the scheduler's sweeper both rely on it).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.channels import inbound_queue, media_prefetch, processing
from shared.db import session_scope
from shared.models import InboundEvent, MediaFile
from workers import queues, tenant_gate
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name=queues.MAINTENANCE, max_retries=3, min_backoff=100, max_backoff=1_000)
def mark_inbound_failed(message_data: dict, retry_info: dict) -> None:
    """Make the payload ``failed`` once ``process_inbound`` exhausted its retries."""
    inbound_event_id = uuid.UUID(message_data["args"][0])
    error = (message_data.get("options") or {}).get("traceback") or "processing kept failing"
    with session_scope() as session:
        processing.mark_failed(
            session,
            inbound_event_id,
            f"gave up after {retry_info.get('retries')} retries: " + error.strip().splitlines()[-1],
        )
    log.error("inbound event %s failed for good", inbound_event_id)


#: PERF: ahead of other jobs a busy worker process has already pulled (Dramatiq's default
#: priority is 0; lower runs first): a callback's message must be stored (issue 5: POST ->
#: message.created p99 < 150 ms) before its own events fan out.
INBOUND_PRIORITY = -10


@dramatiq.actor(
    queue_name=queues.INBOUND,
    priority=INBOUND_PRIORITY,
    max_retries=5,
    min_backoff=500,
    max_backoff=60_000,
    time_limit=120_000,
    on_retry_exhausted=mark_inbound_failed.actor_name,
)
def process_inbound(inbound_event_id: str) -> None:
    """Process the stored payload if still pending; a repeat is a no-op."""
    with session_scope() as session:
        outcome = processing.process(session, uuid.UUID(inbound_event_id))
    log.debug("inbound event %s: %s", inbound_event_id, outcome)


def enqueue_inbound(ids: Sequence[uuid.UUID]) -> None:
    for inbound_event_id in ids:
        process_inbound.send(str(inbound_event_id))


def tenant_of_inbound(session: Session, args: tuple) -> uuid.UUID | None:
    """The tenant of a stored payload: a suspended tenant's is dropped, not processed."""
    return session.scalar(
        select(InboundEvent.tenant_id).where(InboundEvent.id == uuid.UUID(args[0]))
    )


inbound_queue.set_enqueuer(enqueue_inbound)
tenant_gate.resolve_tenant_with(process_inbound.actor_name, tenant_of_inbound)


@dramatiq.actor(
    queue_name=queues.CHANNELS,
    # NOTE: a provider failing for now is retried with backoff for about an hour, then
    # dead-lettered; the GET still fetches the file itself meanwhile.
    max_retries=8,
    min_backoff=5_000,
    max_backoff=15 * 60_000,
    time_limit=int(media_prefetch.PREFETCH_TIMEOUT_SECONDS * 1000) + 60_000,
)
def prefetch_inbound_media(media_id: str) -> None:
    """Fetch and store one inbound file before anyone opens it; a repeat is a no-op."""
    outcome = media_prefetch.prefetch(uuid.UUID(media_id))
    log.debug("inbound media %s: %s", media_id, outcome)


def enqueue_media_prefetch(ids: Sequence[uuid.UUID]) -> None:
    for media_id in ids:
        prefetch_inbound_media.send(str(media_id))


media_prefetch.PREFETCH.set_enqueuer(enqueue_media_prefetch)


def tenant_of_media(session: Session, args: tuple) -> uuid.UUID | None:
    """The tenant of an inbound file: a suspended tenant's is not fetched."""
    return session.scalar(select(MediaFile.tenant_id).where(MediaFile.id == uuid.UUID(args[0])))


tenant_gate.resolve_tenant_with(prefetch_inbound_media.actor_name, tenant_of_media)

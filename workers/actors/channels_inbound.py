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

from shared.channels import inbound_queue, processing
from shared.db import session_scope
from shared.models import InboundEvent
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

"""Getting outbound messages to ``send_outbound``: the dispatch target, the enqueue, the sweeper.

- :func:`target` (registered by the worker module) runs in ``dispatch_event``'s
  transaction: for an outbound ``message.created`` whose message is ``queued`` it
  inserts the message's ``outbound_sends`` row (idempotent) and, after commit,
  hands the ids to the enqueuer (``send_outbound_batch`` jobs, one per batch).
- :func:`sweep` (a scheduler job) re-enqueues pending sends whose ``sweep_at``
  passed: a job lost with its broker message or its worker. Rows a worker is
  sending right now are locked and skipped.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.orm import Session

from shared import bulk_insert
from shared.after_commit_queue import AfterCommitQueue
from shared.config import get_settings
from shared.models import OutboxEvent, Tenant
from shared.models.outbound import OutboundSend

log = logging.getLogger(__name__)

TARGET_NAME = "channels_outbound"

#: ``[message_id, ...]`` -> ``send_outbound_batch`` messages, after commit.
QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue("omnistream.outbound_sends", "outbound sends")
set_enqueuer = QUEUE.set_enqueuer
enqueue = QUEUE.enqueue


def _sweep_interval() -> object:
    seconds = float(get_settings().outbound_sweep_after_seconds)
    return literal_column(f"interval '{seconds} seconds'")


def target(session: Session, events: Sequence[OutboxEvent]) -> None:
    """The dispatch target (``batch=True``): queued outbound messages get their send rows
    and their jobs, one statement per tenant."""
    by_tenant: dict[uuid.UUID, list[uuid.UUID]] = {}
    for event in events:
        data = event.data or {}
        if (
            event.type == "message.created"
            and data.get("direction") == "outbound"
            and data.get("status") == "queued"
        ):
            by_tenant.setdefault(event.tenant_id, []).append(uuid.UUID(str(data["id"])))
    for tenant_id, message_ids in by_tenant.items():
        queue_sends(session, tenant_id, message_ids)


def queue_sends(session: Session, tenant_id: uuid.UUID, message_ids: list[uuid.UUID]) -> None:
    """Give queued outbound messages their send rows (one statement; a message that has one
    keeps it) and hand the new ones to ``send_outbound_batch`` after commit.

    The dispatch target calls it for a batch's ``message.created``; a bulk sender (a campaign's
    batch) calls it in the transaction that wrote its messages, so their sends need not
    wait for the events' dispatch, whose target then finds the rows and does nothing.
    """
    if not message_ids:
        return
    rows = bulk_insert.insert_many(
        session,
        OutboundSend.__table__,
        [{"message_id": message_id, "tenant_id": tenant_id} for message_id in message_ids],
        computed={"sweep_at": "now() + CAST(:sweep_after AS interval)"},
        params={"sweep_after": f"{get_settings().outbound_sweep_after_seconds} seconds"},
        on_conflict="ON CONFLICT (message_id) DO NOTHING",
        returning="message_id",
    )
    inserted = [row.message_id for row in rows]
    if inserted:
        QUEUE.enqueue_after_commit(session, inserted)


def sweep(session: Session, *, batch: int = 500) -> int:
    """Re-enqueue pending sends whose ``sweep_at`` passed; push it out so they are not re-sent
    every run. Enqueued after commit.

    A send a worker holds is not due here: its claim pushed ``sweep_at`` past the
    claim's expiry, so only a claim that ran out (a killed worker) is re-driven. A
    suspended workspace's sends wait here until it is reactivated."""
    active = select(Tenant.id).where(Tenant.id == OutboundSend.tenant_id, Tenant.status == "active")
    due = (
        select(OutboundSend.message_id)
        .where(
            OutboundSend.status == "pending",
            OutboundSend.sweep_at <= func.now(),
            active.exists(),
        )
        .order_by(OutboundSend.sweep_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    ids = list(
        session.scalars(
            update(OutboundSend)
            .where(OutboundSend.message_id.in_(due))
            .values(sweep_at=func.now() + _sweep_interval())
            .returning(OutboundSend.message_id)
        )
    )
    if ids:
        log.warning("re-driving %d outbound send(s) whose job was lost", len(ids))
        QUEUE.enqueue_after_commit(session, ids)
    return len(ids)

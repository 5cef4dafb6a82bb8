"""Read receipts owed to the provider: recorded with the agent's read, sent by a job.

When an agent reads a WhatsApp, Messenger or Instagram conversation,
:func:`record` (called by :func:`shared.inbox.conversations.mark_read`, in its
transaction) writes a ``read_receipts`` row for the conversation's latest inbound
message and, after commit, enqueues ``mark_read_upstream(message_id)``. The row is the
durable record: a job lost with the broker or its worker is re-driven by :func:`sweep`
(a scheduler job). The row is keyed by the message, so reading the same conversation
again with nothing new writes nothing; email and api conversations have no receipts.

:mod:`shared.channels.receipt_sender` does the sending.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import dead_letters
from shared.after_commit_queue import AfterCommitQueue
from shared.config import get_settings
from shared.models import Conversation, Message
from shared.models.receipts import ReadReceipt

log = logging.getLogger(__name__)

#: Channels whose provider takes a read receipt.
RECEIPT_CHANNELS = frozenset({"whatsapp", "messenger", "instagram"})

#: ``[message_id, ...]`` -> ``mark_read_upstream`` messages, after commit.
QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue("omnistream.read_receipts", "read receipts")
set_enqueuer = QUEUE.set_enqueuer


def sweep_interval() -> object:
    """How long a pending receipt waits before the sweeper re-drives it: past any retry."""
    settings = get_settings()
    seconds = settings.outbound_sweep_after_seconds + settings.outbound_max_backoff_ms / 1000
    return literal_column(f"interval '{float(seconds)} seconds'")


# PERF: built once: the latest inbound message with a provider id (ix_messages_conversation).
_LATEST_INBOUND = (
    select(Message.id)
    .where(
        Message.tenant_id == bindparam("tenant_id"),
        Message.conversation_id == bindparam("conversation_id"),
        Message.direction == "inbound",
        Message.provider_message_id.is_not(None),
    )
    .order_by(Message.created_at.desc(), Message.id.desc())
    .limit(1)
)


def record(session: Session, conversation: Conversation) -> uuid.UUID | None:
    """Owe the provider a receipt for the conversation's latest inbound message.

    Returns the message id when a new receipt was recorded (and will be enqueued after
    commit), None when the channel has no receipts, nothing came in, or it is owed already.
    """
    if conversation.channel not in RECEIPT_CHANNELS:
        return None
    message_id = session.scalar(
        _LATEST_INBOUND,
        {"tenant_id": conversation.tenant_id, "conversation_id": conversation.id},
    )
    if message_id is None:
        return None
    inserted = session.scalar(
        insert(ReadReceipt)
        .values(
            message_id=message_id,
            tenant_id=conversation.tenant_id,
            sweep_at=func.now() + sweep_interval(),
        )
        .on_conflict_do_nothing(index_elements=["message_id"])
        .returning(ReadReceipt.message_id)
    )
    if inserted is not None:
        QUEUE.enqueue_after_commit(session, [inserted])
    return inserted


def sweep(session: Session, *, batch: int = 500) -> int:
    """Re-enqueue pending receipts whose ``sweep_at`` passed (their job was lost); push it out
    so they are not re-sent every run. Enqueued after commit."""
    due = (
        select(ReadReceipt.message_id)
        .where(ReadReceipt.status == "pending", ReadReceipt.sweep_at <= func.now())
        .order_by(ReadReceipt.sweep_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    ids = list(
        session.scalars(
            update(ReadReceipt)
            .where(ReadReceipt.message_id.in_(due))
            .values(sweep_at=func.now() + sweep_interval())
            .returning(ReadReceipt.message_id)
        )
    )
    if ids:
        log.warning("re-driving %d read receipt(s) whose job was lost", len(ids))
        QUEUE.enqueue_after_commit(session, ids)
    return len(ids)


def revive(
    session: Session, tenant_id: uuid.UUID | None, args: Sequence[Any], **_options: Any
) -> None:
    """Make a ``mark_read_upstream`` dead letter's receipt pending again, or 409 saying why.

    WHY: the job's last attempt failed the receipt, so the requeued job found it finished
    and told the provider nothing. A receipt is safe to send twice (the message is read
    either way): the receipt gets a fresh retry budget under its row lock, in the
    requeue's transaction, and a job of its own after commit, since the requeued one may
    run first and skip the locked row.
    """
    receipt = dead_letters.locked_row(
        session,
        ReadReceipt,
        tenant_id,
        dead_letters.row_id(args),
        key=ReadReceipt.message_id,
        gone=("receipt_gone", "The message and its receipt were deleted: there is nothing to send"),
    )
    if receipt.status == "sent":
        raise dead_letters.NotRequeueable(
            "receipt_sent", "The receipt was sent already: nothing is left to do"
        )
    if receipt.status != "failed":
        return
    receipt.status, receipt.attempts, receipt.finished_at = "pending", 0, None
    receipt.sweep_at = func.now() + sweep_interval()
    session.flush()
    QUEUE.enqueue_after_commit(session, [receipt.message_id])

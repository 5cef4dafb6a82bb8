"""Live counts: a recipient follows its message's delivery status, and notes the contact's reply.

:func:`on_status` is called by :func:`shared.channels.statuses.apply_status` when a
system message's status moved (the send's result and the provider's callbacks): one
indexed ``UPDATE`` by message id, a no-op for messages of no campaign;
:func:`on_sent_many` by the outbound engine's batched record of sends; :func:`on_requeued`
when a failed message is queued again (:mod:`shared.channels.send_revival`). :func:`target`
(a dispatch target) marks ``replied_at`` on the contact's recent campaign recipients
when an inbound message arrives.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from shared.db import probe_for_transaction
from shared.models import Campaign, CampaignRecipient, Contact, Conversation, Message, OutboxEvent

TARGET_NAME = "campaign_replies"

#: The statuses a recipient may leave for each new one (forward only, as messages).
_FROM = {
    "sent": ("queued",),
    "delivered": ("queued", "sent"),
    "read": ("queued", "sent", "delivered"),
    "failed": ("queued", "sent"),
}
#: A reply this long after the campaign's message is no longer counted as its reply.
REPLY_WINDOW = text("interval '7 days'")
#: The error of a campaign message its campaign's cancel stopped before the provider.
CANCELLED = "campaign_cancelled"
#: The recipients whose message the provider accepted: only these can have been answered
#: (a failed, cancelled or still queued message never reached the contact).
ANSWERABLE = ("sent", "delivered", "read")
#: The error of a campaign message whose contact opted out before it was sent.
OPTED_OUT = "contact_opted_out"


def on_status(session: Session, message: Message, status: str) -> None:
    previous = _FROM.get(status)
    if previous is None:
        return
    values: dict = {"status": status}
    if status == "failed" and message.error_code == CANCELLED:
        values = {"status": "cancelled"}  # never sent: counted with the cancelled ones
    elif status == "failed" and message.error_code == OPTED_OUT:
        values = {"status": "skipped", "error_code": "opted_out"}  # as the batch skips them
    elif status == "failed":
        values |= {"error_code": message.error_code, "error_message": message.error_message}
    session.execute(
        update(CampaignRecipient)
        .where(
            CampaignRecipient.message_id == message.id,
            CampaignRecipient.tenant_id == message.tenant_id,
            CampaignRecipient.status.in_(previous),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def on_requeued(session: Session, message: Message) -> None:
    """A failed campaign message queued again (an operator's revival of its dead send): its
    recipient is ``queued`` again, no longer counted failed, and follows the new send.

    WHY: the recipient stayed ``failed`` (statuses only move forward from ``queued``), so
    the campaign counted a message that went out as failed, never as sent. A recipient
    cancelled or skipped stays so: the claim fails such a send again for that reason.
    """
    if message.sender_type != "system":  # PERF: campaign messages are the system's
        return
    session.execute(
        update(CampaignRecipient)
        .where(
            CampaignRecipient.message_id == message.id,
            CampaignRecipient.tenant_id == message.tenant_id,
            CampaignRecipient.status == "failed",
        )
        .values(status="queued", error_code=None, error_message=None)
        .execution_options(synchronize_session=False)
    )


#: ``on_status("sent")`` for a batch: its campaign messages' recipients, one statement.
#: PERF: arrays, one statement text whatever the batch (see ``outbound._MARK_SENT``).
_SENT_MANY = text(
    """
    UPDATE campaign_recipients r SET status = 'sent'
      FROM unnest(CAST(:tenants AS uuid[]), CAST(:ids AS uuid[])) AS k(tenant_id, message_id)
     WHERE r.message_id = ANY(CAST(:ids AS uuid[]))
       AND r.tenant_id = k.tenant_id AND r.message_id = k.message_id
       AND r.status = 'queued'
    """
)


def on_sent_many(session: Session, messages: Sequence[Message]) -> None:
    """:func:`on_status` ``sent`` for a batch the outbound engine recorded in one statement
    (``messages``: rows or ORM objects)."""
    keys = [(m.tenant_id, m.id) for m in messages if m.sender_type == "system"]
    if not keys:
        return
    session.execute(_SENT_MANY, {"tenants": [t for t, _ in keys], "ids": [m for _, m in keys]})


def stopped_sends(session: Session, messages: Sequence[Message]) -> dict[uuid.UUID, str]:
    """The campaign messages among ``messages`` that must not be sent, each with why:
    :data:`CANCELLED` (its campaign was cancelled) or :data:`OPTED_OUT` (its contact
    opted out after the batch made it).

    Called by the outbound engine's claim, so a cancel or an opt-out stops the messages
    still waiting for a send (a backlog, a throttled account, retries), not only the
    recipients no batch reached yet; a send already at the provider goes out.
    PERF: campaign messages are system messages; a batch of replies costs no query.
    """
    keys = [m.id for m in messages if m.sender_type == "system"]
    if not keys:
        return {}
    rows = session.execute(
        select(CampaignRecipient.message_id, Campaign.status)
        .join(Campaign, Campaign.id == CampaignRecipient.campaign_id)
        .join(Contact, Contact.id == CampaignRecipient.contact_id)
        .where(
            CampaignRecipient.message_id.in_(keys),
            CampaignRecipient.tenant_id == Campaign.tenant_id,
            Contact.tenant_id == CampaignRecipient.tenant_id,
            or_(Campaign.status == "cancelled", Contact.opted_out_at.is_not(None)),
        )
    ).all()
    return {
        message_id: CANCELLED if status == "cancelled" else OPTED_OUT for message_id, status in rows
    }


def target(session: Session, event: OutboxEvent) -> None:
    """The dispatch target: an inbound message marks its contact's campaign messages replied.

    Only messages the provider accepted (:data:`ANSWERABLE`): a contact writing in after
    their message failed or was stopped did not answer it.
    """
    data = event.data or {}
    if event.type != "message.created" or data.get("direction") != "inbound":
        return
    conversation_id = data.get("conversation_id")
    if not conversation_id or not _awaits_replies(session, event.tenant_id):
        return
    contact = (
        select(Conversation.contact_id)
        .where(
            Conversation.id == uuid.UUID(str(conversation_id)),
            Conversation.tenant_id == event.tenant_id,
        )
        .scalar_subquery()
    )
    session.execute(
        update(CampaignRecipient)
        .where(
            CampaignRecipient.tenant_id == event.tenant_id,
            CampaignRecipient.contact_id == contact,
            CampaignRecipient.message_id.is_not(None),
            CampaignRecipient.replied_at.is_(None),
            CampaignRecipient.status.in_(ANSWERABLE),
            CampaignRecipient.processed_at > func.now() - REPLY_WINDOW,
            CampaignRecipient.processed_at < event.occurred_at,
        )
        .values(replied_at=event.occurred_at)
        .execution_options(synchronize_session=False)
    )


_AWAITS_REPLIES = text(
    "SELECT EXISTS (SELECT 1 FROM campaign_recipients WHERE tenant_id = :tenant_id"
    " AND message_id IS NOT NULL AND replied_at IS NULL)"
)


def _awaits_replies(session: Session, tenant_id: uuid.UUID) -> bool:
    """Whether any campaign message of the tenant still waits for its reply (once per batch).

    PERF: most tenants' inbound messages answer no campaign; one look at the partial
    index spares each of them its ``UPDATE``.
    """
    return probe_for_transaction(
        session, ("campaigns.awaits_replies", tenant_id), _AWAITS_REPLIES, {"tenant_id": tenant_id}
    )

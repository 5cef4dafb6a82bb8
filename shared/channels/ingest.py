"""Apply parsed inbound items: contacts, conversations, messages, media references, statuses.

One function per item kind, each run by :mod:`.processing` inside its own savepoint.
Everything is scoped to the tenant of the account the payload was addressed to.

- A message whose provider id is already stored for the tenant is skipped: processing
  a payload twice creates nothing new.
- The contact is upserted by (tenant, channel, external id) and locked, so two
  workers handling the same new contact's messages serialize on it.
- The conversation is the contact's latest open, pending or snoozed one on that account
  (a snoozed one is woken); a resolved one is never reused: a new conversation opens.
  Email follows its thread (In-Reply-To / References) instead, and a message starting a
  new thread starts a new conversation.
- Counters follow :func:`shared.inbox.messages.create_outbound_message`, plus the inbound
  ones: ``inbound_count``, ``last_inbound_at`` (conversation and contact; the WhatsApp
  24-hour window reads the contact's).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.channels import statuses
from shared.channels.items import InboundMessage, StatusReport, Watermark
from shared.context import Ctx
from shared.events import Actor, emit
from shared.inbox import states
from shared.models import Contact, Conversation, IntegrationAccount, MediaFile, Message
from shared.schemas.inbox import ContactView, ConversationView
from shared.schemas.messages import MessageView

PREVIEW_CHARS = 200
#: Conversations an inbound message may join (a resolved one never is).
ACTIVE = ("open", "pending", "snoozed")
#: Most outbound messages one Messenger watermark updates.
WATERMARK_BATCH = 200
#: ``media_files.provider_media_id`` of an email attachment: ``email:<inbound event id>:<n>``
#: (the bytes are part ``n`` of the stored MIME; see shared.channels.email.attachment_bytes).
EMAIL_MEDIA_PREFIX = "email:"


def apply_message(
    session: Session,
    account: IntegrationAccount,
    item: InboundMessage,
    *,
    inbound_event_id: uuid.UUID,
) -> str:
    """Store one inbound message (or echo); return ``created`` or ``duplicate``."""
    tenant_id = account.tenant_id
    contact = _upsert_contact(session, account, item)
    # NOTE: checked under the contact's lock: a concurrent job with the same message (a
    # re-batched retry) has committed it by the time we hold the lock.
    if _existing(session, tenant_id, item.provider_message_id) is not None:
        return "duplicate"
    conversation = _conversation_for(session, account, contact, item)
    if conversation is None:
        conversation = _open_conversation(session, account, contact, item)
    elif conversation.status == "snoozed":
        ctx = Ctx.system(tenant_id, actor=Actor("contact", contact.id))
        states.transition(session, ctx, conversation, "open")
    inbound = item.direction == "inbound"
    message = Message(
        tenant_id=tenant_id,
        conversation_id=conversation.id,
        channel=account.channel,
        direction=item.direction,
        sender_type="contact" if inbound else "user",
        sender_id=contact.id if inbound else None,
        content_type=item.content_type,
        body=item.body,
        attachments=_attachments(session, account, item, inbound_event_id),
        status="received" if inbound else "sent",
        provider_message_id=item.provider_message_id,
        metadata_=_metadata(item),
        created_at=func.clock_timestamp(),
        updated_at=func.clock_timestamp(),
    )
    session.add(message)
    session.flush()  # PERF: the INSERT's RETURNING brings created_at back: no refresh
    _count(session, conversation, message)
    actor = Actor("contact", contact.id) if inbound else Actor.system()
    emit(session, "message.created", MessageView.data(message), tenant_id=tenant_id, actor=actor)
    return "created"


def apply_status(session: Session, account: IntegrationAccount, item: StatusReport) -> str:
    """Move the tenant's message with this provider id forward; ``updated``, ``unchanged``
    or ``unknown`` (a status of a message sent by another system, or not stored yet)."""
    message = session.scalars(
        select(Message)
        .where(
            Message.tenant_id == account.tenant_id,
            Message.provider_message_id == item.provider_message_id,
            Message.direction == "outbound",
        )
        .with_for_update()
    ).one_or_none()
    if message is None:
        return "unknown"
    changed = statuses.apply_status(
        session,
        message,
        item.status,
        error_code=item.error_code,
        error_message=item.error_message,
        at=item.at,
    )
    return "updated" if changed else "unchanged"


def apply_watermark(session: Session, account: IntegrationAccount, item: Watermark) -> str:
    """Messenger read/delivery receipts: every outbound message to the contact up to ``at``."""
    contact_id = session.scalar(
        select(Contact.id).where(
            Contact.tenant_id == account.tenant_id,
            Contact.channel == account.channel,
            Contact.external_id == item.contact_external_id,
        )
    )
    if contact_id is None:
        return "unknown"
    conversations = select(Conversation.id).where(
        Conversation.tenant_id == account.tenant_id, Conversation.contact_id == contact_id
    )
    behind = [s for s, rank in statuses.RANK.items() if rank < statuses.RANK[item.status]]
    messages = session.scalars(
        select(Message)
        .where(
            Message.tenant_id == account.tenant_id,
            Message.conversation_id.in_(conversations.scalar_subquery()),
            Message.direction == "outbound",
            Message.status.in_([s for s in behind if s != "queued"]),
            Message.created_at <= item.at,
        )
        .order_by(Message.created_at.desc())
        .limit(WATERMARK_BATCH)
        .with_for_update()
    ).all()
    changed = sum(statuses.apply_status(session, m, item.status, at=item.at) for m in messages)
    return "updated" if changed else "unchanged"


# ------------------------------------------------------------------ helpers


def _existing(session: Session, tenant_id: uuid.UUID, provider_message_id: str) -> uuid.UUID | None:
    return session.scalar(
        select(Message.id).where(
            Message.tenant_id == tenant_id, Message.provider_message_id == provider_message_id
        )
    )


def _upsert_contact(session: Session, account: IntegrationAccount, item: InboundMessage) -> Contact:
    """The contact, created (contact.created) if new, locked for this transaction.

    PERF: one statement: the upsert takes the row lock, fills a missing name and moves
    ``last_inbound_at`` (the provider's time when earlier than ours, so a late re-drive
    never reopens the WhatsApp window; never later than our clock). ``xmax = 0`` tells
    an inserted row from an updated one.
    """
    inbound = item.direction == "inbound"
    sent = func.least(func.now(), item.sent_at) if item.sent_at else func.now()
    stmt = insert(Contact).values(
        id=uuid.uuid4(),
        tenant_id=account.tenant_id,
        channel=account.channel,
        external_id=item.contact_external_id[:255],
        name=(item.contact_name or "")[:200] or None,
        phone=item.contact_phone,
        email=item.contact_email,
        last_inbound_at=sent if inbound else None,
    )
    last_inbound = (
        func.greatest(
            func.coalesce(Contact.last_inbound_at, stmt.excluded.last_inbound_at),
            stmt.excluded.last_inbound_at,
        )
        if inbound
        else Contact.last_inbound_at
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "channel", "external_id"],
        set_={
            "name": func.coalesce(Contact.name, stmt.excluded.name),
            "last_inbound_at": last_inbound,
            "updated_at": func.now(),
        },
    ).returning(Contact, literal_column("(xmax = 0)").label("inserted"))
    contact, inserted = session.execute(stmt, execution_options={"populate_existing": True}).one()
    if inserted:
        emit(
            session,
            "contact.created",
            ContactView.data(contact),
            tenant_id=account.tenant_id,
            actor=Actor("contact", contact.id),
        )
    return contact


def _conversation_for(
    session: Session, account: IntegrationAccount, contact: Contact, item: InboundMessage
) -> Conversation | None:
    base = select(Conversation).where(
        Conversation.tenant_id == account.tenant_id,
        Conversation.contact_id == contact.id,
        Conversation.status.in_(ACTIVE),
    )
    if account.channel == "email":
        if not item.thread_refs:
            return None
        thread = select(Message.conversation_id).where(
            Message.tenant_id == account.tenant_id,
            Message.provider_message_id.in_(item.thread_refs),
        )
        base = base.where(Conversation.id.in_(thread.scalar_subquery()))
    else:
        base = base.where(
            (Conversation.integration_account_id == account.id)
            | Conversation.integration_account_id.is_(None)
        )
    query = base.order_by(Conversation.created_at.desc()).limit(1).with_for_update()
    return session.scalars(query).one_or_none()


def _open_conversation(
    session: Session, account: IntegrationAccount, contact: Contact, item: InboundMessage
) -> Conversation:
    conversation = Conversation(
        tenant_id=account.tenant_id,
        contact_id=contact.id,
        channel=account.channel,
        integration_account_id=account.id,
        status="open",
        subject=(item.subject or "")[:500] or None,
    )
    session.add(conversation)
    session.flush()
    session.refresh(conversation)
    emit(
        session,
        "conversation.created",
        ConversationView.data(conversation),
        tenant_id=account.tenant_id,
        actor=Actor("contact", contact.id),
    )
    return conversation


def _attachments(
    session: Session,
    account: IntegrationAccount,
    item: InboundMessage,
    inbound_event_id: uuid.UUID,
) -> list[dict[str, Any]]:
    """One ``media_files`` row per attachment (fetched later); the message's references."""
    refs = []
    for attachment in item.attachments:
        provider_id = attachment.provider_media_id
        if account.channel == "email":
            provider_id = f"{EMAIL_MEDIA_PREFIX}{inbound_event_id}:{provider_id}"
        media = MediaFile(
            tenant_id=account.tenant_id,
            source="inbound",
            channel=account.channel,
            account_id=account.id,
            provider_media_id=provider_id,
            mime_type=attachment.mime_type,
            filename=(attachment.filename or "")[:255] or None,
            size=attachment.size,
            sha256=attachment.sha256,
        )
        session.add(media)
        session.flush()
        ref = {
            "media_id": str(media.id),
            "type": attachment.type,
            "mime_type": attachment.mime_type,
            "filename": media.filename,
            "caption": attachment.caption,
            "size": attachment.size,
        }
        refs.append({k: v for k, v in ref.items() if v is not None} | attachment.extra)
    return refs


def _metadata(item: InboundMessage) -> dict[str, Any]:
    metadata = dict(item.metadata)
    if item.sent_at is not None:
        metadata["provider_timestamp"] = item.sent_at.isoformat()
    if item.direction == "outbound":
        metadata["echo"] = True
    return metadata


def _preview(message: Message) -> str:
    if message.body:
        return message.body[:PREVIEW_CHARS]
    return f"[{message.content_type}]"


def _count(session: Session, conversation: Conversation, message: Message) -> None:
    """Conversation counters in one atomic UPDATE (the contact's moved in its upsert)."""
    values: dict[str, Any] = {
        "message_count": Conversation.message_count + 1,
        "last_message_at": message.created_at,
        "last_message_preview": _preview(message),
        "last_activity_at": message.created_at,
        "updated_at": func.now(),
    }
    if message.direction == "inbound":
        values["inbound_count"] = Conversation.inbound_count + 1
        values["last_inbound_at"] = message.created_at
    session.execute(
        update(Conversation)
        .where(Conversation.id == conversation.id, Conversation.tenant_id == conversation.tenant_id)
        .values(**values)
    )
    session.expire(conversation)

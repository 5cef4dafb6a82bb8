"""Apply parsed inbound items: contacts, conversations, messages, media references, statuses.

One function per item kind, each run by :mod:`.processing` inside its own savepoint.
Everything is scoped to the tenant of the account the payload was addressed to.

- A message whose provider id is already stored for the tenant is skipped: processing
  a payload twice creates nothing new.
- The contact is upserted by (tenant, channel, external id) and locked, so two
  workers handling the same new contact's messages serialize on it; on the api channel
  by the account too (:func:`contact_scope`).
- The conversation is the contact's latest open, pending or snoozed one on that account
  (a snoozed one is woken); a resolved one is never reused: a new conversation opens.
  The api channel may name the conversation instead; a named one is woken or reopened.
  Email follows its thread (In-Reply-To / References) instead, and a message starting a
  new thread starts a new conversation.
- Counters follow :func:`shared.inbox.messages.create_outbound_message`, plus the inbound
  ones: ``inbound_count``, ``last_inbound_at`` (conversation and contact; the WhatsApp
  24-hour window reads the conversations' on the number written to).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    bindparam,
    case,
    func,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.channels import early_statuses, media_prefetch, statuses
from shared.channels.api_account import CHANNEL as API_CHANNEL
from shared.channels.items import InboundMessage, StatusReport, Watermark
from shared.channels.media_sniff import well_formed
from shared.context import Ctx
from shared.csat import replies as csat_replies
from shared.csat import surveys as csat_surveys
from shared.events import Actor, emit
from shared.inbox import conversation_counts, states
from shared.models import Contact, Conversation, IntegrationAccount, MediaFile, Message
from shared.schemas.inbox import ContactView, ConversationView
from shared.schemas.messages import MessageView
from shared.timekeeping import sla

PREVIEW_CHARS = 200
#: Conversations an inbound message may join (a resolved one never is).
ACTIVE = ("open", "pending", "snoozed")
#: Most outbound messages one Messenger watermark updates.
WATERMARK_BATCH = 200
#: Text kept as an inbound message's body, whatever the channel (the whole payload stays
#: in its inbound event). WHY: the body's search vector must fit PostgreSQL's 1 MB; some
#: 700 KB of distinct words did not, and the insert failed as a program limit, which the
#: job retried as if the database were down until the message was lost.
MAX_BODY_CHARS = 128 * 1024
#: ``media_files.provider_media_id`` of an email attachment: ``email:<inbound event id>:<n>``
#: (the bytes are part ``n`` of the stored MIME; see shared.channels.email.attachment_bytes).
EMAIL_MEDIA_PREFIX = "email:"


def apply_message(
    session: Session,
    account: IntegrationAccount,
    item: InboundMessage,
    *,
    inbound_event_id: uuid.UUID | None = None,
) -> str:
    """Store one inbound message (or echo); return ``created`` or ``duplicate``.

    ``inbound_event_id`` is the stored payload's (email attachments point into it).
    """
    tenant_id = account.tenant_id
    contact = _upsert_contact(session, account, item)
    # NOTE: checked under the contact's lock: a concurrent job with the same message (a
    # re-batched retry) has committed it by the time we hold the lock.
    if _existing(session, tenant_id, item.provider_message_id) is not None:
        return "duplicate"
    inbound = item.direction == "inbound"
    # A tap on a survey's rating joins the surveyed conversation as it is (resolved, most
    # often): a rating is an answer, not a new question.
    survey_answer = (
        csat_replies.answered(session, account, contact.id, item.metadata) if inbound else None
    )
    conversation = (
        survey_answer.conversation
        if survey_answer
        else _conversation_for(session, account, contact, item)
    )
    if conversation is None:
        conversation = _open_conversation(session, account, contact, item)
    elif survey_answer is None and conversation.status in ("snoozed", "resolved"):
        # resolved: only a named one
        ctx = Ctx.system(tenant_id, actor=Actor("contact", contact.id))
        states.transition(session, ctx, conversation, "open")
    message = Message(
        tenant_id=tenant_id,
        conversation_id=conversation.id,
        channel=account.channel,
        direction=item.direction,
        sender_type="contact" if inbound else "user",
        sender_id=contact.id if inbound else None,
        content_type=item.content_type,
        body=_kept_body(item.body),
        attachments=_attachments(session, account, item, inbound_event_id),
        status="received" if inbound else "sent",
        provider_message_id=item.provider_message_id,
        metadata_=_metadata(item),
        created_at=func.clock_timestamp(),
        updated_at=func.clock_timestamp(),
    )
    session.add(message)
    session.flush()  # PERF: the INSERT's RETURNING brings created_at back: no refresh
    _count(session, conversation, message, item.sent_at)
    if survey_answer is not None:
        csat_surveys.rate_by_reply(session, survey_answer, contact.id)
    elif inbound:
        sla.customer_wrote(session, tenant_id, conversation.id, message.created_at)
    actor = Actor("contact", contact.id) if inbound else Actor.system()
    emit(session, "message.created", MessageView.data(message), tenant_id=tenant_id, actor=actor)
    return "created"


_STATUS_TARGET = (
    select(Message)
    .where(
        Message.tenant_id == bindparam("tenant_id"),
        Message.provider_message_id == bindparam("provider_message_id"),
        Message.direction == "outbound",
    )
    .with_for_update()
)


def apply_status(session: Session, account: IntegrationAccount, item: StatusReport) -> str:
    """Move the tenant's message with this provider id forward; ``updated``, ``unchanged``,
    ``deferred`` (not stored yet: kept until the send records the id, see
    :mod:`.early_statuses`) or ``unknown`` (a channel without early statuses)."""
    params = {"tenant_id": account.tenant_id, "provider_message_id": item.provider_message_id}
    message = session.scalars(_STATUS_TARGET, params).one_or_none()
    if message is None:
        if account.channel not in early_statuses.CHANNELS:
            return "unknown"
        # The send may be committing right now: look again under the lock it takes too.
        early_statuses.lock(session, account.tenant_id, item.provider_message_id)
        message = session.scalars(_STATUS_TARGET, params).one_or_none()
        if message is None:
            early_statuses.park(session, account.tenant_id, item)
            return "deferred"
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
            Contact.integration_account_id.is_not_distinct_from(contact_scope(account)),
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


# PERF: the hot statements are built once, with bind parameters: building a statement
# (coercions, cache keys of fresh literals) cost more CPU than running it.
_EXISTING = select(Message.id).where(
    Message.tenant_id == bindparam("tenant_id"),
    Message.provider_message_id == bindparam("provider_message_id"),
)


def _existing(session: Session, tenant_id: uuid.UUID, provider_message_id: str) -> uuid.UUID | None:
    return session.scalar(
        _EXISTING, {"tenant_id": tenant_id, "provider_message_id": provider_message_id}
    )


def find_message(
    session: Session, tenant_id: uuid.UUID, provider_message_id: str
) -> Message | None:
    """The tenant's message with this provider id (what :func:`apply_message` dedupes on)."""
    message_id = _existing(session, tenant_id, provider_message_id)
    return None if message_id is None else session.get(Message, message_id)


def _build_contact_upsert():
    """The upsert of :func:`_upsert_contact`, for inbound messages and echoes alike.

    ``last_inbound_at``: the provider's time when earlier than ours (a late re-drive
    never reopens the WhatsApp window; never later than our clock), only for inbound
    messages; an echo binds ``inbound`` false, so the excluded value is null and
    ``greatest`` (which ignores nulls) keeps the stored one.
    """
    sent = func.least(
        func.now(), func.coalesce(bindparam("sent_at", type_=DateTime(timezone=True)), func.now())
    )
    stmt = insert(Contact).values(
        id=bindparam("id"),
        tenant_id=bindparam("tenant_id"),
        channel=bindparam("channel"),
        integration_account_id=bindparam("integration_account_id"),
        external_id=bindparam("external_id"),
        name=bindparam("name"),
        phone=bindparam("phone"),
        email=bindparam("email"),
        last_inbound_at=case((bindparam("inbound", type_=Boolean), sent), else_=null()),
    )
    return stmt.on_conflict_do_update(
        index_elements=["tenant_id", "channel", "integration_account_id", "external_id"],
        set_={
            "name": func.coalesce(Contact.name, stmt.excluded.name),
            "last_inbound_at": func.greatest(
                func.coalesce(Contact.last_inbound_at, stmt.excluded.last_inbound_at),
                stmt.excluded.last_inbound_at,
            ),
            "updated_at": func.now(),
        },
    ).returning(Contact, literal_column("(xmax = 0)").label("inserted"))


_CONTACT_UPSERT = _build_contact_upsert()


def _upsert_contact(session: Session, account: IntegrationAccount, item: InboundMessage) -> Contact:
    """The contact, created (contact.created) if new, locked for this transaction.

    PERF: one statement: the upsert takes the row lock, fills a missing name and moves
    ``last_inbound_at``. ``xmax = 0`` tells an inserted row from an updated one.
    """
    contact, _inserted = upsert_contact(
        session,
        account,
        item.contact_external_id,
        name=item.contact_name,
        phone=item.contact_phone,
        email=item.contact_email,
        inbound_at=item.sent_at,
        inbound=item.direction == "inbound",
    )
    return contact


def _fitting(value: str | None, column: str) -> str | None:
    """``value`` if the contact's ``column`` holds it, else None.

    A sender's address or number is the sender's to make up: one past the column (a
    300-character From) failed the whole insert, and the message was lost. The contact is
    still found by its ``external_id``; only that detail is left out.
    """
    if value is None or len(value) > Contact.__table__.c[column].type.length:
        return None
    return value


def contact_scope(account: IntegrationAccount) -> uuid.UUID | None:
    """The account a contact's external id belongs to: the api account itself, else none.

    WHY: an api ``source_id`` is an id in the tenant's system behind that account, and two
    of its systems each have a "42"; a phone number, a page-scoped id or an address is
    the same person whichever of the tenant's accounts it writes to.
    """
    return account.id if account.channel == API_CHANNEL else None


def upsert_contact(
    session: Session,
    account: IntegrationAccount,
    external_id: str,
    *,
    name: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    inbound_at: dt.datetime | None = None,
    inbound: bool = False,
) -> tuple[Contact, bool]:
    """The account's contact ``external_id``, created (contact.created) if new, locked;
    and whether it was created.

    ``inbound``: a message from the contact arrives now (or at ``inbound_at``), so
    ``last_inbound_at`` moves; the api channel's explicit contact creation passes False.
    """
    params = {
        "id": uuid.uuid4(),
        "tenant_id": account.tenant_id,
        "channel": account.channel,
        "integration_account_id": contact_scope(account),
        "external_id": external_id[:255],
        "name": (name or "")[:200] or None,
        "phone": _fitting(phone, "phone"),
        "email": _fitting(email, "email"),
        "sent_at": inbound_at,
        "inbound": inbound,
    }
    contact, inserted = session.execute(
        _CONTACT_UPSERT, params, execution_options={"populate_existing": True}
    ).one()
    if inserted:
        emit(
            session,
            "contact.created",
            ContactView.data(contact),
            tenant_id=account.tenant_id,
            actor=Actor("contact", contact.id),
        )
    return contact, bool(inserted)


def _active_conversations():
    return select(Conversation).where(
        Conversation.tenant_id == bindparam("tenant_id"),
        Conversation.contact_id == bindparam("contact_id"),
        Conversation.status.in_(ACTIVE),
    )


# NOTE: FOR NO KEY UPDATE, not FOR UPDATE: messages, SLA clocks and breaches reference
# the conversation, and each insert of one takes FOR KEY SHARE on it, which FOR UPDATE
# conflicts with. An ingest holding the conversation and then waiting for its SLA clock
# deadlocked with check_sla holding the clock and inserting its breach. Ingest never
# changes the id, and deleters (FOR UPDATE) are still kept out.
def _latest_locked(query):
    return query.order_by(Conversation.created_at.desc()).limit(1).with_for_update(key_share=True)


#: Messaging channels: the contact's latest active conversation on the account (or on none).
_ACCOUNT_CONVERSATION = _latest_locked(
    _active_conversations().where(
        (Conversation.integration_account_id == bindparam("account_id"))
        | Conversation.integration_account_id.is_(None)
    )
)
#: Email: the contact's latest active conversation holding a message the email answers.
_THREAD_CONVERSATION = _latest_locked(
    _active_conversations().where(
        Conversation.id.in_(
            select(Message.conversation_id)
            .where(
                Message.tenant_id == bindparam("tenant_id"),
                Message.provider_message_id.in_(bindparam("refs", expanding=True)),
            )
            .scalar_subquery()
        )
    )
)


#: The api channel: the conversation the sender named, whatever its status.
_NAMED_CONVERSATION = (
    select(Conversation)
    .where(
        Conversation.tenant_id == bindparam("tenant_id"),
        Conversation.contact_id == bindparam("contact_id"),
        Conversation.id == bindparam("id"),
    )
    .with_for_update(key_share=True)  # NOTE: as _latest_locked, for the same reason
)


def _conversation_for(
    session: Session, account: IntegrationAccount, contact: Contact, item: InboundMessage
) -> Conversation | None:
    params: dict[str, Any] = {"tenant_id": account.tenant_id, "contact_id": contact.id}
    if item.conversation_id is not None:
        query, params["id"] = _NAMED_CONVERSATION, item.conversation_id
    elif account.channel == "email":
        if not item.thread_refs:
            return None
        query, params["refs"] = _THREAD_CONVERSATION, list(item.thread_refs)
    else:
        query, params["account_id"] = _ACCOUNT_CONVERSATION, account.id
    return session.scalars(query, params).one_or_none()


def _open_conversation(
    session: Session, account: IntegrationAccount, contact: Contact, item: InboundMessage
) -> Conversation:
    return open_conversation(session, account, contact, subject=item.subject)


def open_conversation(
    session: Session, account: IntegrationAccount, contact: Contact, *, subject: str | None = None
) -> Conversation:
    """A new open conversation of ``contact`` on ``account``; emits conversation.created."""
    conversation = Conversation(
        tenant_id=account.tenant_id,
        contact_id=contact.id,
        channel=account.channel,
        integration_account_id=account.id,
        status="open",
        subject=(subject or "")[:500] or None,
    )
    session.add(conversation)
    session.flush()
    session.refresh(conversation)
    sla.attach(session, conversation, now=conversation.created_at)
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
    media_ids = []
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
            mime_type=_media_type(attachment.mime_type),
            filename=(attachment.filename or "")[:255] or None,
            size=attachment.size,
            sha256=attachment.sha256,
        )
        session.add(media)
        session.flush()
        media_ids.append(media.id)
        ref = {
            "media_id": str(media.id),
            "type": attachment.type,
            "mime_type": media.mime_type,
            "filename": media.filename,
            "caption": attachment.caption,
            "size": attachment.size,
        }
        refs.append({k: v for k, v in ref.items() if v is not None} | attachment.extra)
    media_prefetch.owed(session, media_ids)
    return refs + item.stored_attachments


def _media_type(value: str | None) -> str | None:
    """The declared type of an inbound file, or ``application/octet-stream`` when the
    column cannot hold it or no header could carry it (:func:`media_sniff.well_formed`).

    WHY: a sender writes an email part's Content-Type; one past the column failed the
    insert and the whole message was lost. The bytes are sniffed again when fetched.
    """
    if value is None:
        return None
    if len(value) > MediaFile.__table__.c.mime_type.type.length or not well_formed(value):
        return "application/octet-stream"
    return value


def _kept_body(body: Any) -> Any:
    """The body stored: text cut at :data:`MAX_BODY_CHARS` (anything else is as given)."""
    return body[:MAX_BODY_CHARS] if isinstance(body, str) and len(body) > MAX_BODY_CHARS else body


def _metadata(item: InboundMessage) -> dict[str, Any]:
    metadata = dict(item.metadata)
    if _kept_body(item.body) is not item.body:
        metadata["body_truncated"] = True
    if item.sent_at is not None:
        metadata["provider_timestamp"] = item.sent_at.isoformat()
    if item.direction == "outbound":
        metadata["echo"] = True
    return metadata


def _preview(message: Message) -> str:
    if message.body:
        return message.body[:PREVIEW_CHARS]
    return f"[{message.content_type}]"


def _build_count(inbound: bool):
    """Core, not ORM: no session synchronization to work out; the caller expires the object."""
    table = Conversation.__table__
    at = bindparam("at", type_=DateTime(timezone=True))
    values: dict[str, Any] = {
        "message_count": table.c.message_count + 1,
        **conversation_counts.last_message_values(table, at, bindparam("preview")),
        "updated_at": func.now(),
    }
    if inbound:
        values["inbound_count"] = table.c.inbound_count + 1
        # As the contact's (_build_contact_upsert): the provider's time when earlier than
        # ours, never moved back, so a late re-drive never reopens the WhatsApp window.
        sent_at = bindparam("sent_at", type_=DateTime(timezone=True))
        wrote = func.least(at, func.coalesce(sent_at, at))
        values["last_inbound_at"] = func.greatest(
            func.coalesce(table.c.last_inbound_at, wrote), wrote
        )
    return (
        update(table)
        .where(table.c.id == bindparam("conversation_id"), table.c.tenant_id == bindparam("tid"))
        .values(**values)
    )


#: The counters' UPDATE, by whether the message is inbound.
_COUNT = {True: _build_count(True), False: _build_count(False)}


def _count(
    session: Session, conversation: Conversation, message: Message, sent_at: dt.datetime | None
) -> None:
    """Conversation counters in one atomic UPDATE (the contact's moved in its upsert);
    ``sent_at``: the provider's time of an inbound message, if it gave one."""
    inbound = message.direction == "inbound"
    params = {
        "at": message.created_at,
        "preview": _preview(message),
        "conversation_id": conversation.id,
        "tid": conversation.tenant_id,
    }
    if inbound:
        params["sent_at"] = sent_at
    session.execute(_COUNT[inbound], params)
    session.expire(conversation)

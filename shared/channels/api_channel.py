"""The api channel's inbound side: a tenant's own system posts contacts, conversations,
messages and delivery statuses into one of its ``api`` accounts over the authenticated API.

Everything goes through the functions every channel's inbound messages use
(:mod:`.ingest`, :mod:`.statuses`), synchronously in the request's transaction, so
the rows and events are the same: contact.created, conversation.created,
message.created (inbound, so automation and outgoing webhooks see it),
message.status_updated. The caller's ids:

- ``source_id``: its id for the contact (the contact's ``external_id`` on the account);
- ``external_message_id``: its id for a message; a retry with the same id returns the
  stored message and creates nothing (see :func:`post_message`).

Every call needs ``integrations.manage``; another tenant's account, or an account of
another channel, is 404; a disabled account is 409 ``account_disabled``, an account of a
switched-off api channel (its integration disabled) 409 ``channel_disabled``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import activity, web_threads
from shared.channels import accounts, api_account, api_callback, choices, ingest, statuses
from shared.channels import attachments as channel_attachments
from shared.channels.items import InboundMessage
from shared.context import Ctx
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.inbox import contacts as inbox_contacts
from shared.models import Contact, Conversation, IntegrationAccount, Message
from shared.schemas.inbox import ContactView, ConversationView
from shared.schemas.messages import MessageView
from shared.webhooks import catalogue
from shared.webhooks.views import AttemptView

PERMISSION = accounts.PERMISSION
#: Statuses the caller may report for an outbound message (``sent`` is ours to set).
REPORTABLE_STATUSES = ("delivered", "read", "failed")


@dataclass(frozen=True, slots=True)
class ContactIdentity:
    """Who the contact is in the caller's system; ``None`` fields are left as stored."""

    source_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class Posted:
    """What :func:`post_message` stored (or found): ``created`` False for a retry."""

    message: Message
    created: bool


def api_account_of(
    session: Session,
    ctx: Ctx,
    account_id: uuid.UUID,
    *,
    active: bool = True,
    for_update: bool = False,
) -> IntegrationAccount:
    """The caller's api account ``account_id`` (locked ``for_update``): 404 if it is none,
    409 if switched off."""
    ctx.require(PERMISSION)
    account = accounts.get_account(session, ctx, account_id, for_update=for_update)
    if account.channel != api_account.CHANNEL:
        raise NotFound("Not an api-channel integration account")
    off = accounts.switched_off(account) if active else None
    if off is not None:
        raise accounts.SwitchedOffAccount(account, off, named=True)
    return account


# ------------------------------------------------------------------ contacts, conversations


def upsert_contact(
    session: Session, ctx: Ctx, account_id: uuid.UUID, identity: ContactIdentity
) -> tuple[Contact, bool]:
    """Create the contact, or update the fields sent; return it and whether it is new."""
    account = api_account_of(session, ctx, account_id)
    contact, created = _contact(session, ctx, account, identity)
    if created:
        _log_created(session, ctx, "contact", contact.id, ContactView.data(contact))
    return contact, created


def open_conversation(
    session: Session,
    ctx: Ctx,
    account_id: uuid.UUID,
    identity: ContactIdentity,
    *,
    subject: str | None = None,
) -> Conversation:
    """A new open conversation with the contact (created if new), even if one is open."""
    account = api_account_of(session, ctx, account_id)
    contact, _ = _contact(session, ctx, account, identity)
    conversation = ingest.open_conversation(session, account, contact, subject=subject)
    data = ConversationView.data(conversation)
    _log_created(session, ctx, "conversation", conversation.id, data)
    return conversation


def _log_created(
    session: Session, ctx: Ctx, entity_type: str, entity_id: uuid.UUID, data: dict[str, Any]
) -> None:
    """The activity row of what the tenant's system created (API.md: every write has one)."""
    activity.record(session, ctx, f"{entity_type}.created", entity_type, entity_id, after=data)


def _contact(
    session: Session, ctx: Ctx, account: IntegrationAccount, identity: ContactIdentity
) -> tuple[Contact, bool]:
    fields = {"name": identity.name, "email": identity.email, "phone": identity.phone}
    contact, created = ingest.upsert_contact(session, account, identity.source_id, **fields)
    _update_contact(session, ctx, contact, identity)
    return contact, created


def _update_contact(
    session: Session, ctx: Ctx, contact: Contact, identity: ContactIdentity
) -> Contact:
    """The caller's system is the contact's source of truth: fields it sends replace ours."""
    sent = {"name": identity.name, "email": identity.email, "phone": identity.phone}
    changes = {k: v for k, v in sent.items() if v is not None and getattr(contact, k) != v}
    if not changes:
        return contact
    return inbox_contacts.update_contact(session, ctx, contact.id, changes)


# ------------------------------------------------------------------ messages


def post_message(
    session: Session,
    ctx: Ctx,
    account_id: uuid.UUID,
    *,
    contact: ContactIdentity | None = None,
    conversation_id: uuid.UUID | None = None,
    content: str | None = None,
    attachments: list[uuid.UUID] | None = None,
    external_message_id: str | None = None,
    subject: str | None = None,
    choice: str | None = None,
) -> Posted:
    """Store a message from the contact, as a provider's inbound message would be.

    It joins ``conversation_id`` when given (one of this account's; a resolved one is
    reopened), else the contact's latest active conversation on the account, else a
    new one. ``attachments`` are the tenant's uploaded media ids (``POST /api/media``).
    ``choice`` names the reply choice picked (see :mod:`.choices`); a CSAT rating's joins
    the surveyed conversation instead and rates it.
    """
    account = api_account_of(session, ctx, account_id)
    if content is None and not attachments:
        raise ValidationFailed.field("content", "send content, attachments or both")
    own_id = external_message_id or uuid.uuid4().hex
    provider_id = api_callback.provider_id(account, "inbound", own_id)
    existing = ingest.find_message(session, account.tenant_id, provider_id)
    if existing is not None:
        return Posted(existing, created=False)
    source_id = _source_id(session, account, contact, conversation_id)
    files = channel_attachments.resolve(
        session, ctx, account.channel, attachments or [], has_body=content is not None
    )
    item = InboundMessage(
        provider_message_id=provider_id,
        contact_external_id=source_id,
        content_type=files[0]["type"] if files and content is None else "text",
        body=content,
        contact_name=contact.name if contact else None,
        contact_phone=contact.phone if contact else None,
        contact_email=contact.email if contact else None,
        subject=subject,
        conversation_id=conversation_id,
        stored_attachments=files,
        metadata=_metadata(external_message_id, choice),
    )
    outcome = ingest.apply_message(session, account, item)
    message = ingest.find_message(session, account.tenant_id, provider_id)
    if message is None:  # pragma: no cover - apply_message stored or found it
        raise RuntimeError(f"message {provider_id} not stored")
    if contact is not None:
        stored = session.get(Contact, message.sender_id)
        if stored is not None:
            _update_contact(session, ctx, stored, contact)
    created = outcome == "created"
    if created:
        _log_created(session, ctx, "message", message.id, MessageView.data(message))
    return Posted(message, created=created)


def _metadata(external_message_id: str | None, choice: str | None) -> dict[str, str]:
    metadata = {"external_message_id": external_message_id, choices.API_KEY: choice}
    return {key: value for key, value in metadata.items() if value is not None}


def _source_id(
    session: Session,
    account: IntegrationAccount,
    contact: ContactIdentity | None,
    conversation_id: uuid.UUID | None,
) -> str:
    """The contact's source id: the one sent, or the named conversation's contact's."""
    if conversation_id is None:
        if contact is None:
            raise ValidationFailed.field("contact", "required unless conversation_id is given")
        return contact.source_id
    found = session.scalar(
        select(Contact.external_id)
        .join(
            Conversation,
            (Conversation.contact_id == Contact.id) & (Conversation.tenant_id == Contact.tenant_id),
        )
        .where(
            Conversation.id == conversation_id,
            Conversation.tenant_id == account.tenant_id,
            Conversation.integration_account_id == account.id,
        )
    )
    if found is None:
        raise ValidationFailed.field("conversation_id", "no such conversation on this account")
    if contact is not None and contact.source_id != found:
        raise ValidationFailed.field(
            "contact.source_id", "is not the contact of the conversation named"
        )
    return found


# ------------------------------------------------------------------ statuses, secret, test


def report_status(
    session: Session,
    ctx: Ctx,
    account_id: uuid.UUID,
    message_id: uuid.UUID,
    status: str,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
    at: dt.datetime | None = None,
) -> Message:
    """Move an outbound message of the account forward (never back; see :mod:`.statuses`)."""
    account = api_account_of(session, ctx, account_id)
    if status not in REPORTABLE_STATUSES:
        raise ValidationFailed.field("status", f"one of {', '.join(REPORTABLE_STATUSES)}")
    message = session.scalars(
        select(Message)
        .join(
            Conversation,
            (Conversation.id == Message.conversation_id)
            & (Conversation.tenant_id == Message.tenant_id),
        )
        .where(
            Message.id == message_id,
            Message.tenant_id == account.tenant_id,
            Message.direction == "outbound",
            Conversation.integration_account_id == account.id,
        )
        .with_for_update(of=Message)
    ).one_or_none()
    if message is None:
        raise NotFound("No outbound message with this id on this account")
    previous = message.status
    changed = statuses.apply_status(
        session,
        message,
        status,
        error_code=(error_code or "reported")[:64] if status == "failed" else None,
        error_message=error_message if status == "failed" else None,
        at=at,
        actor=ctx.actor,
    )
    if changed:
        activity.record(
            session,
            ctx,
            "message.status_updated",
            "message",
            message.id,
            before={"status": previous},
            after={"status": message.status},
        )
    return message


def rotate_secret(
    session: Session, ctx: Ctx, account_id: uuid.UUID
) -> tuple[IntegrationAccount, str, dt.datetime | None]:
    """A new signing secret (returned once); the old one signs too for a day."""
    # NOTE: locked as it is read: re-read after (session.refresh), an account whose
    # disconnection committed meanwhile raised there (a 500) instead of this 404.
    account = api_account_of(session, ctx, account_id, active=False, for_update=True)
    now = dt.datetime.now(dt.UTC)
    credentials = api_account.rotated(accounts.decrypt_credentials(account), now)
    account.credentials_encrypted = accounts.encrypt_credentials(credentials)
    session.flush()
    expires = credentials.get(api_account.PREVIOUS_EXPIRES_KEY)
    activity.record(
        session,
        ctx,
        "integration_account.secret_rotated",
        "integration_account",
        account.id,
        after={"previous_secret_expires_at": expires},
    )
    previous_expires = dt.datetime.fromisoformat(expires) if expires else None
    return account, credentials[api_account.SECRET_KEY], previous_expires


def send_test(session: Session, ctx: Ctx, account_id: uuid.UUID) -> dict[str, Any]:
    """POST a signed ``webhook.test`` event to the callback now; return the attempt.

    NOTE: like the webhook endpoints' test: one attempt, never retried, and the
    request's transaction is committed before the POST so none stays open during it.
    It works on a disabled account too: check the receiver before enabling it.
    """
    account = api_account_of(session, ctx, account_id, active=False)
    event_id = uuid.uuid4()
    envelope = catalogue.envelope(
        event_id,
        catalogue.TEST_EVENT,
        dt.datetime.now(dt.UTC),
        {"account_id": str(account.id), "message": "This is a test callback from OmniStream."},
        tenant_id=ctx.tenant_id,
        actor=ctx.actor.as_dict(),
    )
    url = (account.settings or {}).get("callback_url")
    if not url:
        raise Conflict(
            "This api account has no callback_url to test; set one with PATCH first",
            details=[{"field": "settings.callback_url", "message": "not set"}],
        )
    credentials = accounts.decrypt_credentials(account)
    # NOTE: the request waits for the receiver in a web thread: one of the process's
    # waiting slots, or 429 before anything is recorded (shared.web_threads).
    with web_threads.waiting_on_third_party():
        activity.record(
            session,
            ctx,
            "integration_account.test_sent",
            "integration_account",
            account.id,
            after={"event_id": str(event_id), "callback_url": url},
        )
        session.commit()
        result = api_callback.post(account, credentials, event_id, catalogue.TEST_EVENT, envelope)
    return {
        "event_id": event_id,
        "status": "succeeded" if result.ok else "failed",
        "attempt": AttemptView.of_result(result, url).model_dump(mode="json"),
    }

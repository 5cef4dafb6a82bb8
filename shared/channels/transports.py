"""Hand one outbound message to its channel's provider; return the provider's message id.

Called by :mod:`shared.channels.outbound` with the message, its contact and the
sending account (credentials decrypted). Raises
:class:`~shared.channels.send_errors.SendFailed` on any failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.channels import graph, smtp
from shared.channels.media_storage import storage_for
from shared.channels.send_errors import SendFailed
from shared.config import get_settings
from shared.models import Contact, Conversation, IntegrationAccount, MediaFile, Message

#: How many earlier Message-IDs go into an email's References header.
MAX_REFERENCES = 20


@dataclass(frozen=True)
class Outgoing:
    """Everything a transport needs about one send."""

    message: Message
    conversation: Conversation
    contact: Contact
    account: IntegrationAccount
    credentials: dict[str, str]


def send(session: Session, outgoing: Outgoing) -> str:
    channel = outgoing.message.channel
    if channel == "whatsapp":
        return _send_whatsapp(outgoing)
    if channel in ("messenger", "instagram"):
        return _send_page(outgoing)
    if channel == "email":
        return _send_email(session, outgoing)
    raise SendFailed("unsupported_channel", f"cannot send on {channel!r}", transient=False)


def _token(outgoing: Outgoing) -> str:
    token = outgoing.credentials.get("access_token")
    if not token:
        raise SendFailed(
            "missing_credentials",
            f"the {outgoing.account.channel} account has no access token",
            transient=False,
        )
    return token


def _send_whatsapp(outgoing: Outgoing) -> str:
    message, to = outgoing.message, outgoing.contact.external_id
    if message.template is not None:
        payload = graph.whatsapp_template(to, message.template)
    elif message.body:
        payload = graph.whatsapp_text(to, message.body)
    else:
        raise SendFailed("empty_message", "nothing to send", transient=False)
    answer = graph.graph_client().post(
        f"{outgoing.account.external_id}/messages", _token(outgoing), payload
    )
    try:
        return str(answer["messages"][0]["id"])
    except (KeyError, IndexError, TypeError) as exc:
        raise SendFailed("bad_response", "no message id in Meta's answer", transient=True) from exc


def _send_page(outgoing: Outgoing) -> str:
    """Messenger and Instagram both send through ``/me/messages`` with the page token."""
    message = outgoing.message
    if not message.body:
        raise SendFailed(
            "unsupported_content", f"{message.channel} sends text messages only", transient=False
        )
    answer = graph.graph_client().post(
        "me/messages", _token(outgoing), graph.page_text(outgoing.contact.external_id, message.body)
    )
    message_id = answer.get("message_id")
    if not message_id:
        raise SendFailed("bad_response", "no message_id in Meta's answer", transient=True)
    return str(message_id)


def _send_email(session: Session, outgoing: Outgoing) -> str:
    settings = get_settings()
    account, message = outgoing.account, outgoing.message
    config: dict[str, Any] = account.settings or {}
    if not config.get("smtp_host"):
        raise SendFailed("missing_settings", "the email account has no smtp_host", transient=False)
    security = config.get("smtp_security") or "starttls"
    relay = smtp.SmtpAccount(
        host=config["smtp_host"],
        port=int(config.get("smtp_port") or (465 if security == "ssl" else 587)),
        security=security,
        username=config.get("smtp_username"),
        password=outgoing.credentials.get("smtp_password"),
        from_address=account.external_id,
        from_name=config.get("from_name"),
    )
    earlier = _thread_ids(session, message)
    email = smtp.build_email(
        relay,
        to=outgoing.contact.email or outgoing.contact.external_id,
        subject=smtp.reply_subject(outgoing.conversation.subject, is_reply=bool(earlier)),
        text=message.body or "",
        in_reply_to=earlier[-1] if earlier else None,
        references=earlier[-MAX_REFERENCES:],
        attachments=_attachments(session, message),
    )
    return smtp.send_email(
        relay, email, timeout=settings.smtp_timeout_seconds, ca_file=settings.smtp_ca_file
    )


def _thread_ids(session: Session, message: Message) -> list[str]:
    """The Message-IDs of the conversation's earlier emails, oldest first."""
    rows = session.scalars(
        select(Message.provider_message_id)
        .where(
            Message.tenant_id == message.tenant_id,
            Message.conversation_id == message.conversation_id,
            Message.id != message.id,
            Message.provider_message_id.is_not(None),
            Message.created_at <= message.created_at,
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(MAX_REFERENCES)
    )
    return [r for r in reversed(list(rows)) if r.startswith("<")]


def _attachments(session: Session, message: Message) -> Sequence[smtp.Attachment]:
    ids = [a.get("media_id") for a in message.attachments or [] if a.get("media_id")]
    if not ids:
        return []
    files = session.scalars(
        select(MediaFile).where(MediaFile.tenant_id == message.tenant_id, MediaFile.id.in_(ids))
    ).all()
    found = {str(f.id): f for f in files}
    result = []
    for media_id in ids:
        media = found.get(str(media_id))
        if media is None or not media.storage_key or not media.storage_backend:
            raise SendFailed(
                "media_unavailable", f"attachment {media_id} is not stored", transient=False
            )
        content = b"".join(storage_for(media.storage_backend).open(media.storage_key))
        result.append(
            smtp.Attachment(
                media.filename or "attachment",
                media.mime_type or "application/octet-stream",
                content,
            )
        )
    return result

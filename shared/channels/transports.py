"""Hand one outbound message to its channel's provider; return the provider's message id.

Called by :mod:`shared.channels.outbound` with the message, its contact and the
sending account (credentials decrypted). Raises
:class:`~shared.channels.send_errors.SendFailed` on any failure.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.channels import api_callback, choices, graph, smtp
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


def reads_database(outgoing: Outgoing) -> bool:
    """Whether sending ``outgoing`` reads the database (a stored file, an email's thread, an
    api callback's answer): a Meta text or template needs no session."""
    meta = outgoing.message.channel in ("whatsapp", "messenger", "instagram")
    return not meta or bool(outgoing.message.attachments)


def _go() -> None:
    """The default ``ready``: nothing to check before the provider call."""


def send(session: Session | None, outgoing: Outgoing, ready: Callable[[], None] = _go) -> str:
    """``session`` may be None when :func:`reads_database` says the send reads nothing.

    ``ready`` is called once, after what the send reads (rows, stored files) and right
    before its first provider call; what it raises ends the send there, nothing sent.
    """
    channel = outgoing.message.channel
    if channel == "whatsapp":
        return _send_whatsapp(session, outgoing, ready)
    if channel in ("messenger", "instagram"):
        return _send_page(session, outgoing, ready)
    if channel == "email":
        return _send_email(session, outgoing, ready)
    if channel == "api":
        return api_callback.send(session, outgoing, ready)
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


def _send_whatsapp(session: Session | None, outgoing: Outgoing, ready: Callable[[], None]) -> str:
    """Text (with its reply choices), template, or one file (uploaded to WhatsApp first;
    ``body`` is its caption)."""
    message, to = outgoing.message, outgoing.contact.external_id
    token = _token(outgoing)
    phone_number_id = outgoing.account.external_id
    offered = choices.offered(message.metadata_)
    if message.template is not None:
        payload = graph.whatsapp_template(to, message.template)
    elif message.attachments:
        [item] = message.attachments
        media = _stored_media(session, message, item)
        with _open(media) as stream:
            ready()
            started = time.monotonic()
            uploaded = graph.graph_client().post_form(
                f"{phone_number_id}/media",
                token,
                {"messaging_product": "whatsapp", "type": media.mime_type},
                (media.filename or "file", stream, media.mime_type),
                within=_upload_room(message.channel),
            )
        if not uploaded.get("id"):
            raise SendFailed("bad_response", "no media id in Meta's answer", transient=True)
        payload = graph.whatsapp_media(
            to,
            item["type"],
            media_id=str(uploaded["id"]),
            caption=message.body,
            filename=media.filename,
        )
    elif message.body and len(message.body) <= choices.MAX_WHATSAPP_BODY and offered:
        label = choices.label(message.metadata_)
        payload = graph.whatsapp_choices(to, message.body, offered, label)
    elif message.body:
        payload = graph.whatsapp_text(to, message.body)
    else:
        raise SendFailed("empty_message", "nothing to send", transient=False)
    if not message.attachments:
        ready()
        started = time.monotonic()
    with _accepted_once():
        answer = graph.graph_client().post(
            f"{phone_number_id}/messages", token, payload, within=_room_left(started, message)
        )
    try:
        return _named_id(answer["messages"][0]["id"])
    except (KeyError, IndexError, TypeError) as exc:
        raise _accepted_unread("its answer named no message id") from exc


def _send_page(session: Session | None, outgoing: Outgoing, ready: Callable[[], None]) -> str:
    """Messenger and Instagram both send through ``/me/messages`` with the page token:
    text as JSON, a file as multipart (``filedata``) in the same call."""
    message, recipient = outgoing.message, outgoing.contact.external_id
    client, token = graph.graph_client(), _token(outgoing)
    if message.attachments:
        [item] = message.attachments
        media = _stored_media(session, message, item)
        fields = graph.page_attachment_upload(recipient, item["type"])
        with _open(media) as stream, _accepted_once():
            ready()
            answer = client.post_form(
                "me/messages",
                token,
                fields,
                (media.filename or "file", stream, media.mime_type),
                file_field="filedata",
                # NOTE: the file rides with the message: the whole send is this one call.
                within=get_settings().send_bound_seconds(message.channel),
            )
    elif message.body:
        offered = choices.offered(message.metadata_)
        payload = graph.page_text(recipient, message.body, offered)
        ready()
        with _accepted_once():
            answer = client.post(
                "me/messages", token, payload, within=_room_left(time.monotonic(), message)
            )
    else:
        raise SendFailed("empty_message", "nothing to send", transient=False)
    try:
        return _named_id(answer.get("message_id"))
    except TypeError as exc:
        raise _accepted_unread("its answer named no message_id") from exc


def _upload_room(channel: str) -> float:
    """The seconds a WhatsApp upload may take: the send's bound less the message call's own
    timeout, which follows it.

    WHY: each step of an upload had a timeout, the upload none: an answer trickling in a
    byte at a time held the send past the bound its claim counts on.
    """
    settings = get_settings()
    return settings.send_bound_seconds(channel) - settings.graph_timeout_seconds


def _room_left(started: float, message: Message) -> float:
    """The seconds left of the send's bound, which ``started`` (monotonic) at its first
    provider call: what its message POST may take, whole.

    WHY: each step of the POST had a timeout, the POST none: an answer trickling in a byte
    at a time held the send past the bound its claim counts on (as uploads did).
    """
    return get_settings().send_bound_seconds(message.channel) - (time.monotonic() - started)


def _named_id(value: Any) -> str:
    """Meta's id of the sent message: a string, not empty.

    WHY: ``str()`` of whatever came recorded ``"None"`` (or ``""``, or a dict's text) as
    the provider id: its statuses never matched, and a second such answer collided on it.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"the message id is {value!r}")
    return value


@contextlib.contextmanager
def _accepted_once() -> Iterator[None]:
    """Around the call that sends a message to Meta: an answer given with a 2xx that cannot
    be read fails the message instead of retrying it.

    WHY: a 2xx means Meta took the message, and Meta has no idempotency key: another
    attempt would reach the customer twice. Like a send in doubt (``delivery_unknown`` in
    :mod:`.outbound_engine`), it fails visibly and is not sent again. A graph call answers
    ``bad_response`` only for a 2xx; refusals carry Meta's code.
    """
    try:
        yield
    except SendFailed as exc:
        if exc.code != "bad_response":
            raise
        raise _accepted_unread(f"its answer could not be read ({exc.message})") from exc


#: How the failure of a message Meta took but whose answer could not be read begins.
ACCEPTED_UNREAD = "Meta accepted the message but"


def _accepted_unread(what: str) -> SendFailed:
    return SendFailed(
        "bad_response",
        f"{ACCEPTED_UNREAD} {what}; it was not sent again, so the customer may"
        " have it (resend it if they did not)",
        transient=False,
    )


def accepted_unread(error_code: str | None, error_message: str | None) -> bool:
    """Whether a message's failure is :func:`_accepted_once`'s: Meta took it, so the
    customer may have it.

    WHY the message too: a WhatsApp media upload answered unreadably is ``bad_response``
    as well, but transient, and only the upload went out: after its retries the message
    fails with that code though Meta never got the message itself.
    """
    return error_code == "bad_response" and (error_message or "").startswith(ACCEPTED_UNREAD)


def _send_email(session: Session, outgoing: Outgoing, ready: Callable[[], None]) -> str:
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
    attachments = _attachments(session, message)
    try:
        email = smtp.build_email(
            relay,
            to=outgoing.contact.email or outgoing.contact.external_id,
            subject=smtp.reply_subject(outgoing.conversation.subject, is_reply=bool(earlier)),
            text=message.body or "",
            in_reply_to=earlier[-1] if earlier else None,
            references=earlier[-MAX_REFERENCES:],
            attachments=attachments,
        )
    except ValueError as exc:
        # WHY: the same rows build the same refused header (an address with a line
        # break) on every try: an internal error retried until dead-lettered.
        raise SendFailed(
            "invalid_email", f"the email cannot be written: {exc}", transient=False
        ) from exc
    ready()
    return smtp.send_email(
        relay,
        email,
        timeout=settings.smtp_timeout_seconds,
        ca_file=settings.smtp_ca_file,
        # NOTE: the whole session within the bound the send's claim counts on.
        deadline=settings.send_bound_seconds("email"),
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
    result = []
    for item in message.attachments or []:
        media = _stored_media(session, message, item)
        with _open(media) as stream:
            content = stream.read()
        result.append(smtp.Attachment(media.filename or "attachment", media.mime_type, content))
    return result


def _stored_media(session: Session, message: Message, item: dict[str, Any]) -> MediaFile:
    """The message's attachment row, which must be stored (a permanent failure otherwise)."""
    media = session.scalars(
        select(MediaFile).where(
            MediaFile.tenant_id == message.tenant_id, MediaFile.id == item.get("media_id")
        )
    ).one_or_none()
    if media is None or not media.storage_key or not media.storage_backend:
        raise SendFailed(
            "media_unavailable", f"attachment {item.get('media_id')} is not stored", transient=False
        )
    media.mime_type = media.mime_type or "application/octet-stream"
    return media


@contextlib.contextmanager
def _open(media: MediaFile) -> Iterator[IO[bytes]]:
    stream = storage_for(media.storage_backend).open_file(media.storage_key)
    try:
        yield stream
    finally:
        stream.close()

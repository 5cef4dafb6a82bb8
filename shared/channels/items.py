"""What the provider parsers produce: plain records, free of any provider's JSON shape.

Parsers (:mod:`.whatsapp`, :mod:`.meta_messaging`, :mod:`.email`) turn one stored
payload into a list of these; :mod:`.ingest` applies each in its own savepoint.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Attachment:
    """A file the message carries; becomes a ``media_files`` row (not fetched yet)."""

    type: str
    provider_media_id: str | None
    mime_type: str | None = None
    filename: str | None = None
    caption: str | None = None
    size: int | None = None
    sha256: str | None = None
    #: Anything else worth keeping on the message's attachment item (provider hash, voice...).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class InboundMessage:
    """A message from a contact (or an echo of one the business sent elsewhere)."""

    provider_message_id: str
    #: The contact's id on the channel: wa_id, PSID, IGSID or email address.
    contact_external_id: str
    content_type: str
    body: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    contact_name: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    sent_at: dt.datetime | None = None
    #: Email: the subject, and the Message-IDs it answers (In-Reply-To, then References).
    subject: str | None = None
    thread_refs: list[str] = field(default_factory=list)
    #: ``outbound`` for echoes of messages the business sent from another client.
    direction: str = "inbound"
    #: The conversation the sender named (the api channel); joined even when resolved.
    conversation_id: uuid.UUID | None = None
    #: Attachments already stored (the api channel's uploads): message attachment items
    #: as :func:`shared.channels.attachments.resolve` makes them, kept as they are.
    stored_attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StatusReport:
    """A delivery status of one outbound message, by provider message id."""

    provider_message_id: str
    status: str
    at: dt.datetime | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class Watermark:
    """Messenger reads/deliveries: every outbound message to the contact up to ``at``."""

    contact_external_id: str
    status: str
    at: dt.datetime


@dataclass
class Ignored:
    """A payload item with nothing to store (e.g. a WhatsApp template review), and why."""

    reason: str


class ItemError(Exception):
    """An item that cannot be applied (missing sender...): recorded, the others go on."""


Item = InboundMessage | StatusReport | Watermark | Ignored


def from_unix(value: Any) -> dt.datetime | None:
    """A provider timestamp (seconds or milliseconds since the epoch) as UTC, or None."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if seconds > 1e11:  # milliseconds (Messenger)
        seconds /= 1000
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None

"""Inbound email: one raw MIME message into a message with its bodies and attachments.

Parsed with the standard library (``email`` with ``policy=default``), which tolerates
broken MIME and records ``defects`` instead of raising; every step that can still fail
on a broken part (an unknown charset, a truncated base64 part) falls back to a lossy
decode, so a damaged email is stored with what could be read, never lost. Threading:
``In-Reply-To`` and ``References`` name earlier Message-IDs (stored as messages'
``provider_message_id``); :mod:`.ingest` looks them up.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html as html_lib
import re
from email import policy, utils
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from typing import Any

from shared.channels import email_html
from shared.channels.items import Attachment, InboundMessage, Item, ItemError
from shared.models import Message
from shared.sql import storable_text

#: HTML kept on the message (metadata.html, made safe by email_html) up to this many
#: characters of the email's.
MAX_HTML_CHARS = 512 * 1024
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"[ \t]+")
#: What ``messages.provider_message_id`` holds (String(255)).
_MAX_MESSAGE_ID = Message.__table__.c.provider_message_id.type.length
#: Writes an embedded email out with its headers as they came (none refolded).
_AS_RECEIVED = policy.default.clone(refold_source="none", linesep="\r\n")


def parse(payload: dict[str, Any], *, event_key: str) -> list[Item | ItemError]:
    """The message of an inbound email payload (``event_key``: its id when it has none)."""
    try:
        raw = base64.b64decode(payload.get("mime") or "")
    except ValueError as exc:
        return [ItemError(f"mime is not base64: {exc}")]
    mime = BytesParser(policy=policy.default).parsebytes(raw)
    sender_name, sender = _address(mime, "From")
    if not sender:
        return [ItemError("the email has no readable From address")]
    message_id = _header(mime, "Message-ID")
    refs = _MESSAGE_ID.findall(_header(mime, "In-Reply-To") or "")
    refs += [
        r for r in reversed(_MESSAGE_ID.findall(_header(mime, "References") or "")) if r not in refs
    ]
    text, html = _bodies(mime)
    attachments = _attachments(mime)
    body = text if text is not None else _html_to_text(html) if html else None
    metadata: dict[str, Any] = {
        "subject": _header(mime, "Subject"),
        "from": f"{sender_name} <{sender}>" if sender_name else sender,
        "to": _header(mime, "To"),
        "cc": _header(mime, "Cc"),
        "in_reply_to": refs[:1] or None,
        "references": refs,
    }
    if html:
        metadata["html"] = email_html.clean(html[:MAX_HTML_CHARS])
        metadata["html_truncated"] = len(html) > MAX_HTML_CHARS
    if mime.defects or any(part.defects for part in mime.walk()):
        metadata["mime_defects"] = sorted(
            {type(d).__name__ for part in mime.walk() for d in part.defects}
            | {type(d).__name__ for d in mime.defects}
        )
    return [
        InboundMessage(
            provider_message_id=message_key(message_id or event_key),
            contact_external_id=sender,
            content_type="email",
            body=body,
            attachments=attachments,
            metadata={k: v for k, v in metadata.items() if v not in (None, [])},
            contact_name=sender_name or None,
            contact_email=sender,
            sent_at=_date(mime),
            subject=_header(mime, "Subject"),
            thread_refs=list(dict.fromkeys(message_key(r) for r in refs)),
        )
    ]


def message_key(message_id: str) -> str:
    """What ``provider_message_id`` stores for a Message-ID: itself, or its SHA-256 when
    the column cannot hold it.

    WHY: a Message-ID is the sender's to make up; one past the column failed the message's
    insert and the email was lost. The references to it are keyed alike, so replies thread.
    """
    if len(message_id) <= _MAX_MESSAGE_ID:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


def message_id_of(raw: bytes) -> str | None:
    """The Message-ID of a raw email, read from its headers alone, as :func:`parse` reads it."""
    return _header(BytesHeaderParser(policy=policy.default).parsebytes(raw), "Message-ID")


def _header(mime: EmailMessage, name: str) -> str | None:
    try:
        value = mime.get(name)
    except Exception:  # a header the policy cannot parse: read it raw
        value = _raw_header(mime, name)
    if value is None:
        return None
    # NOTE: raw bytes or an encoded word can hold a NUL, which PostgreSQL cannot store.
    return storable_text(" ".join(str(value).split())) or None


def _raw_header(mime: EmailMessage, name: str) -> str | None:
    """The header's value as it came, unparsed (undecodable bytes become U+FFFD).

    WHY: the policy's parser raises on some malformed values (``Message-ID: <a@``), and
    ``get_all`` parses them the same way: the fallback raised too, and the email was lost.
    """
    for key, value in mime.raw_items():
        if key.lower() == name.lower():
            return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return None


def _address(mime: EmailMessage, name: str) -> tuple[str | None, str | None]:
    raw = _header(mime, name)
    if not raw:
        return None, None
    display, address = utils.parseaddr(raw)
    address = address.strip().lower()
    if "@" not in address:
        return None, None
    return display.strip() or None, address


def _date(mime: EmailMessage) -> dt.datetime | None:
    """The Date header as an aware time; ``-0000`` (RFC 5322: zone unknown) reads as UTC."""
    try:
        sent = utils.parsedate_to_datetime(_header(mime, "Date") or "")
    except (TypeError, ValueError, IndexError):
        return None
    return sent if sent.tzinfo is not None else sent.replace(tzinfo=dt.UTC)


def _content(part: EmailMessage) -> str | None:
    """A text part's content; a broken charset or transfer encoding decodes lossily.

    NUL characters (PostgreSQL text cannot hold them) become U+FFFD.
    """
    text = _decoded(part)
    return storable_text(text) if text else text


def _decoded(part: EmailMessage) -> str | None:
    try:
        return part.get_content()
    except Exception:
        payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None if payload is None else str(payload)
    try:
        return payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    except (LookupError, ValueError):  # a charset Python does not know (or a NUL in its name)
        return payload.decode("utf-8", errors="replace")


def _body_parts(mime: EmailMessage) -> tuple[EmailMessage | None, EmailMessage | None]:
    """The parts read as the email's text and its HTML."""
    try:
        return mime.get_body(preferencelist=("plain",)), mime.get_body(preferencelist=("html",))
    except Exception:
        return None, None


def _bodies(mime: EmailMessage) -> tuple[str | None, str | None]:
    text = html = None
    plain_part, html_part = _body_parts(mime)
    if plain_part is not None:
        text = _content(plain_part)
    if html_part is not None:
        html = _content(html_part)
    if text is None and html is None and not mime.is_multipart():
        text = _content(mime)  # e.g. a part with a content type we do not know
    return text, html


def _attachments(mime: EmailMessage) -> list[Attachment]:
    found: list[Attachment] = []
    for index, part in enumerate(_attachment_parts(mime)):
        data = _part_bytes(part)
        mime_type = storable_text(part.get_content_type())
        filename = part.get_filename()
        found.append(
            Attachment(
                type=_kind(mime_type),
                # NOTE: the bytes live in the stored payload; the media fetcher reads
                # part <index> of the email (see shared.channels.ingest.EMAIL_MEDIA_PREFIX).
                provider_media_id=str(index),
                mime_type=mime_type,
                filename=storable_text(filename) if filename else filename,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return found


def attachment_bytes(
    payload: dict[str, Any], index: int, *, sha256: str | None = None
) -> tuple[bytes, str, str | None] | None:
    """The bytes, content type and filename of attachment ``index`` of a stored email
    payload; with ``sha256`` (what :func:`parse` recorded), the attachment with those
    bytes, or None when the email has none.

    WHY: emails stored before nested multiparts were opened numbered their files
    otherwise; their part ``index`` can now be another file, served under this one's name.
    """
    mime = BytesParser(policy=policy.default).parsebytes(base64.b64decode(payload["mime"]))
    parts = _attachment_parts(mime)
    at_index = parts[index : index + 1] if index >= 0 else []
    for part in at_index + (parts if sha256 is not None else []):
        data = _part_bytes(part)
        if sha256 is None or hashlib.sha256(data).hexdigest() == sha256:
            return data, part.get_content_type(), part.get_filename()
    return None


def _attachment_parts(mime: EmailMessage) -> list[EmailMessage]:
    """The email's files, in the order they come: the one numbering of its attachments.

    Every leaf part (nested multiparts opened) but the parts :func:`_bodies` reads as
    the text and HTML, and the alternatives of a ``multipart/alternative`` (other
    renderings of the body, e.g. Apple Watch's ``text/watch-html``) unless marked as
    attachments. :func:`_attachments` numbers them and :func:`attachment_bytes` reads
    part ``n`` later, so both must list the same parts.

    WHY: ``iter_attachments`` does not open a nested multipart. Apple Mail puts files in a
    ``multipart/mixed`` inside the ``multipart/alternative``, a forward nests the original
    ``multipart/mixed``, Outlook nests ``multipart/related`` inline images: the inner
    multipart was stored as one empty "attachment" and the files in it were lost.
    """
    if not mime.is_multipart():
        return []
    bodies = {id(part) for part in _body_parts(mime) if part is not None}
    found: list[EmailMessage] = []

    def visit(container: EmailMessage) -> None:
        alternative = container.get_content_type() == "multipart/alternative"
        for part in container.iter_parts():
            if part.get_content_maintype() == "multipart":
                visit(part)
            elif id(part) in bodies:
                pass
            elif not alternative or _is_attachment(part):
                found.append(part)

    visit(mime)
    return found


def _is_attachment(part: EmailMessage) -> bool:
    try:
        return part.is_attachment()
    except Exception:  # a Content-Disposition the policy cannot parse
        return False


def _part_bytes(part: EmailMessage) -> bytes:
    """A part's decoded bytes (what is readable of a broken transfer encoding).

    A ``message/*`` part (a forwarded email, a bounce's delivery status) holds messages,
    which ``get_payload(decode=True)`` reads as nothing: they are written out as they came.
    WHY: an email forwarded as an attachment was stored as an empty file.
    """
    try:
        payload = part.get_payload()
        if isinstance(payload, list):
            return b"".join(message.as_bytes(policy=_AS_RECEIVED) for message in payload)
        data = part.get_payload(decode=True) or b""
    except Exception:
        data = b""
    return data if isinstance(data, bytes) else str(data).encode()


def _kind(mime_type: str) -> str:
    major = mime_type.split("/", 1)[0]
    return major if major in ("image", "audio", "video") else "document"


def _html_to_text(html: str) -> str:
    """A rough text of an HTML-only email, for previews and search."""
    text = _TAGS.sub("", re.sub(r"(?is)<(script|style).*?</\1>", " ", html))
    text = html_lib.unescape(text)
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.splitlines() if line.strip())

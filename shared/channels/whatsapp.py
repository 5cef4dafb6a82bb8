"""WhatsApp Cloud API webhooks: one ``entry[].changes[]`` unit into messages and statuses.

Shapes follow Meta's "Webhooks payload examples" for the Cloud API: ``value.contacts``
(profile names), ``value.messages`` (text, image, audio, video, document, sticker,
location, contacts, interactive button/list replies, button, reaction, unsupported...)
and ``value.statuses`` (sent, delivered, read, failed with ``errors[]``). A type we do
not model is stored as ``unsupported`` with the raw item, never dropped. A template
review (``message_template_status_update``) becomes a
:class:`~shared.channels.templates.review.TemplateReview`.
"""

from __future__ import annotations

from typing import Any

from shared.channels.items import (
    Attachment,
    Ignored,
    InboundMessage,
    Item,
    ItemError,
    StatusReport,
    from_unix,
)
from shared.channels.templates import review
from shared.digits import ascii_digits
from shared.json_encoding import as_list, as_object, objects_in

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
STATUSES = ("sent", "delivered", "read", "failed")


def parse(payload: dict[str, Any]) -> list[Item | ItemError]:
    change = payload.get("change") or {}
    value = as_object(change.get("value"))
    if change.get("field") == review.FIELD:
        try:
            return [review.parse(value)]
        except review.BadReview as exc:
            return [ItemError(str(exc))]
    if change.get("field") != "messages":
        return [Ignored(f"field {change.get('field')!r} is not handled by inbound processing")]
    names = _profile_names(value.get("contacts"))
    items: list[Item | ItemError] = []
    # NOTE: lists, not objects_in: an item of another shape is reported, not skipped.
    for raw in as_list(value.get("messages")):
        items.append(_message(raw, names))
    for raw in as_list(value.get("statuses")):
        items.append(_status(raw))
    if not items:
        items.append(Ignored("no messages or statuses in this change"))
    return items


def _profile_names(contacts: Any) -> dict[str, str | None]:
    """wa_id -> profile name; a contact of another shape names nobody.

    Only a display name: one of another shape must not fail the messages beside it.
    """
    names: dict[str, str | None] = {}
    for contact in objects_in(contacts):
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        names[str(contact.get("wa_id"))] = name if isinstance(name, str) else None
    return names


def _message(raw: Any, names: dict[str, str | None]) -> InboundMessage | ItemError:
    if not isinstance(raw, dict) or not raw.get("id") or not raw.get("from"):
        return ItemError(f"a message without id or sender: {str(raw)[:200]}")
    sender = str(raw["from"])
    message = InboundMessage(
        provider_message_id=str(raw["id"]),
        contact_external_id=sender,
        content_type="unsupported",
        contact_name=names.get(sender),
        contact_phone="+" + sender if ascii_digits(sender) else None,
        sent_at=from_unix(raw.get("timestamp")),
    )
    if isinstance(raw.get("context"), dict):
        message.metadata["reply_to"] = raw["context"].get("id")
        if raw["context"].get("forwarded"):
            message.metadata["forwarded"] = True
    kind = raw.get("type")
    content = raw.get(kind) if isinstance(kind, str) else None
    handler = _HANDLERS.get(kind)
    # A content of another shape than its kind's is kept as unsupported, as an unknown kind.
    if handler is None or not isinstance(content, list if kind == "contacts" else dict):
        message.metadata["raw"] = raw
        message.metadata["unsupported_type"] = kind
        return message
    handler(message, content)
    return message


def _text(message: InboundMessage, content: dict[str, Any]) -> None:
    message.content_type = "text"
    message.body = content.get("body")


def _media(kind: str):
    def apply(message: InboundMessage, content: dict[str, Any]) -> None:
        message.content_type = kind
        message.body = content.get("caption")
        extra = {k: content[k] for k in ("voice", "animated") if k in content}
        if content.get("sha256"):
            extra["provider_sha256"] = content["sha256"]
        message.attachments.append(
            Attachment(
                type=kind,
                provider_media_id=str(content["id"]) if content.get("id") else None,
                mime_type=content.get("mime_type"),
                filename=content.get("filename"),
                caption=content.get("caption"),
                extra=extra,
            )
        )

    return apply


def _location(message: InboundMessage, content: dict[str, Any]) -> None:
    message.content_type = "location"
    fields = ("latitude", "longitude", "name", "address", "url")
    message.metadata["location"] = {k: content.get(k) for k in fields if k in content}
    label = ", ".join(str(content[k]) for k in ("name", "address") if content.get(k))
    message.body = label or f"{content.get('latitude')}, {content.get('longitude')}"


def _contacts(message: InboundMessage, content: list[Any]) -> None:
    message.content_type = "contacts"
    message.metadata["contacts"] = content
    names = [as_object(c.get("name")).get("formatted_name") for c in objects_in(content)]
    message.body = ", ".join(n for n in names if isinstance(n, str) and n) or None


def _interactive(message: InboundMessage, content: dict[str, Any]) -> None:
    kind = content.get("type")
    reply = content.get(kind) if isinstance(kind, str) else None
    if kind not in ("button_reply", "list_reply") or not isinstance(reply, dict):
        message.metadata["raw"] = {"type": "interactive", "interactive": content}
        message.metadata["unsupported_type"] = f"interactive.{kind}"
        return
    message.content_type = "interactive_reply"
    message.body = reply.get("title")
    message.metadata["interactive"] = {"type": kind} | {
        k: reply.get(k) for k in ("id", "title", "description") if k in reply
    }


def _button(message: InboundMessage, content: dict[str, Any]) -> None:
    message.content_type = "button_reply"
    message.body = content.get("text")
    message.metadata["button"] = {"text": content.get("text"), "payload": content.get("payload")}


def _reaction(message: InboundMessage, content: dict[str, Any]) -> None:
    message.content_type = "reaction"
    message.body = content.get("emoji") or None  # an empty emoji removes the reaction
    message.metadata["reaction"] = {
        "message_id": content.get("message_id"),
        "emoji": content.get("emoji"),
        "removed": not content.get("emoji"),
    }


_HANDLERS = {
    "text": _text,
    **{kind: _media(kind) for kind in MEDIA_TYPES},
    "location": _location,
    "contacts": _contacts,
    "interactive": _interactive,
    "button": _button,
    "reaction": _reaction,
}


def _status(raw: Any) -> StatusReport | ItemError:
    if not isinstance(raw, dict) or not raw.get("id") or raw.get("status") not in STATUSES:
        return ItemError(f"a status without id or with an unknown status: {str(raw)[:200]}")
    report = StatusReport(
        provider_message_id=str(raw["id"]),
        status=raw["status"],
        at=from_unix(raw.get("timestamp")),
    )
    errors = objects_in(raw.get("errors"))
    if errors:
        first = errors[0]
        code = first.get("code")
        # The column holds 64 characters; Meta's codes are numbers, a signed oddity is cut.
        report.error_code = str(code)[:64] if code is not None else None
        details = as_object(first.get("error_data")).get("details")
        report.error_message = (
            " ".join(str(p) for p in (first.get("title") or first.get("message"), details) if p)
            or None
        )
    return report

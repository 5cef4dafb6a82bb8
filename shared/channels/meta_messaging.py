"""Messenger and Instagram messaging webhooks: one ``entry`` into messages, echoes and receipts.

Both platforms send ``entry[].messaging[]`` events of the same shape: ``message``
(text, ``attachments[]``, ``quick_reply``, ``reply_to``; ``is_echo`` for messages the
business sent; Instagram's ``is_deleted`` / ``is_unsupported``), ``postback`` (a
button: ``title`` and ``payload``), ``read`` (Messenger: a ``watermark`` time;
Instagram: the ``mid`` read) and ``delivery`` (Messenger: ``mids`` and a watermark).
Anything else (reactions, referrals, optins...) is stored as ``unsupported`` with the
raw event when it has a sender, never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shared.channels.items import (
    Attachment,
    Ignored,
    InboundMessage,
    Item,
    ItemError,
    StatusReport,
    Watermark,
    from_unix,
)
from shared.config import get_settings
from shared.json_encoding import as_list, as_object

#: Attachment ``type`` -> message content type.
ATTACHMENT_TYPES = {
    "image": "image",
    "video": "video",
    "audio": "audio",
    "file": "document",
    "sticker": "sticker",
}


def parse(payload: dict[str, Any]) -> list[Item | ItemError]:
    entry = payload.get("entry") or {}
    account_id = str(entry.get("id") or "")
    events = entry.get("messaging")
    if not isinstance(events, list) or not events:
        return [Ignored("no messaging events in this entry (e.g. a feed change)")]
    return [_event(raw, account_id) for raw in events]


def _id(party: Any) -> str | None:
    return str(party["id"]) if isinstance(party, dict) and party.get("id") else None


def _event(raw: Any, account_id: str) -> Item | ItemError:
    if not isinstance(raw, dict):
        return ItemError(f"a messaging event that is not an object: {str(raw)[:200]}")
    sender, recipient = _id(raw.get("sender")), _id(raw.get("recipient"))
    at = from_unix(raw.get("timestamp"))
    message = raw.get("message")
    if isinstance(message, dict) and message.get("is_echo"):
        return _echo(message, recipient, at, raw)
    if not sender:
        return ItemError(f"a messaging event without sender: {str(raw)[:200]}")
    if isinstance(message, dict):
        return _message(message, sender, at, raw)
    if isinstance(raw.get("postback"), dict):
        return _postback(raw["postback"], sender, at, raw)
    read, delivery = raw.get("read"), raw.get("delivery")
    if isinstance(read, dict):
        if read.get("mid"):  # Instagram
            return StatusReport(str(read["mid"]), "read", at)
        watermark = from_unix(read.get("watermark"))
        if watermark:
            return Watermark(sender, "read", watermark)
    if isinstance(delivery, dict):
        watermark = from_unix(delivery.get("watermark"))
        if watermark:
            return Watermark(sender, "delivered", watermark)
        mids = as_list(delivery.get("mids"))
        if mids:
            return StatusReport(str(mids[0]), "delivered", at)
    return _unsupported(raw, sender, at)


def _echo(message: dict[str, Any], recipient: str | None, at: Any, raw: dict[str, Any]) -> Item:
    """The business wrote; the contact is the recipient.

    NOTE: an echo of our own send may arrive before ``send_outbound`` stored its mid, so
    storing it would duplicate the message (and make the sender's mid update collide).
    Only echoes from another app (``app_id`` set and not ``META_APP_ID``: the Page inbox,
    a phone) are stored; without ``META_APP_ID`` none can be told apart, so none are.
    """
    ours = get_settings().meta_app_id
    app_id = str(message.get("app_id") or "")
    if not ours or not app_id or app_id == ours:
        return Ignored("echo of a message the business sent through this platform (or unknown)")
    return _message(message, recipient, at, raw, direction="outbound")


def _message(
    message: dict[str, Any],
    contact: str | None,
    at: Any,
    raw: dict[str, Any],
    *,
    direction: str = "inbound",
) -> InboundMessage | ItemError:
    if not message.get("mid") or not contact:
        return ItemError(f"a message without mid or contact: {str(raw)[:200]}")
    item = InboundMessage(
        provider_message_id=str(message["mid"]),
        contact_external_id=contact,
        content_type="text",
        body=message.get("text"),
        sent_at=at,
        direction=direction,
    )
    if isinstance(message.get("quick_reply"), dict):
        item.content_type = "quick_reply"
        item.metadata["quick_reply"] = {"payload": message["quick_reply"].get("payload")}
    if isinstance(message.get("reply_to"), dict):
        item.metadata["reply_to"] = message["reply_to"].get("mid") or message["reply_to"]
    if message.get("is_deleted") or message.get("is_unsupported"):
        item.content_type = "unsupported"
        item.metadata["raw"] = raw
        return item
    for index, attachment in enumerate(as_list(message.get("attachments"))):
        if not isinstance(attachment, dict):
            continue
        kind = attachment.get("type")
        payload = as_object(attachment.get("payload"))
        if kind in ATTACHMENT_TYPES and isinstance(payload.get("url"), str) and payload["url"]:
            item.attachments.append(
                Attachment(
                    type=ATTACHMENT_TYPES[kind],
                    provider_media_id=payload["url"],
                    extra={"sticker_id": payload["sticker_id"]} if "sticker_id" in payload else {},
                )
            )
            if index == 0 and item.body is None:
                item.content_type = ATTACHMENT_TYPES[kind]
        else:
            # share, story_mention, ig_reel, fallback, template...: kept whole.
            item.metadata.setdefault("unsupported_attachments", []).append(attachment)
    if item.body is None and not item.attachments:
        item.content_type = "unsupported"
        item.metadata["raw"] = raw
    return item


def _postback(
    postback: dict[str, Any], sender: str, at: Any, raw: dict[str, Any]
) -> InboundMessage:
    title, payload = postback.get("title"), postback.get("payload")
    # NOTE: a postback's mid is recent; older ones have none: a content hash stands in.
    mid = (
        postback.get("mid")
        or "postback:" + hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    )
    return InboundMessage(
        provider_message_id=str(mid),
        contact_external_id=sender,
        content_type="postback",
        body=title,
        metadata={"postback": {"title": title, "payload": payload}},
        sent_at=at,
    )


def _unsupported(raw: dict[str, Any], sender: str, at: Any) -> InboundMessage:
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    kind = next((k for k in raw if k not in ("sender", "recipient", "timestamp")), None)
    return InboundMessage(
        provider_message_id=f"event:{digest}",
        contact_external_id=sender,
        content_type="unsupported",
        metadata={"raw": raw, "unsupported_type": kind},
        sent_at=at,
    )

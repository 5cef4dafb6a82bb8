"""Reply choices: the buttons an outbound message offers, and the one a contact's reply chose.

An outbound message may carry ``metadata.choices``, ``[{"id", "title"}]`` (a CSAT survey's
ratings). Each channel shows them as its own reply buttons: a WhatsApp list, Messenger and
Instagram quick replies, the api channel's ``choices``; email shows none (its text says
what to do). A contact's tap comes back as an inbound message whose metadata names the
chosen ``id`` (:func:`chosen`), whatever the channel.
"""

from __future__ import annotations

from typing import Any

#: Where an outbound message keeps its choices.
KEY = "choices"
#: Where an outbound message keeps the label of the button that opens a WhatsApp list.
LABEL_KEY = "choices_label"
#: The list button's label when the message names none (WhatsApp: up to 20 characters).
DEFAULT_LABEL = "Choose"
#: The longest body WhatsApp sends with buttons; a longer one goes as plain text.
MAX_WHATSAPP_BODY = 1024
#: Where an api-channel inbound message keeps the id of the choice it answers.
API_KEY = "choice"
#: The most any channel shows (WhatsApp's list rows).
MAX_CHOICES = 10
#: Longest choice id (WhatsApp's list row id: 200 characters).
MAX_ID = 200
#: Longest title every channel shows whole (WhatsApp's reply button, Messenger's quick reply).
MAX_TITLE = 20


def choice(choice_id: str, title: str) -> dict[str, str]:
    """One choice, checked against the limits every channel shares."""
    if not 0 < len(choice_id) <= MAX_ID or not 0 < len(title) <= MAX_TITLE:
        raise ValueError(f"a choice needs an id of 1-{MAX_ID} and a title of 1-{MAX_TITLE} chars")
    return {"id": choice_id, "title": title}


def offered(metadata: dict[str, Any] | None) -> list[dict[str, str]]:
    """The choices an outbound message's metadata offers (none when malformed)."""
    items = (metadata or {}).get(KEY)
    if not isinstance(items, list) or not 0 < len(items) <= MAX_CHOICES:
        return []
    if not all(isinstance(i, dict) and {"id", "title"} <= i.keys() for i in items):
        return []
    return [{"id": str(i["id"]), "title": str(i["title"])} for i in items]


def label(metadata: dict[str, Any] | None) -> str:
    value = (metadata or {}).get(LABEL_KEY)
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TITLE else DEFAULT_LABEL


def chosen(metadata: dict[str, Any] | None) -> str | None:
    """The choice id an inbound message answers: a WhatsApp button or list reply, a
    WhatsApp template's quick-reply button, a Messenger or Instagram quick reply, or the
    api channel's ``choice``; None for any other message."""
    metadata = metadata or {}
    candidates = (
        _field(metadata, "interactive", "id"),
        _field(metadata, "button", "payload"),
        _field(metadata, "quick_reply", "payload"),
        metadata.get(API_KEY),
    )
    for value in candidates:
        if isinstance(value, str) and 0 < len(value) <= MAX_ID:
            return value
    return None


def _field(metadata: dict[str, Any], key: str, field: str) -> Any:
    part = metadata.get(key)
    return part.get(field) if isinstance(part, dict) else None

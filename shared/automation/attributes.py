"""The attribute catalogue: every fact a condition can test, with its type.

The automation service builds an event's *facts* as a flat dict keyed by these names (an
attribute the event does not have is left out, never set to None); the engine defines the
names and types. ``conversation.custom_attributes.<key>`` and ``contact.custom_attributes.<key>``
are open-ended: any key is accepted and typed ``dynamic``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from shared.automation import value_types as t
from shared.inbox.conversations import PRIORITIES
from shared.inbox.states import STATUSES
from shared.models.inbox import CHANNELS
from shared.timekeeping.working_hours import WEEKDAYS

DIRECTIONS = ("inbound", "outbound")
SENDER_TYPES = ("contact", "user", "ai_agent", "automation", "system")
CONTENT_TYPES = (
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "template",
    "interactive",
    "unsupported",
)
ATTACHMENT_TYPES = ("image", "audio", "video", "document", "sticker", "file")

CUSTOM_PREFIXES = ("conversation.custom_attributes.", "contact.custom_attributes.")
#: Custom attribute keys as the contacts API accepts them (letters, digits, ``_``, ``-``).
_CUSTOM_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}")


class Attribute(NamedTuple):
    name: str
    type: str
    enum_values: tuple[str, ...] = ()
    description: str = ""

    @property
    def operators(self) -> tuple[str, ...]:
        return t.ALLOWED[self.type]


def _attributes(*items: Attribute) -> dict[str, Attribute]:
    return {a.name: a for a in items}


ATTRIBUTES: dict[str, Attribute] = _attributes(
    Attribute("conversation.id", t.ID, (), "The conversation's id"),
    Attribute("conversation.status", t.ENUM, STATUSES, "Open, pending, snoozed or resolved"),
    Attribute("conversation.channel", t.ENUM, CHANNELS, "The channel it lives on"),
    Attribute("conversation.division_id", t.ID, (), "The division it is routed to"),
    Attribute("conversation.assignee_id", t.ID, (), "The agent it is assigned to"),
    Attribute("conversation.tags", t.STRING_LIST, (), "Its tags (lower case)"),
    Attribute("conversation.priority", t.ENUM, PRIORITIES, "Its priority"),
    Attribute("conversation.unread_count", t.NUMBER, (), "Inbound messages not read yet"),
    Attribute("conversation.age_minutes", t.NUMBER, (), "Minutes since it was created"),
    Attribute("conversation.last_activity_minutes", t.NUMBER, (), "Minutes since its last message"),
    Attribute("conversation.ai_active", t.BOOLEAN, (), "An AI agent is handling it"),
    Attribute("conversation.created_at", t.DATETIME, (), "When it was created"),
    Attribute("message.content", t.STRING, (), "The message's text"),
    Attribute("message.direction", t.ENUM, DIRECTIONS, "Inbound or outbound"),
    Attribute("message.sender_type", t.ENUM, SENDER_TYPES, "Who sent it"),
    Attribute("message.content_type", t.ENUM, CONTENT_TYPES, "Text, image, template..."),
    Attribute(
        "message.attachment_type",
        t.ENUM,
        ATTACHMENT_TYPES,
        "Its first attachment's kind (absent without attachment)",
    ),
    Attribute("contact.name", t.STRING, (), "The contact's name"),
    Attribute("contact.email", t.STRING, (), "The contact's email"),
    Attribute("contact.phone", t.STRING, (), "The contact's phone number"),
    Attribute("contact.country", t.STRING, (), "The contact's country"),
    Attribute("contact.language", t.STRING, (), "The contact's language"),
    Attribute("contact.tags", t.STRING_LIST, (), "The contact's tags (lower case)"),
    Attribute(
        "time.inside_working_hours",
        t.BOOLEAN,
        (),
        "Inside the tenant's working hours (true when it has none)",
    ),
    Attribute("time.weekday", t.ENUM, WEEKDAYS, "Day of the week in the tenant's timezone"),
    Attribute("time.local_hour", t.NUMBER, (), "Hour of the day (0-23) in the tenant's timezone"),
    Attribute("event.type", t.STRING, (), "The triggering event's type"),
)


def lookup(name: object) -> Attribute | None:
    """The attribute called ``name``; custom attributes are ``dynamic``; None when unknown."""
    if not isinstance(name, str):
        return None
    found = ATTRIBUTES.get(name)
    if found is not None:
        return found
    for prefix in CUSTOM_PREFIXES:
        if name.startswith(prefix) and _CUSTOM_KEY.fullmatch(name[len(prefix) :]):
            return Attribute(name, t.DYNAMIC, (), "A custom attribute")
    return None


def catalogue() -> list[dict]:
    """The attributes with their types, enum members and operators (for rule editors)."""
    items = [
        {
            "name": a.name,
            "type": a.type,
            "enum_values": list(a.enum_values),
            "operators": list(a.operators),
            "description": a.description,
        }
        for a in ATTRIBUTES.values()
    ]
    items.extend(
        {
            "name": prefix + "<key>",
            "type": t.DYNAMIC,
            "enum_values": [],
            "operators": list(t.ALLOWED[t.DYNAMIC]),
            "description": "A custom attribute; compared as the rule's value is typed",
        }
        for prefix in CUSTOM_PREFIXES
    )
    return items

"""Build the facts a rule's conditions read, from an event and the rows it is about.

Reads only (SELECTs), so the worker and dry-run call the same code and dry-run
changes nothing. Facts are flat, named as in :mod:`shared.automation.attributes`
(``conversation.status``, ``contact.custom_attributes.plan``, ``time.local_hour``...)
and JSON-ready, because each run stores them to replay its decision. A missing
attribute is absent, never None. ``changes`` (for changed_to / changed_from) come
from the event payload: ``{attribute: [before, after]}``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import Contact, Conversation, ConversationRead, Tenant, WorkingHours
from shared.working_hours import time_facts

#: Conversation fields a ``conversation.*`` event's payload carries as of the event.
_EVENT_CONVERSATION_FIELDS = (
    "status",
    "channel",
    "division_id",
    "assignee_id",
    "tags",
    "priority",
    "ai_active",
    "custom_attributes",
)


def conversation_id_of(event_type: str, payload: Mapping[str, Any]) -> uuid.UUID | None:
    """The conversation an event is about (None for contact events and the like)."""
    raw = payload.get("id") if event_type.startswith("conversation.") else None
    return _uuid(raw or payload.get("conversation_id"))


def _uuid(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw)) if raw else None
    except ValueError:
        return None


def _put(facts: dict[str, Any], name: str, value: Any) -> None:
    if value is None:
        return
    facts[name] = str(value) if isinstance(value, uuid.UUID) else value


def _put_custom(facts: dict[str, Any], prefix: str, attributes: Mapping[str, Any] | None) -> None:
    for key, value in (attributes or {}).items():
        _put(facts, f"{prefix}.custom_attributes.{key}", value)


def _minutes(now: dt.datetime, then: dt.datetime | None) -> float | None:
    return None if then is None else round((now - then).total_seconds() / 60, 3)


def _unread(session: Session, conversation: Conversation) -> int:
    """Inbound messages the assignee has not read (all of them when unassigned)."""
    if conversation.assignee_id is None:
        return conversation.inbound_count
    read = session.scalar(
        select(ConversationRead.read_inbound_count).where(
            ConversationRead.conversation_id == conversation.id,
            ConversationRead.user_id == conversation.assignee_id,
        )
    )
    return max(conversation.inbound_count - (read or 0), 0)


def _conversation_facts(
    session: Session,
    facts: dict[str, Any],
    conversation: Conversation,
    event_type: str,
    payload: Mapping[str, Any],
    now: dt.datetime,
) -> None:
    values = {name: getattr(conversation, name) for name in _EVENT_CONVERSATION_FIELDS}
    if event_type.startswith("conversation."):
        values.update({k: payload[k] for k in _EVENT_CONVERSATION_FIELDS if k in payload})
    _put(facts, "conversation.id", conversation.id)
    for name in _EVENT_CONVERSATION_FIELDS[:-1]:
        _put(facts, f"conversation.{name}", values[name])
    _put(facts, "conversation.unread_count", _unread(session, conversation))
    _put(facts, "conversation.age_minutes", _minutes(now, conversation.created_at))
    _put(
        facts,
        "conversation.last_activity_minutes",
        _minutes(now, conversation.last_activity_at),
    )
    _put_custom(facts, "conversation", values["custom_attributes"])


def _message_facts(facts: dict[str, Any], payload: Mapping[str, Any]) -> None:
    _put(facts, "message.content", payload.get("body"))
    for name in ("direction", "sender_type", "content_type"):
        _put(facts, f"message.{name}", payload.get(name))
    attachments = payload.get("attachments") or []
    if attachments and isinstance(attachments[0], Mapping):
        _put(facts, "message.attachment_type", attachments[0].get("type"))


def _contact_facts(facts: dict[str, Any], contact: Contact) -> None:
    for name in ("name", "email", "phone", "country", "language"):
        _put(facts, f"contact.{name}", getattr(contact, name))
    _put(facts, "contact.tags", list(contact.tags or []))
    _put_custom(facts, "contact", contact.custom_attributes)


def _schedule(session: Session, tenant_id: uuid.UUID, division_id: Any) -> dict[str, Any] | None:
    """The division's working hours if it overrides them, else the tenant's (or None)."""
    rows = session.execute(
        select(WorkingHours.division_id, WorkingHours.schedule).where(
            WorkingHours.tenant_id == tenant_id,
            (WorkingHours.division_id.is_(None))
            | (WorkingHours.division_id == (uuid.UUID(str(division_id)) if division_id else None)),
        )
    ).all()
    by_division = {row.division_id: row.schedule for row in rows}
    if division_id and uuid.UUID(str(division_id)) in by_division:
        return by_division[uuid.UUID(str(division_id))]
    return by_division.get(None)


def changes_of(event_type: str, payload: Mapping[str, Any]) -> dict[str, list[Any]]:
    """What the event changed, ``{attribute: [before, after]}``, for changed_to/changed_from."""
    if event_type == "conversation.status_changed" and "previous_status" in payload:
        return {"conversation.status": [payload["previous_status"], payload.get("status")]}
    if (
        event_type
        in (
            "conversation.assigned",
            "conversation.unassigned",
            "conversation.taken_over",
        )
        and "previous_assignee_id" in payload
    ):
        return {
            "conversation.assignee_id": [
                payload["previous_assignee_id"],
                payload.get("assignee_id"),
            ]
        }
    if event_type == "conversation.tags_updated" and "tags" in payload:
        after = list(payload["tags"])
        removed = list(payload.get("removed") or [])
        before = [t for t in after if t not in set(payload.get("added") or [])] + removed
        return {"conversation.tags": [before, after]}
    return {}


def build_facts(
    session: Session,
    tenant_id: uuid.UUID,
    event_type: str,
    payload: Mapping[str, Any],
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The facts of one event, as of ``now`` (the database clock by default)."""
    now = now or session.scalar(select(func.now()))
    facts: dict[str, Any] = {"event.type": event_type}
    conversation = None
    conversation_id = conversation_id_of(event_type, payload)
    if conversation_id is not None:
        conversation = session.scalar(
            select(Conversation).where(
                Conversation.tenant_id == tenant_id, Conversation.id == conversation_id
            )
        )
    if conversation is not None:
        _conversation_facts(session, facts, conversation, event_type, payload, now)
    if event_type == "message.created":
        _message_facts(facts, payload)
    contact_id = conversation.contact_id if conversation is not None else None
    if contact_id is None and event_type.startswith("contact."):
        contact_id = _uuid(payload.get("id"))
    if contact_id is not None:
        contact = session.scalar(
            select(Contact).where(Contact.tenant_id == tenant_id, Contact.id == contact_id)
        )
        if contact is not None:
            _contact_facts(facts, contact)
    timezone = session.scalar(select(Tenant.timezone).where(Tenant.id == tenant_id)) or "UTC"
    schedule = _schedule(session, tenant_id, facts.get("conversation.division_id"))
    facts.update(time_facts(now, timezone, schedule))
    return facts

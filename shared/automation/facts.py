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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Uuid, and_, any_, bindparam, exists, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Bundle, Session

from shared.models import (
    Contact,
    Conversation,
    ConversationMute,
    ConversationRead,
    Tenant,
    WorkingHours,
)
from shared.timekeeping.working_hours import time_facts

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
_CONTACT_FIELDS = ("name", "email", "phone", "country", "language")


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


def _unread(conversation: Any, read_count: int | None) -> int:
    """Inbound messages the assignee has not read (all of them when unassigned)."""
    if conversation.assignee_id is None:
        return conversation.inbound_count
    return max(conversation.inbound_count - (read_count or 0), 0)


def _conversation_facts(
    facts: dict[str, Any],
    conversation: Any,
    read_count: int | None,
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
    _put(facts, "conversation.unread_count", _unread(conversation, read_count))
    _put(facts, "conversation.created_at", conversation.created_at.isoformat())
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


def _contact_facts(facts: dict[str, Any], contact: Any) -> None:
    for name in _CONTACT_FIELDS:
        _put(facts, f"contact.{name}", getattr(contact, name))
    _put(facts, "contact.tags", list(contact.tags or []))
    _put_custom(facts, "contact", contact.custom_attributes)


def _schedule_of(which: Any) -> Any:
    return (
        select(WorkingHours.schedule)
        .where(WorkingHours.tenant_id == bindparam("tenant_id"), which)
        .limit(1)
        .scalar_subquery()
    )


def _timezone() -> Any:
    return select(Tenant.timezone).where(Tenant.id == bindparam("tenant_id")).scalar_subquery()


#: The columns facts read (Core bundles, not ORM objects: no identity-map work).
_CONVERSATION = Bundle(
    "conversation",
    *(getattr(Conversation, name) for name in _EVENT_CONVERSATION_FIELDS),
    Conversation.id,
    Conversation.inbound_count,
    Conversation.created_at,
    Conversation.last_activity_at,
)
_CONTACT = Bundle(
    "contact",
    *(getattr(Contact, name) for name in _CONTACT_FIELDS),
    Contact.tags,
    Contact.custom_attributes,
)


def _context_statement(which: Any) -> Any:
    """One statement: the conversation(s) ``which`` picks, each with its contact, the
    assignee's read count, the tenant's timezone, the database clock and the working
    hours that apply (the division's override, else the tenant's), and its active mute.

    PERF: the evaluator and dry-run build facts for every event: one round trip (one per
    batch for the evaluator), and the statement is built once (bound per call).
    """
    read = (
        select(ConversationRead.read_inbound_count)
        .where(
            ConversationRead.conversation_id == Conversation.id,
            ConversationRead.user_id == Conversation.assignee_id,
        )
        .scalar_subquery()
    )
    division_hours = _schedule_of(WorkingHours.division_id == Conversation.division_id)
    tenant_hours = _schedule_of(WorkingHours.division_id.is_(None))
    active_mute = and_(
        ConversationMute.conversation_id == Conversation.id,
        ConversationMute.muted_until.is_(None) | (ConversationMute.muted_until > func.now()),
    )
    return (
        select(
            _CONVERSATION,
            _CONTACT,
            read.label("read_count"),
            _timezone().label("timezone"),
            func.now().label("now"),
            func.coalesce(division_hours, tenant_hours).label("schedule"),
            exists().where(active_mute).label("muted"),
            select(ConversationMute.muted_until)
            .where(active_mute)
            .scalar_subquery()
            .label("muted_until"),
        )
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(Conversation.tenant_id == bindparam("tenant_id"), which)
    )


_CONTEXT = _context_statement(Conversation.id == bindparam("conversation_id"))
#: The same for a batch of conversations (``conversation_ids``: a list).
_CONTEXTS = _context_statement(
    Conversation.id == any_(bindparam("conversation_ids", type_=ARRAY(Uuid)))
)

#: The timezone, the clock and the tenant's working hours, for events without a conversation.
_TENANT_CONTEXT = select(
    _timezone().label("timezone"),
    func.now().label("now"),
    _schedule_of(WorkingHours.division_id.is_(None)).label("schedule"),
)


def _context(session: Session, tenant_id: uuid.UUID, conversation_id: uuid.UUID | None) -> Any:
    """The :func:`_context_statement` row, None when the conversation is not found."""
    if conversation_id is None:
        return None
    params = {"tenant_id": tenant_id, "conversation_id": conversation_id}
    return session.execute(_CONTEXT, params).one_or_none()


def _tenant_context(session: Session, tenant_id: uuid.UUID) -> Any:
    return session.execute(_TENANT_CONTEXT, {"tenant_id": tenant_id}).one()


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
    if event_type == "conversation.tags_updated" and payload.get("tags") is not None:
        after = list(payload["tags"])
        removed = list(payload.get("removed") or [])
        before = [t for t in after if t not in set(payload.get("added") or [])] + removed
        return {"conversation.tags": [before, after]}
    if event_type == "conversation.transferred" and "from_division_id" in payload:
        return {
            "conversation.division_id": [payload["from_division_id"], payload.get("division_id")],
            "conversation.assignee_id": [payload.get("from_agent_id"), payload.get("to_agent_id")],
        }
    return {}


@dataclass(frozen=True, slots=True)
class Mute:
    """The conversation is muted (``mute`` action) until ``until`` (None: until unmuted)."""

    until: dt.datetime | None


def gather(
    session: Session,
    tenant_id: uuid.UUID,
    event_type: str,
    payload: Mapping[str, Any],
    *,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], Mute | None]:
    """The facts of one event as of ``now`` (the database clock by default), and the
    conversation's mute if one is active."""
    row = _context(session, tenant_id, conversation_id_of(event_type, payload))
    return _facts_of(session, tenant_id, event_type, payload, row, now)


def gather_many(
    session: Session, tenant_id: uuid.UUID, events: list[tuple[str, Mapping[str, Any]]]
) -> list[tuple[dict[str, Any], Mute | None]]:
    """:func:`gather` for a batch of one tenant's ``(event type, payload)``, as of the
    database clock: their conversations are read in one statement (the evaluator's batch).
    """
    wanted = [conversation_id_of(event_type, payload) for event_type, payload in events]
    ids = sorted({conversation_id for conversation_id in wanted if conversation_id})
    rows = {}
    if ids:
        params = {"tenant_id": tenant_id, "conversation_ids": ids}
        rows = {row.conversation.id: row for row in session.execute(_CONTEXTS, params)}
    return [
        _facts_of(session, tenant_id, event_type, payload, rows.get(conversation_id), None)
        for (event_type, payload), conversation_id in zip(events, wanted, strict=True)
    ]


def _facts_of(
    session: Session,
    tenant_id: uuid.UUID,
    event_type: str,
    payload: Mapping[str, Any],
    row: Any,
    now: dt.datetime | None,
) -> tuple[dict[str, Any], Mute | None]:
    """The facts from a :func:`_context_statement` row (None: no conversation found)."""
    facts: dict[str, Any] = {"event.type": event_type}
    mute = None
    if row is not None:
        now = now or row.now
        _conversation_facts(facts, row.conversation, row.read_count, event_type, payload, now)
        _contact_facts(facts, row.contact)
        mute = Mute(row.muted_until) if row.muted else None
    else:
        row = _tenant_context(session, tenant_id)
        now = now or row.now
        contact_id = _uuid(payload.get("id")) if event_type.startswith("contact.") else None
        if contact_id is not None:
            contact = session.scalar(
                select(Contact).where(Contact.tenant_id == tenant_id, Contact.id == contact_id)
            )
            if contact is not None:
                _contact_facts(facts, contact)
    if event_type == "message.created":
        _message_facts(facts, payload)
    facts.update(time_facts(now, row.timezone or "UTC", row.schedule))
    return facts, mute

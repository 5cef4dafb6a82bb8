"""Contacts: listed, searched, read and corrected by agents (created only by inbound messages)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from shared import activity
from shared.context import Ctx
from shared.db import fetch_rows
from shared.errors import NotFound
from shared.events import emit
from shared.inbox.access import visible
from shared.models import Contact, Conversation
from shared.pagination import Page, paginate, paginate_rows
from shared.schemas.inbox import ContactView
from shared.sql import contains_pattern, tenant_row

#: Fields ``PATCH /api/contacts/{id}`` may change.
EDITABLE_FIELDS = (
    "name",
    "email",
    "phone",
    "country",
    "language",
    "tags",
    "custom_attributes",
    "opted_out_at",
)

# PERF: exactly the expression of the trigram index ix_contacts_search_trgm (see
# shared/models/inbox.py), so the planner can match it: ILIKE '%q%' becomes a GIN
# bitmap scan. A different spelling (e.g. bound '' and ' ' parameters) would not match.
#: What a written phone number carries besides its digits and leading +.
PHONE_JUNK = re.compile(r"[\s().-]")
#: A search that is a phone number as people write it ("+1 (415) 555-0177").
_PHONE_QUERY = re.compile(r"^\+?[\d\s().-]*\d[\d\s().-]*$")


def compact_phone(value: str) -> str:
    """A phone number as contacts store it: spaces, dots, dashes and parentheses dropped."""
    return PHONE_JUNK.sub("", value)


def search_term(q: str) -> str:
    """What a contact search looks for: a phone number written as people write it
    ("+1 (415) 555-0177") is compacted as stored; anything else is kept as typed.

    NOTE: both searches of a contact (the contacts list and the inbox's ``q``) use this,
    so a number pasted into either finds the same contacts.
    """
    return compact_phone(q) if _PHONE_QUERY.match(q) else q


SEARCH_TEXT = literal_column(
    "(coalesce(contacts.name, '') || ' ' || coalesce(contacts.phone, '') || ' ' "
    "|| coalesce(contacts.email, ''))"
)

_CONTACT_COLUMNS = (
    Contact.id,
    Contact.name,
    Contact.channel,
    Contact.phone,
    Contact.email,
    Contact.avatar_url,
    Contact.external_id,
    Contact.country,
    Contact.language,
    Contact.tags,
    Contact.custom_attributes,
    Contact.last_inbound_at,
    Contact.opted_out_at,
    Contact.created_at,
    Contact.updated_at,
)


def list_contacts(
    session: Session,
    ctx: Ctx,
    *,
    limit: int,
    cursor: str | None = None,
    q: str | None = None,
    channel: str | None = None,
    tag: str | None = None,
) -> Page[dict[str, Any]]:
    """A page of the tenant's contacts, newest first, as ``ContactView`` dicts.

    NOTE: contacts are tenant-wide (any agent may list them); conversations stay
    restricted by :func:`~shared.inbox.access.visible`.
    """
    query = select(*_CONTACT_COLUMNS).where(Contact.tenant_id == ctx.tenant_id)
    if q:
        query = query.where(SEARCH_TEXT.ilike(contains_pattern(search_term(q))))
    if channel:
        query = query.where(Contact.channel == channel)
    if tag:
        query = query.where(Contact.tags.contains([tag]))
    return paginate_rows(
        session,
        query,
        created_at=Contact.created_at,
        id_column=Contact.id,
        limit=limit,
        cursor=cursor,
    )


# PERF: built once; the caller's ids are bind parameters.
_ITEM_STATEMENT = select(*_CONTACT_COLUMNS).where(
    Contact.tenant_id == bindparam("tenant_id", type_=Contact.tenant_id.type),
    Contact.id == bindparam("contact_id", type_=Contact.id.type),
)
_ITEM_KEYS = tuple(_ITEM_STATEMENT.selected_columns.keys())


def get_item(session: Session, ctx: Ctx, contact_id: uuid.UUID) -> dict[str, Any]:
    """A contact of the caller's tenant as a ``ContactView`` dict, or 404.

    PERF: what ``GET /api/contacts/{id}`` answers, read by one prebuilt statement on the
    driver: loading the ORM object and validating it into the view cost ~3 times the query.
    """
    rows = fetch_rows(
        session.connection(),
        _ITEM_STATEMENT,
        {"tenant_id": ctx.tenant_id, "contact_id": contact_id},
    )
    if not rows:
        raise NotFound("Contact not found")
    return dict(zip(_ITEM_KEYS, rows[0], strict=True))


def get_contact(
    session: Session, ctx: Ctx, contact_id: uuid.UUID, *, for_update: bool = False
) -> Contact:
    """A contact of the caller's tenant, or 404 (also for another tenant's)."""
    return tenant_row(
        session, Contact, ctx.tenant_id, contact_id, missing="Contact not found", lock=for_update
    )


def _differs(current: Any, value: Any) -> bool:
    """Whether ``value`` changes a field, compared as JSON: ``True == 1 == 1.0`` in Python,
    so a custom attribute sent as ``true`` over ``1`` was kept as ``1``."""
    if isinstance(value, dict):
        return json.dumps(current, sort_keys=True) != json.dumps(value, sort_keys=True)
    return current != value


def update_contact(
    session: Session, ctx: Ctx, contact_id: uuid.UUID, changes: dict[str, Any]
) -> Contact:
    """Apply the fields sent (already validated); emit contact.updated when any changed.

    ``tags`` and ``custom_attributes`` replace the whole value (send the full list/object).
    ``opted_out`` (true/false) sets or clears ``opted_out_at``.
    """
    contact = get_contact(session, ctx, contact_id, for_update=True)
    if "opted_out" in changes:  # campaigns skip a contact who opted out (stamped once)
        changes = dict(changes)
        opted_out = changes.pop("opted_out")
        now = contact.opted_out_at or session.scalar(select(func.now()))
        changes["opted_out_at"] = now if opted_out else None
    changed = {
        field: value
        for field, value in changes.items()
        if field in EDITABLE_FIELDS and _differs(getattr(contact, field), value)
    }
    if not changed:
        return contact
    before = ContactView.data(contact)
    for field, value in changed.items():
        setattr(contact, field, value)
        flag_modified(contact, field)  # the ORM, too, took ``true`` over ``1`` for no change
    session.flush()
    session.refresh(contact)
    after = ContactView.data(contact)
    fields = sorted(changed)
    activity.record(
        session,
        ctx,
        "contact.updated",
        "contact",
        contact.id,
        before={f: before[f] for f in fields},
        after={f: after[f] for f in fields},
    )
    emit(
        session,
        "contact.updated",
        after | {"changed_fields": fields},
        tenant_id=ctx.tenant_id,
        actor=ctx.actor,
    )
    return contact


def list_contact_conversations(
    session: Session,
    ctx: Ctx,
    contact_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
) -> Page[Conversation]:
    """The contact's conversations the caller may see, newest first."""
    get_contact(session, ctx, contact_id)
    query = select(Conversation).where(visible(ctx), Conversation.contact_id == contact_id)
    return paginate(
        session,
        query,
        created_at=Conversation.created_at,
        id_column=Conversation.id,
        limit=limit,
        cursor=cursor,
    )

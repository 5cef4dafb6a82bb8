"""Inbox rows inserted with the ORM (contacts and conversations come from other issues' code)."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.models import Contact, Conversation, DivisionMember, Message, OutboxEvent
from shared.models.inbox import Division

T = TypeVar("T")
_numbers = itertools.count(1)
NOW = dt.datetime.now(dt.UTC)


class Inbox:
    """Insert inbox rows for one tenant."""

    def __init__(self, tenant_id: str):
        self.tenant_id = uuid.UUID(tenant_id)

    def contact(self, **fields: Any) -> dict[str, Any]:
        n = next(_numbers)
        values = {
            "channel": "whatsapp",
            "external_id": f"ext-{n}-{uuid.uuid4().hex[:6]}",
            "name": f"Contact {n}",
            "phone": f"+1415555{n:04d}",
            "last_inbound_at": NOW,
        } | fields
        with session_scope() as session:
            row = Contact(tenant_id=self.tenant_id, **values)
            session.add(row)
            session.flush()
            return {"id": row.id, **values}

    def conversation(self, contact: dict | None = None, **fields: Any) -> dict[str, Any]:
        contact = contact or self.contact(channel=fields.get("channel", "whatsapp"))
        # The contact's last inbound was written in this conversation (the WhatsApp window).
        values = {
            "channel": contact["channel"],
            "status": "open",
            "last_inbound_at": contact.get("last_inbound_at"),
        } | fields
        with session_scope() as session:
            row = Conversation(tenant_id=self.tenant_id, contact_id=contact["id"], **values)
            session.add(row)
            session.flush()
            return {"id": row.id, "contact_id": contact["id"], **values}

    def message(self, conversation: dict, body: str, **fields: Any) -> uuid.UUID:
        values = {
            "channel": conversation["channel"],
            "direction": "inbound",
            "sender_type": "contact",
            "status": "received",
            "body": body,
        } | fields
        with session_scope() as session:
            row = Message(tenant_id=self.tenant_id, conversation_id=conversation["id"], **values)
            session.add(row)
            session.flush()
            return row.id

    def division(self, *members: str) -> uuid.UUID:
        with session_scope() as session:
            division = Division(tenant_id=self.tenant_id, name=f"Division {next(_numbers)}")
            session.add(division)
            session.flush()
            for user_id in members:
                session.add(
                    DivisionMember(
                        tenant_id=self.tenant_id, division_id=division.id, user_id=user_id
                    )
                )
            return division.id

    def row(self, model: type[T], row_id) -> T:
        with session_scope() as session:
            return session.get_one(model, row_id)

    def events(self, event_type: str) -> list[OutboxEvent]:
        with session_scope() as session:
            return list(
                session.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.tenant_id == self.tenant_id, OutboxEvent.type == event_type)
                    .order_by(OutboxEvent.occurred_at)
                )
            )


@pytest.fixture
def inbox(request) -> Inbox:
    return Inbox(request.getfixturevalue("workspace").tenant["id"])


@pytest.fixture
def other_inbox(request) -> Inbox:
    return Inbox(request.getfixturevalue("other_workspace").tenant["id"])


def whatsapp_account(inbox) -> uuid.UUID:
    """A WhatsApp account of the inbox's tenant (a business number of its own)."""
    from shared.channels import accounts
    from shared.context import Ctx

    with session_scope() as session:
        return accounts.create_account(
            session,
            Ctx.system(inbox.tenant_id),
            channel="whatsapp",
            name="WhatsApp",
            external_id=str(uuid.uuid4().int)[:15],
            settings={},
            credentials={},
        ).id

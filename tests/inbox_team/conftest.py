"""Fixtures for notes, quick replies and divisions: workspaces, conversations, activity."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.models import ActivityLog, Contact, Conversation
from tests.workspaces import Workspace, register


@pytest.fixture
def workspace(client) -> Workspace:
    return register(client)


@pytest.fixture
def other_workspace(client) -> Workspace:
    return register(client)


def make_conversation(
    ws: Workspace,
    *,
    assignee_id: str | None = None,
    division_id: str | None = None,
) -> str:
    """Insert a contact and an open WhatsApp conversation of ``ws``; return the conversation id.

    NOTE: the conversations API belongs to another part of the issue; rows are enough here.
    """
    tenant_id = uuid.UUID(ws.tenant["id"])
    with session_scope() as session:
        contact = Contact(
            tenant_id=tenant_id,
            channel="whatsapp",
            external_id=uuid.uuid4().hex,
            name="Casey Contact",
        )
        session.add(contact)
        session.flush()
        conversation = Conversation(
            tenant_id=tenant_id,
            contact_id=contact.id,
            channel="whatsapp",
            assignee_id=uuid.UUID(assignee_id) if assignee_id else None,
            division_id=uuid.UUID(division_id) if division_id else None,
        )
        session.add(conversation)
        session.flush()
        return str(conversation.id)


def conversation_division(conversation_id: str) -> uuid.UUID | None:
    """The division of a conversation; raises if the row is gone."""
    with session_scope() as session:
        return session.execute(
            select(Conversation.division_id).where(Conversation.id == uuid.UUID(conversation_id))
        ).scalar_one()


def actions(ws: Workspace, entity_type: str) -> list[ActivityLog]:
    """The activity log rows of ``ws`` about ``entity_type``, oldest first."""
    with session_scope() as session:
        return list(
            session.scalars(
                select(ActivityLog)
                .where(
                    ActivityLog.tenant_id == uuid.UUID(ws.tenant["id"]),
                    ActivityLog.entity_type == entity_type,
                )
                .order_by(ActivityLog.created_at, ActivityLog.id)
            )
        )

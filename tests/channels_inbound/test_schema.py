"""The channel schema's contracts other features build on: statuses, credentials, resolution."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text

from shared.channels import accounts, statuses
from shared.context import Ctx
from shared.db import session_scope
from shared.errors import Conflict
from shared.models import Contact, Conversation, IntegrationAccount, Message, OutboxEvent


def _ctx(workspace) -> Ctx:
    return Ctx.system(uuid.UUID(workspace.tenant["id"]))


def _outbound_message(tenant_id: uuid.UUID) -> uuid.UUID:
    with session_scope() as session:
        contact = Contact(tenant_id=tenant_id, channel="whatsapp", external_id=uuid.uuid4().hex)
        session.add(contact)
        session.flush()
        conversation = Conversation(tenant_id=tenant_id, contact_id=contact.id, channel="whatsapp")
        session.add(conversation)
        session.flush()
        message = Message(
            tenant_id=tenant_id,
            conversation_id=conversation.id,
            channel="whatsapp",
            direction="outbound",
            sender_type="system",
            body="hi",
            status="queued",
        )
        session.add(message)
        session.flush()
        return message.id


@pytest.mark.parametrize(
    ("current", "new", "moves"),
    [
        ("queued", "sent", True),
        ("sent", "delivered", True),
        ("delivered", "read", True),
        ("queued", "read", True),
        ("read", "delivered", False),
        ("delivered", "sent", False),
        ("read", "read", False),
        ("queued", "failed", True),
        ("sent", "failed", True),
        ("delivered", "failed", False),
        ("failed", "sent", False),
        ("failed", "read", False),
        ("received", "read", False),
    ],
)
def test_statuses_only_move_forward(current, new, moves):
    assert statuses.can_move(current, new) is moves


def test_apply_status_emits_once_and_never_goes_back(workspace):
    tenant_id = uuid.UUID(workspace.tenant["id"])
    message_id = _outbound_message(tenant_id)
    for status, expected in [("sent", True), ("read", True), ("delivered", False), ("sent", False)]:
        with session_scope() as session:
            message = session.get(Message, message_id, with_for_update=True)
            assert statuses.apply_status(session, message, status) is expected
    with session_scope() as session:
        message = session.get(Message, message_id)
        assert message.status == "read"
        assert set(message.metadata_["status_timestamps"]) == {"sent", "read"}
        events = session.scalars(
            select(OutboxEvent).where(
                OutboxEvent.tenant_id == tenant_id, OutboxEvent.type == "message.status_updated"
            )
        ).all()
    assert [e.data["status"] for e in sorted(events, key=lambda e: e.occurred_at)] == [
        "sent",
        "read",
    ]
    assert {e.data["previous_status"] for e in events} == {"queued", "sent"}


def test_failed_keeps_the_provider_error(workspace):
    message_id = _outbound_message(uuid.UUID(workspace.tenant["id"]))
    with session_scope() as session:
        message = session.get(Message, message_id)
        assert statuses.apply_status(
            session, message, "failed", error_code="131047", error_message="Re-engagement"
        )
        assert not statuses.apply_status(session, message, "delivered")
    with session_scope() as session:
        message = session.get(Message, message_id)
        assert (message.status, message.error_code) == ("failed", "131047")


def test_credentials_are_encrypted_and_resolution_is_global(workspace, other_workspace):
    phone_id = str(uuid.uuid4().int)[:15]
    with session_scope() as session:
        account = accounts.create_account(
            session,
            _ctx(workspace),
            channel="whatsapp",
            name="Support line",
            external_id=phone_id,
            credentials={"access_token": "EAAG-secret-token", "app_secret": "app-secret"},
        )
        account_id = account.id
    with session_scope() as session:
        raw = session.scalar(
            text("SELECT credentials_encrypted FROM integration_accounts WHERE id = :id"),
            {"id": account_id},
        )
        assert "EAAG-secret-token" not in raw
        resolved = accounts.resolve_account(session, "whatsapp", phone_id)
        assert resolved.id == account_id
        assert str(resolved.tenant_id) == workspace.tenant["id"]
        assert accounts.decrypt_credentials(resolved)["access_token"] == "EAAG-secret-token"
        assert resolved.is_default  # the channel's first account
        assert accounts.resolve_account(session, "messenger", phone_id) is None
    # The same id cannot be connected twice, by any tenant.
    with pytest.raises(Conflict), session_scope() as session:
        accounts.create_account(
            session, _ctx(other_workspace), channel="whatsapp", name="x", external_id=phone_id
        )
    with session_scope() as session:
        assert session.scalar(
            select(IntegrationAccount.tenant_id).where(IntegrationAccount.external_id == phone_id)
        ) == uuid.UUID(workspace.tenant["id"])

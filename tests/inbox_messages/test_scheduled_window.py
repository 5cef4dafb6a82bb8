"""Scheduled sends obey what a reply does: the window per business number, a resolution."""

from __future__ import annotations

import datetime as dt
import time
import uuid

from sqlalchemy import func, select, text, update

from shared.db import get_sessionmaker, session_scope
from shared.models import Conversation, Message, ScheduledMessage
from tests.inbox_messages.conftest import whatsapp_account
from workers import queues


def _due(workspace, conversation, body: str) -> uuid.UUID:
    """A pending row already due, by the workspace's admin."""
    with session_scope() as session:
        now = session.scalar(select(func.now()))
        row = ScheduledMessage(
            tenant_id=conversation["tenant_id"],
            conversation_id=conversation["id"],
            author_id=uuid.UUID(workspace.admin["id"]),
            body=body,
            run_at=now - dt.timedelta(seconds=1),
            due_at=now - dt.timedelta(seconds=1),
            timezone="UTC",
        )
        session.add(row)
        session.flush()
        return row.id


def test_a_scheduled_send_on_a_number_the_contact_never_wrote_to_fails_window_closed(
    workspace, inbox, worker, broker
):
    """The contact wrote to number A just now; the agent scheduled a free-form message in
    their conversation on number B. Meta refuses it (131047): a reply there answers 409
    window_closed, and the scheduled send must fail the same way, storing nothing."""
    number_a, number_b = whatsapp_account(inbox), whatsapp_account(inbox)
    contact = inbox.contact()  # wrote just now
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
    on_b = inbox.conversation(contact, integration_account_id=number_b, last_inbound_at=stale)
    on_a = inbox.conversation(contact, integration_account_id=number_a)  # to A, now
    on_a["tenant_id"] = on_b["tenant_id"] = inbox.tenant_id

    replied = workspace.call(
        "POST", f"/api/conversations/{on_b['id']}/messages", json={"body": "hi"}
    )
    assert replied.status_code == 409 and replied.json["error"]["code"] == "window_closed"

    scheduled_id = _due(workspace, on_b, "following up")
    on_open_number = _due(workspace, on_a, "following up on A")
    from workers.actors.timed import send_scheduled_messages

    send_scheduled_messages.send([str(scheduled_id), str(on_open_number)])
    broker.join(queues.CHANNELS)
    with session_scope() as session:
        assert session.get(ScheduledMessage, on_open_number).status == "sent"
        row = session.get(ScheduledMessage, scheduled_id)
        assert (row.status, row.error_code) == ("failed", "window_closed")
        stored = session.scalar(
            select(func.count()).select_from(Message).where(Message.conversation_id == on_b["id"])
        )
        assert stored == 0


def _blocked_on_conversations() -> int:
    with session_scope() as session:
        return session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query ILIKE '%conversations%'"
            )
        )


def test_a_scheduled_send_racing_a_resolution_is_counted_before_it_or_refused(
    workspace, inbox, worker, broker
):
    """The send read the conversation open; a resolution committed before its writes
    landed. As a reply racing one (409), the scheduled message must not be stored and
    sent on the resolved conversation: it fails conversation_resolved."""
    conversation = inbox.conversation(channel="api")
    conversation["tenant_id"] = inbox.tenant_id
    scheduled_id = _due(workspace, conversation, "following up")
    resolving = get_sessionmaker()()  # a resolution in flight: it holds the row
    resolving.execute(
        update(Conversation)
        .where(Conversation.id == conversation["id"])
        .values(status="resolved", resolved_at=func.now())
    )
    from workers.actors.timed import send_scheduled_messages

    try:
        send_scheduled_messages.send([str(scheduled_id)])
        deadline = time.monotonic() + 10
        while _blocked_on_conversations() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        resolving.commit()
    finally:
        resolving.close()
    broker.join(queues.CHANNELS)
    with session_scope() as session:
        row = session.get(ScheduledMessage, scheduled_id)
        assert (row.status, row.error_code) == ("failed", "conversation_resolved")
        resolved = session.get(Conversation, conversation["id"])
        assert (resolved.status, resolved.message_count) == ("resolved", 0)

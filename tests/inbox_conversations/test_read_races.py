"""Two "mark as read" of one agent at once: what they read is announced once."""

from __future__ import annotations

import threading
import time
import uuid

import falcon.testing
from sqlalchemy import select, text

from shared.db import get_sessionmaker, session_scope
from shared.models import ConversationRead
from tests.inbox_conversations.conftest import add_conversation, events, tid


def _waiting_on_reads() -> int:
    with session_scope() as session:
        return session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query ILIKE '%conversation_reads%'"
            )
        )


def test_two_reads_at_once_emit_one_conversation_read(workspace, app):
    conversation_id = add_conversation(workspace, channel="api", inbound_count=2)
    user_id = uuid.UUID(workspace.admin["id"])
    with session_scope() as session:  # read before the last two messages came in
        session.add(
            ConversationRead(
                tenant_id=tid(workspace),
                conversation_id=uuid.UUID(conversation_id),
                user_id=user_id,
                read_inbound_count=0,
            )
        )
    # Another request of the agent holds the read row: both reads below queue behind it.
    holder = get_sessionmaker()()
    holder.scalars(
        select(ConversationRead)
        .where(ConversationRead.conversation_id == uuid.UUID(conversation_id))
        .with_for_update()
    ).all()
    answers = []

    def read() -> None:
        client = falcon.testing.TestClient(app)
        answers.append(
            client.simulate_post(
                f"/api/conversations/{conversation_id}/read", headers=workspace.headers
            )
        )

    threads = [threading.Thread(target=read) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while _waiting_on_reads() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        holder.rollback()
        holder.close()
    for thread in threads:
        thread.join(20)
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert {a.json["unread_count"] for a in answers} == {0}
    announced = [
        e for e in events(workspace, "conversation.read") if e.data["id"] == conversation_id
    ]
    assert len(announced) == 1, [e.data for e in announced]

"""A conversation's last message never moves back to an older one.

Two writers of one conversation meet on its row lock: a reply whose statement took its
clock, then waited for the row held by a writer of a newer message (an inbound one, a
scheduled batch). Applied as it came, the older one's count set ``last_message_at`` back
and put its text in the preview, though the newer message stays the last one listed.
Here the row holds a message newer than any that follows, as it does once that writer
commits first.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import update

from shared.context import Actor, Ctx
from shared.db import session_scope
from shared.inbox.outbound_many import Draft, create_outbound_messages
from shared.models import Conversation
from tests.channels_api.conftest import ApiChannel

NEWER = "the newer message"


def _newer_message_counted(conversation_id: str) -> dt.datetime:
    """The row as a newer message's writer left it; that message's time."""
    at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    with session_scope() as session:
        session.execute(
            update(Conversation)
            .where(Conversation.id == uuid.UUID(conversation_id))
            .values(last_message_at=at, last_activity_at=at, last_message_preview=NEWER)
        )
    return at


def _last(ws, conversation_id: str) -> tuple[dt.datetime, str, int]:
    shown = ws.call("GET", f"/api/conversations/{conversation_id}").json
    at = dt.datetime.fromisoformat(shown["last_message_at"].replace("Z", "+00:00"))
    return at, shown["last_message_preview"], shown["message_count"]


def test_an_older_reply_or_inbound_message_keeps_the_newer_last_message(ws, api: ApiChannel):
    conversation_id = api.inbound("Where is my order?")["conversation_id"]
    at = _newer_message_counted(conversation_id)
    _, _, count = _last(ws, conversation_id)

    api.reply(conversation_id, "It ships today.")
    assert _last(ws, conversation_id) == (at, NEWER, count + 1)

    api.inbound("And the invoice?")
    assert _last(ws, conversation_id) == (at, NEWER, count + 2)


def test_an_older_batch_send_keeps_the_newer_last_message(ws, api: ApiChannel):
    conversation_id = api.inbound("Where is my order?")["conversation_id"]
    at = _newer_message_counted(conversation_id)
    _, _, count = _last(ws, conversation_id)
    admin_id = uuid.UUID(ws.admin["id"])
    ctx = Ctx(uuid.UUID(ws.tenant["id"]), Actor("user", admin_id), user_id=admin_id)
    with session_scope() as session:
        conversation = session.get(Conversation, uuid.UUID(conversation_id))
        [sent] = create_outbound_messages(session, [Draft(ctx, conversation, body="Reminder")])
        assert sent.body == "Reminder"
    assert _last(ws, conversation_id) == (at, NEWER, count + 1)

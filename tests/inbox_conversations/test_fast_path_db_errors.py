"""The one-statement fast paths (``db.fetch_rows``) meet the database's refusals as the rest
of the API does (tests/api/test_database_errors.py): a wait on another transaction's lock
past ``DB_STATEMENT_TIMEOUT_MS`` (15 s) is a 503 ``database_timeout``, never a 500.

The driver's own exceptions went past the API's handlers, which catch SQLAlchemy's.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.db import get_sessionmaker
from shared.models import Conversation
from tests.inbox_conversations.conftest import add_conversation


def _conversation(conversation_id: str):
    return select(Conversation).where(Conversation.id == uuid.UUID(conversation_id))


def test_an_assignment_waiting_past_the_statement_timeout_is_a_503(workspace):
    """Another transaction (a bulk job, an import, a slow request) holds the conversation."""
    conversation_id = add_conversation(workspace, channel="api")
    holder = get_sessionmaker()()
    holder.scalars(_conversation(conversation_id).with_for_update()).one()
    try:
        resp = workspace.call(
            "PATCH",
            f"/api/conversations/{conversation_id}/assignment",
            json={"assignee_id": workspace.admin["id"]},
        )
    finally:
        holder.rollback()
        holder.close()

    assert resp.status_code == 503, resp.text
    assert resp.json["error"]["code"] == "database_timeout"
    assert resp.headers["Retry-After"] == "1"

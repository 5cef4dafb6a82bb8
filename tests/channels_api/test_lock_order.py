"""Inbound messages against the background work on their conversation: no deadlock.

A conversation's row is referenced by its messages, SLA clocks and breaches, so each
insert of one takes a FOR KEY SHARE lock on it. An ingest that held the conversation
FOR UPDATE (which conflicts with KEY SHARE) and then waited for the conversation's SLA
clock deadlocked with ``check_sla`` holding that clock and inserting its breach.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from shared.db import get_sessionmaker
from shared.models import ConversationSla
from shared.timekeeping import sla
from tests.channels_api.conftest import ApiChannel
from tests.lock_races import race


def _clock_claimed(conversation_id: str):
    """A session that claimed the conversation's SLA clock, as ``check_sla`` does first."""
    holder = get_sessionmaker()()
    found = holder.scalar(
        select(ConversationSla)
        .where(ConversationSla.conversation_id == uuid.UUID(conversation_id))
        .with_for_update()
    )
    assert found is not None
    return holder, found.first_response_due_at


def test_an_inbound_message_does_not_deadlock_with_a_running_sla_check(workspace):
    api = ApiChannel(workspace, None)
    body = {"name": "Fast", "first_response_minutes": 30}
    assert workspace.call("POST", "/api/sla-policies", json=body).status_code == 201
    conversation = api.inbound("Hello")["conversation_id"]
    holder, due_at = _clock_claimed(conversation)
    failures: list[str] = []

    def breach():
        # check_sla's second half: the claimed clock's breach row is inserted.
        try:
            sla.check_due(holder, now=due_at + dt.timedelta(minutes=1))
        except DBAPIError as exc:
            failures.append(str(exc.orig))
            holder.rollback()

    body = {"contact": {"source_id": "cust-1", "name": "Carla Customer"}, "content": "Still there?"}
    resp = race(holder, lambda: api.post(body), then=breach)

    assert failures == []
    assert resp is not None and resp.status_code == 201, resp and resp.text
    assert resp.json["conversation_id"] == conversation

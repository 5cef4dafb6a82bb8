"""Deleting a dead letter another request is deleting at that moment: one 204, then 404."""

from __future__ import annotations

import uuid

from sqlalchemy import delete

from shared.db import get_sessionmaker, session_scope
from shared.models import DeadLetter
from tests.lock_races import race
from tests.workspaces import register


def test_a_dead_letter_deleted_twice_at_once_is_404_the_second_time(client):
    ws = register(client)
    with session_scope() as session:
        row = DeadLetter(
            message_id=uuid.uuid4().hex,
            queue_name="default",
            actor_name="noop",
            args=[],
            kwargs={},
            options={},
            tenant_id=uuid.UUID(ws.tenant["id"]),
            error="boom",
        )
        session.add(row)
        session.flush()
        dead_letter_id = row.id
    holder = get_sessionmaker()()
    holder.execute(delete(DeadLetter).where(DeadLetter.id == dead_letter_id))

    resp = race(holder, lambda: ws.call("DELETE", f"/api/ops/dead-letters/{dead_letter_id}"))

    assert resp.status_code == 404, resp.text
    assert resp.json["error"]["code"] == "not_found"

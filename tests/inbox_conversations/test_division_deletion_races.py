"""A division deleted while a transfer or a bulk action moves conversations into it.

The move read the division as existing; the deletion committed before the move's
write: the move must answer 422 (no such division), never a foreign key's 500.
"""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import text

from shared.context import Ctx
from shared.db import get_sessionmaker, session_scope
from shared.inbox import divisions
from tests.inbox_conversations.conftest import add_conversation, add_division, row, tid


def _blocked_on_a_lock() -> int:
    with session_scope() as session:
        return session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )


def _while_deleting(ws, division: str, call) -> int:
    """Run ``call()`` (an HTTP request) while the division's deletion is in flight; commit
    the deletion once the request waits on it (or has answered); the request's status."""
    deleting = get_sessionmaker()()
    answered: list[int] = []
    try:
        divisions.delete_division(deleting, Ctx.system(tid(ws)), uuid.UUID(division))
        deleting.flush()
        thread = threading.Thread(target=lambda: answered.append(call().status_code))
        thread.start()
        deadline = time.monotonic() + 10
        while not answered and _blocked_on_a_lock() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        deleting.commit()
    finally:
        deleting.close()
    thread.join(timeout=30)
    return answered[0]


def test_a_transfer_racing_the_divisions_deletion_is_refused(workspace):
    ws = workspace
    doomed = add_division(ws, "Doomed")
    conversation = add_conversation(ws)
    status = _while_deleting(
        ws,
        doomed,
        lambda: ws.call(
            "POST", f"/api/conversations/{conversation}/transfer", json={"to_division_id": doomed}
        ),
    )
    assert status == 422
    assert row(conversation).division_id is None


def test_a_bulk_move_racing_the_divisions_deletion_is_refused(workspace):
    ws = workspace
    doomed = add_division(ws, "Doomed")
    conversation = add_conversation(ws)
    status = _while_deleting(
        ws,
        doomed,
        lambda: ws.call(
            "POST",
            "/api/conversations/bulk",
            json={"ids": [conversation], "action": "set_division", "division_id": doomed},
        ),
    )
    assert status == 422
    assert row(conversation).division_id is None

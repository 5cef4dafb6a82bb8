"""Cleanup of old failed events: bounded batches that skip rows another transaction holds."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select

from shared.automation import retries
from shared.db import get_sessionmaker, session_scope
from shared.models import AutomationEvent
from tests.automation.conftest import tid

CLEANUP = "/api/automation/events/cleanup"


def _events(ws, statuses: list[str], age: dt.timedelta) -> list[uuid.UUID]:
    with session_scope() as session:
        rows = [
            AutomationEvent(
                tenant_id=tid(ws),
                outbox_event_id=uuid.uuid4(),
                event_type="message.created",
                payload={},
                fingerprint=uuid.uuid4().hex,
                status=status,
                created_at=func.now() - age,
            )
            for status in statuses
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _left(ws) -> set[uuid.UUID]:
    with session_scope() as session:
        return set(
            session.scalars(select(AutomationEvent.id).where(AutomationEvent.tenant_id == tid(ws)))
        )


def test_cleanup_deletes_in_batches_and_skips_a_row_being_worked_on(
    workspace, other_workspace, monkeypatch
):
    monkeypatch.setattr(retries, "CLEANUP_BATCH", 2)
    old_failed = _events(workspace, ["failed"] * 5, dt.timedelta(days=40))
    kept = _events(workspace, ["failed", "done"], dt.timedelta(days=1)) + _events(
        workspace, ["done", "pending"], dt.timedelta(days=40)
    )
    theirs = _events(other_workspace, ["failed"], dt.timedelta(days=40))

    holder = get_sessionmaker()()
    try:  # another transaction (a retry, the evaluator) holds one old failed row
        holder.execute(
            select(AutomationEvent.id).where(AutomationEvent.id == old_failed[0]).with_for_update()
        ).one()
        resp = workspace.call("POST", CLEANUP, json={"older_than_days": 30})
        assert resp.status_code == 200, resp.text
        assert resp.json == {"deleted": 4}  # three batches (2, 2, 0); the held row skipped
        assert _left(workspace) == {old_failed[0], *kept}
    finally:
        holder.rollback()
        holder.close()
    again = workspace.call("POST", CLEANUP, json={"older_than_days": 30})
    assert again.json == {"deleted": 1}
    assert _left(workspace) == set(kept)
    assert _left(other_workspace) == set(theirs)  # tenant-scoped

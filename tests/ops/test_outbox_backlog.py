"""The outbox backlog operators alert on counts only work that should be flowing.

A suspended tenant's pending events are held on purpose (the sweeper leaves them until
it is reactivated): they are reported apart, as ``held_for_suspended``.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, update

from shared.db import session_scope
from shared.models import OutboxEvent
from tests.admin.conftest import root  # noqa: F401  (a super admin, logged in)
from tests.ops.conftest import OPERATOR
from tests.outbox_rows import unswept_event
from tests.workspaces import register

DAY = 24 * 3600


def _outbox(client, headers=OPERATOR, path="/api/ops/overview"):
    resp = client.simulate_get(path, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json["outbox"]


def test_a_suspended_tenants_pending_events_are_held_not_backlog(root, client, workspace):  # noqa: F811
    suspended = register(client)
    held_ids = [
        unswept_event(uuid.UUID(suspended.tenant["id"]), "contact.created", {"n": n})
        for n in range(3)
    ]
    with session_scope() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(held_ids))
            .values(occurred_at=func.now() - dt.timedelta(days=2))
        )
    unswept_event(uuid.UUID(workspace.tenant["id"]), "contact.created", {"n": 0})
    before = _outbox(client)
    assert before["oldest_pending_age_seconds"] >= 2 * DAY

    gone = root.call("DELETE", f"/api/admin/tenants/{suspended.tenant['id']}")
    assert gone.status_code == 204, gone.text

    for path in ("/api/ops/overview", "/api/automation/worker-metrics"):
        after = _outbox(client, path=path)
        assert after["oldest_pending_age_seconds"] < DAY, after
        assert before["pending"] - after["pending"] >= 3, (before, after)
        assert after["held_for_suspended"] - before["held_for_suspended"] >= 3, after
    summary = client.simulate_get("/api/ops/overview", headers=OPERATOR).json["summary"]
    assert summary["outbox_oldest_pending_age_seconds"] < DAY
    # The active tenant's own slice is its own rows, none held.
    own = _outbox(client, headers=workspace.headers)
    assert own["pending"] >= 1 and own["held_for_suspended"] == 0

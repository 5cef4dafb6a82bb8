"""The purge against live work: a batch holds its rows until it commits; who meets it waits.

Each test runs one purge batch in ``holder`` (rows deleted, not yet committed), starts
the racing call, and commits the batch once that call waits on it (tests/lock_races.py).
"""

from __future__ import annotations

import datetime as dt
import uuid

from shared.db import get_sessionmaker, session_scope
from shared.models import WebhookDelivery
from shared.retention import kinds
from tests.lock_races import race
from tests.retention.conftest import days_ago

BASE = "/api/outgoing-webhooks"


def _endpoint(ws) -> str:
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["agent.created"]}
    resp = ws.call("POST", BASE, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


def _old_failed_delivery(ws, endpoint_id: str) -> uuid.UUID:
    with session_scope() as session:
        row = WebhookDelivery(
            tenant_id=uuid.UUID(ws.tenant["id"]),
            endpoint_id=uuid.UUID(endpoint_id),
            event_id=uuid.uuid4(),
            event_type="agent.created",
            payload={"n": 1},
            status="failed",
            attempt_count=1,
            created_at=days_ago(120),
            finished_at=days_ago(120),
        )
        session.add(row)
        session.flush()
        return row.id


def _purging_deliveries():
    """A session whose purge batch deleted the old deliveries and has not committed."""
    holder = get_sessionmaker()()
    counts = kinds.WEBHOOK_DELIVERIES.purge_batch(holder, days=90, limit=1000)
    assert counts["webhook_deliveries"] >= 1
    return holder


def test_a_resend_racing_the_purge_of_its_delivery_answers_404(workspace):
    endpoint_id = _endpoint(workspace)
    delivery_id = _old_failed_delivery(workspace, endpoint_id)
    path = f"{BASE}/{endpoint_id}/deliveries/{delivery_id}/resend"

    answered = race(_purging_deliveries(), lambda: workspace.call("POST", path))

    assert answered.status_code == 404, answered.text


def test_a_recover_racing_the_purge_resends_nothing_of_what_it_deleted(workspace):
    endpoint_id = _endpoint(workspace)
    _old_failed_delivery(workspace, endpoint_id)
    now = dt.datetime.now(dt.UTC)
    window = {
        "since": (now - dt.timedelta(days=130)).isoformat(),
        "until": (now - dt.timedelta(days=110)).isoformat(),
    }
    path = f"{BASE}/{endpoint_id}/recover"

    answered = race(_purging_deliveries(), lambda: workspace.call("POST", path, json=window))

    assert answered.status_code == 202, answered.text
    assert answered.json["delivery_ids"] == []

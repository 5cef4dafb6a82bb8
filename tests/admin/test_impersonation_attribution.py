"""Actions under an impersonation name the super admin: webhook envelopes and activity rows."""

from __future__ import annotations

import uuid

from tests.waiting import wait_until
from tests.webhooks.conftest import outbox, path, receiver, ws  # noqa: F401
from tests.webhooks.test_api import create


def test_webhooks_and_the_activity_log_name_the_impersonator(root, ws, receiver, path):  # noqa: F811
    create(ws, receiver.url(path), event_types=["agent.created"])
    token = root.call("POST", f"/api/admin/tenants/{ws.tenant['id']}/impersonate").json[
        "access_token"
    ]
    body = {"email": f"imp-{uuid.uuid4().hex[:8]}@example.com", "full_name": "By Proxy"}
    impersonated = ws.call("POST", "/api/agents", json=body | {"role": "agent"}, token=token)
    assert impersonated.status_code == 201, impersonated.text
    own = ws.call(
        "POST",
        "/api/agents",
        json={
            "email": f"own-{uuid.uuid4().hex[:8]}@example.com",
            "full_name": "Own",
            "role": "agent",
        },
    )
    assert own.status_code == 201

    def envelopes():
        found = {r.json["data"]["id"]: r.json for r in receiver.at(path)}
        return found if len(found) >= 2 else None

    by_agent = wait_until(envelopes, "both deliveries")
    named = {"id": root.id, "email": root.email}
    assert by_agent[impersonated.json["id"]]["actor"] == {
        "type": "user",
        "id": ws.admin["id"],
        "impersonated_by": named,
    }
    # Without impersonation the envelope is as it always was.
    assert by_agent[own.json["id"]]["actor"] == {"type": "user", "id": ws.admin["id"]}
    stored = {e.data["id"]: e for e in outbox(ws.tenant["id"], "agent.created")}
    assert stored[impersonated.json["id"]].impersonated_by == named
    assert stored[own.json["id"]].impersonated_by is None

    logs = ws.call("GET", "/api/activity-logs", params={"entity_type": "agent"}).json["items"]
    rows = {item["entity_id"]: item for item in logs if item["action"] == "agent.created"}
    assert rows[impersonated.json["id"]]["impersonated_by"] == named
    assert rows[impersonated.json["id"]]["impersonator_id"] == root.id
    assert rows[impersonated.json["id"]]["actor_id"] == ws.admin["id"]
    assert rows[own.json["id"]]["impersonated_by"] is None


def test_a_queued_bulk_job_started_under_impersonation_names_the_impersonator(
    root,
    ws,  # noqa: F811
):
    from tests.inbox_conversations.conftest import events
    from tests.inbox_conversations.test_bulk import many_conversations

    ids = many_conversations(ws, 101, status="open")  # past the inline limit: a worker job
    token = root.call("POST", f"/api/admin/tenants/{ws.tenant['id']}/impersonate").json[
        "access_token"
    ]
    body = {"ids": ids, "action": "add_tags", "tags": ["proxy"]}
    resp = ws.call("POST", "/api/conversations/bulk", json=body, token=token)
    assert resp.status_code == 202, resp.text

    def tagged():
        found = events(ws, "conversation.tags_updated")
        return found if len(found) == len(ids) else None

    named = {"id": root.id, "email": root.email}
    assert all(e.impersonated_by == named for e in wait_until(tagged, "the job's events"))

"""Every state change of this issue's groups reaches dispatch_event through the outbox."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.models import OutboxEvent
from tests.waiting import wait_until


def _events(tenant_id: str) -> list[OutboxEvent]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.tenant_id == uuid.UUID(tenant_id))
                .order_by(OutboxEvent.occurred_at, OutboxEvent.id)
            )
        )


def _wait_processed(tenant_id: str, expected: set[str], timeout: float = 10.0):
    def all_processed():
        events = _events(tenant_id)
        done = {e.type for e in events if e.status == "processed"}
        settled = all(e.status == "processed" for e in events)
        return events if expected <= done and settled else None

    def states() -> str:
        return str([(e.type, e.status, e.last_error) for e in _events(tenant_id)])

    return wait_until(all_processed, f"{sorted(expected)} processed", timeout, details=states)


@pytest.mark.broker
def test_identity_events_are_dispatched(worker, workspace):
    ws = workspace
    agent = ws.call(
        "POST", "/api/agents", json={"email": "ev@example.com", "full_name": "Ev", "role": "agent"}
    ).json
    ws.call("PATCH", f"/api/agents/{agent['id']}", json={"full_name": "Eve"})
    ws.call("PATCH", f"/api/agents/{agent['id']}/status", json={"status": "online"})
    ws.call("DELETE", f"/api/agents/{agent['id']}")
    role = ws.call("POST", "/api/roles", json={"name": "temp", "permissions": []}).json
    ws.call("PATCH", f"/api/roles/{role['id']}", json={"description": "temporary"})
    ws.call("DELETE", f"/api/roles/{role['id']}")
    key = ws.call("POST", "/api/api-keys", json={"name": "k"}).json
    ws.call("DELETE", f"/api/api-keys/{key['id']}")

    expected = {
        "agent.created",
        "agent.updated",
        "agent.status_changed",
        "agent.deleted",
        "role.created",
        "role.updated",
        "role.deleted",
        "api_key.created",
        "api_key.revoked",
    }
    events = _wait_processed(ws.tenant["id"], expected)
    for event in events:
        assert event.dispatch_attempts == 1
        assert event.dispatched_at is not None and event.processed_at >= event.dispatched_at
    by_type = {e.type: e for e in events if e.data.get("id") == agent["id"]}
    assert by_type["agent.updated"].data["full_name"] == "Eve"
    # The toggle online, then the deletion taking the agent offline.
    changes = [e.data for e in events if e.type == "agent.status_changed"]
    assert [(d["id"], d["previous_status"], d["status"]) for d in changes] == [
        (agent["id"], "offline", "online"),
        (agent["id"], "online", "offline"),
    ]
    assert by_type["agent.deleted"].actor_type == "user"
    assert by_type["agent.deleted"].actor_id == uuid.UUID(ws.admin["id"])
    api_key_created = next(e for e in events if e.type == "api_key.created")
    assert "key" not in api_key_created.data and "key_hash" not in api_key_created.data


def test_a_failed_request_emits_nothing(workspace):
    before = len(_events(workspace.tenant["id"]))
    resp = workspace.call("DELETE", f"/api/agents/{workspace.admin['id']}")
    assert resp.status_code == 409
    assert len(_events(workspace.tenant["id"])) == before


def test_deleting_an_online_agent_announces_them_offline(workspace):
    """Subscribers (webhooks, streams, automations) saw a deleted agent online for good:
    the deletion took them offline without agent.status_changed. None for an agent who
    was offline already."""
    ws = workspace
    agent, _ = ws.create_agent()
    offline, _ = ws.create_agent()
    ws.call("PATCH", f"/api/agents/{agent['id']}/status", json={"status": "online"})

    assert ws.call("DELETE", f"/api/agents/{agent['id']}").status_code == 204
    assert ws.call("DELETE", f"/api/agents/{offline['id']}").status_code == 204

    def changes(agent_id: str) -> list[OutboxEvent]:
        return [
            e
            for e in _events(ws.tenant["id"])
            if e.type == "agent.status_changed" and e.data.get("id") == agent_id
        ]

    toggled, deleted = changes(agent["id"])
    assert (deleted.data["previous_status"], deleted.data["status"]) == ("online", "offline")
    assert deleted.data.keys() == toggled.data.keys()
    assert deleted.actor_id == uuid.UUID(ws.admin["id"])
    assert changes(offline["id"]) == []

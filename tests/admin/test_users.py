"""Tenant users under a super admin: suspension, activation and password resets.

Each acts through the auth epochs: a token already cached by this process (it was just
used) is refused on its very next request.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.db import session_scope
from shared.models import AgentInvitation, ApiKey, OutboxEvent
from tests.workspaces import PASSWORD


def _me(workspace, token=None, key=None):
    if key is not None:
        return workspace.client.simulate_get("/api/auth/me", headers={"X-API-Key": key})
    return workspace.call("GET", "/api/auth/me", token=token)


def test_suspending_a_user_refuses_login_tokens_and_api_keys_at_once(root, workspace):
    agent, token = workspace.create_agent(role="admin")
    key = workspace.call("POST", "/api/api-keys", json={"name": "k"}, token=token).json["key"]
    assert _me(workspace, token).status_code == 200  # cached now
    assert _me(workspace, key=key).status_code == 200
    base = f"/api/admin/tenants/{workspace.tenant['id']}/users/{agent['id']}"
    suspended = root.call("POST", f"{base}/suspend")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json["suspended_at"] is not None
    for resp in (_me(workspace, token), _me(workspace, key=key)):
        assert resp.status_code == 403, resp.text
        assert resp.json["error"]["code"] == "user_suspended"
    login = workspace.client.simulate_post(
        "/api/auth/login", json={"email": agent["email"], "password": PASSWORD}
    )
    assert login.status_code == 403 and login.json["error"]["code"] == "user_suspended"
    # Others in the tenant carry on.
    assert _me(workspace).status_code == 200
    # Activation: login and the API key work again; the old token stays dead.
    activated = root.call("POST", f"{base}/activate")
    assert activated.status_code == 200 and activated.json["suspended_at"] is None
    assert _me(workspace, key=key).status_code == 200
    assert _me(workspace, token).status_code == 401
    again = workspace.client.simulate_post(
        "/api/auth/login", json={"email": agent["email"], "password": PASSWORD}
    )
    assert again.status_code == 200


def test_a_password_reset_ends_tokens_keys_and_the_password_and_sends_a_link(root, workspace):
    agent, token = workspace.create_agent()
    key = workspace.call("POST", "/api/api-keys", json={"name": "k"}).json["key"]
    assert _me(workspace, token).status_code == 200
    base = f"/api/admin/tenants/{workspace.tenant['id']}/users"
    reset = root.call("POST", f"{base}/{workspace.admin['id']}/reset-password")
    assert reset.status_code == 200, reset.text
    assert _me(workspace).status_code == 401  # the admin's own token
    assert _me(workspace, key=key).status_code == 401  # the admin's key
    assert _me(workspace, token).status_code == 200  # another user's token
    login = workspace.client.simulate_post(
        "/api/auth/login", json={"email": workspace.admin["email"], "password": PASSWORD}
    )
    assert login.status_code == 401
    with session_scope() as session:
        invitation = session.get(AgentInvitation, uuid.UUID(reset.json["invitation_id"]))
        assert str(invitation.user_id) == workspace.admin["id"]
        revoked = session.scalars(
            select(ApiKey.revoked_at).where(ApiKey.user_id == uuid.UUID(workspace.admin["id"]))
        ).all()
        assert revoked and all(revoked)
    assert root.call("POST", f"{base}/{uuid.uuid4()}/reset-password").status_code == 404
    # The other user's password still works.
    other = workspace.client.simulate_post(
        "/api/auth/login", json={"email": agent["email"], "password": PASSWORD}
    )
    assert other.status_code == 200


def test_a_suspended_agent_cannot_be_set_online(root, workspace):
    """Suspension takes the agent offline; setting them online again would route
    conversations (round robin picks online agents) to someone who cannot log in."""
    agent, _ = workspace.create_agent()
    base = f"/api/admin/tenants/{workspace.tenant['id']}/users/{agent['id']}"
    assert root.call("POST", f"{base}/suspend").status_code == 200
    path = f"/api/agents/{agent['id']}/status"

    online = workspace.call("PATCH", path, json={"status": "online"})

    assert online.status_code == 409, online.text
    assert workspace.call("GET", f"/api/agents/{agent['id']}").json["status"] == "offline"
    assert workspace.call("PATCH", path, json={"status": "offline"}).status_code == 200


def _status_events(workspace, agent_id: str) -> list[OutboxEvent]:
    with session_scope() as session:
        events = session.scalars(
            select(OutboxEvent)
            .where(
                OutboxEvent.tenant_id == uuid.UUID(workspace.tenant["id"]),
                OutboxEvent.type == "agent.status_changed",
            )
            .order_by(OutboxEvent.occurred_at, OutboxEvent.id)
        ).all()
        return [e for e in events if e.data.get("id") == agent_id]


def test_suspending_an_online_agent_announces_them_offline(root, workspace):
    """Subscribers (webhooks, streams, automations) saw the agent online for good: the
    suspension took them offline without agent.status_changed. Once, and not for an agent
    already offline."""
    agent, _ = workspace.create_agent()
    offline, _ = workspace.create_agent()
    path = f"/api/agents/{agent['id']}/status"
    assert workspace.call("PATCH", path, json={"status": "online"}).status_code == 200
    base = f"/api/admin/tenants/{workspace.tenant['id']}/users"

    assert root.call("POST", f"{base}/{agent['id']}/suspend").status_code == 200
    assert root.call("POST", f"{base}/{agent['id']}/suspend").status_code == 200
    assert root.call("POST", f"{base}/{offline['id']}/suspend").status_code == 200

    events = _status_events(workspace, agent["id"])
    assert [(e.data["previous_status"], e.data["status"]) for e in events] == [
        ("offline", "online"),
        ("online", "offline"),
    ]
    assert events[1].data.keys() == events[0].data.keys()
    assert events[1].data["role"] == events[0].data["role"]
    assert events[1].actor_type == "system"
    assert events[1].impersonated_by["id"] == root.id
    assert _status_events(workspace, offline["id"]) == []


def test_the_last_admin_who_can_log_in_cannot_step_down(root, workspace):
    """Another admin who is suspended does not count: demoting or deleting the last active
    admin would leave the workspace with nobody able to administer it."""
    other, _ = workspace.create_agent(role="admin")
    base = f"/api/admin/tenants/{workspace.tenant['id']}/users/{other['id']}"
    assert root.call("POST", f"{base}/suspend").status_code == 200
    me = f"/api/agents/{workspace.admin['id']}"

    demoted = workspace.call("PATCH", me, json={"role": "agent"})
    assert demoted.status_code == 409, demoted.text
    assert workspace.call("DELETE", me).status_code == 409
    # The suspended admin may go: an active admin remains.
    assert workspace.call("DELETE", f"/api/agents/{other['id']}").status_code == 204

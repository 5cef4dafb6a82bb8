"""Impersonation: a 1-hour ``imp`` token, logged on both sides, its actions attributed."""

from __future__ import annotations

import uuid

import jwt
from sqlalchemy import select

from shared.db import session_scope
from shared.models import ActivityLog
from tests.admin.conftest import audit_rows


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _activity(tenant_id: str, action: str) -> list[ActivityLog]:
    with session_scope() as session:
        rows = list(
            session.scalars(
                select(ActivityLog).where(
                    ActivityLog.tenant_id == uuid.UUID(tenant_id), ActivityLog.action == action
                )
            )
        )
        session.expunge_all()
        return rows


def test_impersonating_a_tenant_gives_its_oldest_admin_for_an_hour(root, workspace):
    workspace.create_agent(role="admin")  # a younger admin is not the one chosen
    resp = root.call("POST", f"/api/admin/tenants/{workspace.tenant['id']}/impersonate")
    assert resp.status_code == 200, resp.text
    body = resp.json
    assert body["user"]["id"] == workspace.admin["id"] and body["expires_in"] == 3600
    claims = _claims(body["access_token"])
    assert claims["imp"] == root.id and claims["tid"] == workspace.tenant["id"]
    assert claims["exp"] - claims["iat"] <= 3600
    me = workspace.call("GET", "/api/auth/me", token=body["access_token"])
    assert me.status_code == 200 and me.json["id"] == workspace.admin["id"]
    # Logged in the tenant's activity log and the platform audit log.
    (started,) = _activity(workspace.tenant["id"], "auth.impersonation_started")
    assert str(started.impersonator_id) == root.id
    assert str(started.actor_id) == workspace.admin["id"]
    (audit,) = audit_rows(resp.headers["X-Request-ID"])
    assert str(audit.tenant_id) == workspace.tenant["id"]
    assert audit.details == {"user_id": workspace.admin["id"]}
    # An impersonation is never stretched into a full session.
    refresh = workspace.call("GET", "/api/auth/refresh", token=body["access_token"])
    assert refresh.status_code == 403


def test_actions_under_impersonation_are_attributed_to_the_impersonator(root, workspace):
    token = root.call("POST", f"/api/admin/tenants/{workspace.tenant['id']}/impersonate").json[
        "access_token"
    ]
    division = workspace.call("POST", "/api/divisions", json={"name": "Escalations"}, token=token)
    assert division.status_code == 201, division.text
    workspace.call("POST", "/api/divisions", json={"name": "Own work"})
    logs = workspace.call("GET", "/api/activity-logs", params={"entity_type": "division"})
    assert logs.status_code == 200
    by_name = {item["after"]["name"]: item for item in logs.json["items"] if item["after"]}
    assert by_name["Escalations"]["impersonator_id"] == root.id
    assert by_name["Escalations"]["actor_id"] == workspace.admin["id"]
    assert by_name["Own work"]["impersonator_id"] is None


def test_impersonating_a_user_and_its_refusals(root, workspace, other_workspace):
    agent, _ = workspace.create_agent()
    base = f"/api/admin/tenants/{workspace.tenant['id']}/users"
    resp = root.call("POST", f"{base}/{agent['id']}/impersonate")
    assert resp.status_code == 200, resp.text
    me = workspace.call("GET", "/api/auth/me", token=resp.json["access_token"])
    assert me.json["id"] == agent["id"] and me.json["role"]["name"] == "agent"
    # Another tenant's user is unknown here; an unknown user too.
    other = root.call(
        "POST",
        f"/api/admin/tenants/{workspace.tenant['id']}/users/{other_workspace.admin['id']}"
        "/impersonate",
    )
    assert other.status_code == 404
    assert root.call("POST", f"{base}/{uuid.uuid4()}/impersonate").status_code == 404
    # A suspended user cannot be impersonated (409).
    assert root.call("POST", f"{base}/{agent['id']}/suspend").status_code == 200
    suspended = root.call("POST", f"{base}/{agent['id']}/impersonate")
    assert suspended.status_code == 409
    # Nor can anyone of a suspended tenant.
    assert root.call("DELETE", f"/api/admin/tenants/{workspace.tenant['id']}").status_code == 204
    of_suspended = root.call("POST", f"/api/admin/tenants/{workspace.tenant['id']}/impersonate")
    assert of_suspended.status_code == 409


def test_a_tenant_without_an_active_admin_cannot_be_impersonated(root, workspace):
    base = f"/api/admin/tenants/{workspace.tenant['id']}"
    assert root.call("POST", f"{base}/users/{workspace.admin['id']}/suspend").status_code == 200
    resp = root.call("POST", f"{base}/impersonate")
    assert resp.status_code == 409
    assert "no active admin" in resp.json["error"]["message"]


def test_an_impersonation_makes_no_credential_that_would_outlive_it(root, workspace):
    """An API key or a password set during the hour would outlast the grant and its super
    admin: both are refused (403); other work, an invitation included, goes on."""
    token = root.call("POST", f"/api/admin/tenants/{workspace.tenant['id']}/impersonate").json[
        "access_token"
    ]
    me = workspace.admin["id"]

    key = workspace.call("POST", "/api/api-keys", json={"name": "support"}, token=token)
    own_password = workspace.call(
        "PATCH", f"/api/agents/{me}", json={"password": "n3w-Passw0rd!"}, token=token
    )
    new_agent = {"email": "kept@example.com", "full_name": "Kept", "role": "admin"}
    with_password = workspace.call(
        "POST", "/api/agents", json=new_agent | {"password": "n3w-Passw0rd!"}, token=token
    )

    for refused in (key, own_password, with_password):
        assert refused.status_code == 403, refused.text
        assert refused.json["error"]["code"] == "forbidden"
        assert "while impersonating" in refused.json["error"]["message"]
    assert workspace.call("GET", "/api/api-keys").json["items"] == []
    invited = workspace.call("POST", "/api/agents", json=new_agent, token=token)
    assert invited.status_code == 201, invited.text
    renamed = workspace.call("PATCH", f"/api/agents/{me}", json={"full_name": "G."}, token=token)
    assert renamed.status_code == 200, renamed.text
    # The tenant's own admin still can.
    assert workspace.call("POST", "/api/api-keys", json={"name": "own"}).status_code == 201

"""Tenants across the platform: provisioning (with the emailed invitation), reads, updates."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.models import ActivityLog, AgentInvitation, Role, User
from tests.peers.environment import environment
from tests.peers.fixtures import smtp_peers, smtp_servers, smtp_tls_files  # noqa: F401
from tests.waiting import wait_until

NEW_PASSWORD = "the admin's own passphrase"


@pytest.fixture
def relay(smtp_peers):  # noqa: F811
    """The platform's SMTP relay (the suite's plain peer), settings restored afterwards."""
    peer = smtp_peers["none"]
    values = {
        "PLATFORM_SMTP_HOST": peer.host,
        "PLATFORM_SMTP_PORT": str(peer.port),
        "PLATFORM_SMTP_SECURITY": "none",
        "PLATFORM_EMAIL_FROM": "no-reply@omnistream.test",
        "INVITATION_URL": "https://app.example.test/accept-invitation?token={token}",
    }
    with environment(**values):
        yield peer


def provision(root, **fields):
    body = {
        "name": f"Globex {uuid.uuid4().hex[:6]}",
        "admin_email": f"boss-{uuid.uuid4().hex[:8]}@globex.example",
        "admin_full_name": "Hank Scorpio",
    } | fields
    resp = root.call("POST", "/api/admin/tenants", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json


def test_provisioning_creates_tenant_roles_and_an_invited_admin_who_sets_a_password(
    root, client, worker, relay
):
    created = provision(root, slug=f"globex-{uuid.uuid4().hex[:6]}", timezone="Europe/Madrid")
    tenant, admin = created["tenant"], created["admin"]
    assert tenant["status"] == "active" and tenant["timezone"] == "Europe/Madrid"
    assert admin["role"]["name"] == "admin" and admin["suspended_at"] is None
    with session_scope() as session:
        roles = set(
            session.scalars(select(Role.name).where(Role.tenant_id == uuid.UUID(tenant["id"])))
        )
        invitation = session.get(AgentInvitation, uuid.UUID(created["invitation_id"]))
        assert invitation.user_id == uuid.UUID(admin["id"])
        log = session.scalars(
            select(ActivityLog).where(
                ActivityLog.tenant_id == uuid.UUID(tenant["id"]),
                ActivityLog.action == "tenant.provisioned",
            )
        ).one()
        assert str(log.impersonator_id) == root.id
    assert roles == {"admin", "supervisor", "agent"}
    mails = wait_until(
        lambda: [m for m in relay.received if admin["email"] in m.rcpt_tos], "invitation email"
    )
    text = mails[0].message.get_body(("plain",)).get_content()
    token = re.search(r"accept-invitation\?token=([A-Za-z0-9_\-%]+)", text).group(1)
    wait_until(
        lambda: _invitation_status(created["invitation_id"]) == "sent", "invitation marked sent"
    )
    accepted = client.simulate_post(
        "/api/auth/accept-invitation", json={"token": token, "password": NEW_PASSWORD}
    )
    assert accepted.status_code == 200, accepted.text
    me = client.simulate_get(
        "/api/auth/me", headers={"Authorization": f"Bearer {accepted.json['access_token']}"}
    )
    assert me.status_code == 200 and me.json["tenant"]["id"] == tenant["id"]


def _invitation_status(invitation_id: str) -> str:
    with session_scope() as session:
        return session.get(AgentInvitation, uuid.UUID(invitation_id)).status


def test_provisioning_refuses_a_taken_slug_and_bad_fields_and_writes_nothing(root):
    first = provision(root, slug=f"initech-{uuid.uuid4().hex[:6]}")
    email = f"dup-{uuid.uuid4().hex[:6]}@initech.example"
    taken = root.call(
        "POST",
        "/api/admin/tenants",
        json={
            "name": "Initech",
            "slug": first["tenant"]["slug"],
            "admin_email": email,
            "admin_full_name": "Bill",
        },
    )
    assert taken.status_code == 409
    assert taken.json["error"]["details"] == [{"field": "slug", "message": "already used"}]
    bad = root.call(
        "POST",
        "/api/admin/tenants",
        json={"name": "", "admin_email": "nope", "admin_full_name": "B", "timezone": "Mars/Base"},
    )
    assert bad.status_code == 422
    assert {d["field"] for d in bad.json["error"]["details"]} >= {"name", "admin_email", "timezone"}
    with session_scope() as session:
        assert session.scalar(select(User.id).where(User.email == email)) is None


def test_get_list_and_update_tenants(root, workspace):
    created = provision(root)
    tenant_id = created["tenant"]["id"]
    got = root.call("GET", f"/api/admin/tenants/{tenant_id}")
    assert got.status_code == 200 and got.json["name"] == created["tenant"]["name"]
    # A registered (self-serve) tenant is on the platform's list as well.
    listed = root.call("GET", "/api/admin/tenants", params={"limit": 200})
    ids = {item["id"] for item in listed.json["items"]}
    assert {tenant_id, workspace.tenant["id"]} <= ids
    renamed = root.call(
        "PATCH", f"/api/admin/tenants/{tenant_id}", json={"name": "Globex Corp", "timezone": "UTC"}
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json["name"] == "Globex Corp" and renamed.json["status"] == "active"
    clash = root.call(
        "PATCH", f"/api/admin/tenants/{tenant_id}", json={"slug": workspace.tenant["slug"]}
    )
    assert clash.status_code == 409
    null = root.call("PATCH", f"/api/admin/tenants/{tenant_id}", json={"status": None})
    assert null.status_code == 422
    wrong = root.call("PATCH", f"/api/admin/tenants/{tenant_id}", json={"status": "deleted"})
    assert wrong.status_code == 422
    assert root.call("GET", f"/api/admin/tenants/{uuid.uuid4()}").status_code == 404
    assert root.call("GET", "/api/admin/tenants/not-a-uuid").status_code == 404


def test_tenant_users_are_listed_only_for_their_tenant(root, workspace, other_workspace):
    agent, _ = workspace.create_agent()
    users = root.call("GET", f"/api/admin/tenants/{workspace.tenant['id']}/users")
    assert users.status_code == 200
    assert {u["id"] for u in users.json["items"]} == {workspace.admin["id"], agent["id"]}
    # A user of another tenant is unknown under this one.
    cross = root.call(
        "POST",
        f"/api/admin/tenants/{other_workspace.tenant['id']}/users/{agent['id']}/suspend",
    )
    assert cross.status_code == 404
    missing = root.call("GET", f"/api/admin/tenants/{uuid.uuid4()}/users")
    assert missing.status_code == 404

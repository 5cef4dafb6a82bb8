"""Super admins: the CLI, login, token boundaries, the accounts API and the audit log."""

from __future__ import annotations

import io
import uuid

import pytest
from sqlalchemy import delete, select

from shared.admin import super_admins
from shared.admin.__main__ import main as admin_cli
from shared.admin.context import AdminCtx
from shared.db import get_sessionmaker, session_scope
from shared.errors import Unauthenticated
from shared.identity.security import decode_super_admin_token
from shared.models import SuperAdmin as SuperAdminRow
from tests.admin.conftest import PASSWORD, audit_rows, create_super_admin, login
from tests.lock_races import race


def test_the_cli_makes_a_super_admin_who_logs_in_with_an_sa_token(client):
    email = create_super_admin()
    resp = client.simulate_post(
        "/api/admin/auth/login", json={"email": email.upper(), "password": PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    claims = decode_super_admin_token(resp.json["access_token"])
    assert str(claims.super_admin_id) == resp.json["super_admin"]["id"]
    assert resp.json["super_admin"]["email"] == email


def test_the_cli_refuses_a_taken_email_and_a_short_password():
    email = create_super_admin()
    out = io.StringIO()
    args = ["create-super-admin", "--email", email, "--name", "Again", "--password-stdin"]
    assert admin_cli(args, stdin=io.StringIO(PASSWORD + "\n"), out=out) == 1
    assert "already exists" in out.getvalue()
    short = ["create-super-admin", "--email", "x@platform.example", "--name", "X"]
    assert admin_cli([*short, "--password-stdin"], stdin=io.StringIO("short\n"), out=out) == 2


def test_the_cli_refuses_an_email_or_a_name_the_api_would_refuse(client):
    """An account the CLI made for ``root@localhost`` could never log in (the login's email
    is validated: 422); a 201-character name ended in a database traceback."""
    for email, name in (
        (f"root-{uuid.uuid4().hex[:6]}@localhost", "Root"),
        (f"root-{uuid.uuid4().hex[:6]}@platform.example", "R" * 201),
        (f"root-{uuid.uuid4().hex[:6]}@platform.example", "  "),
    ):
        out = io.StringIO()
        args = ["create-super-admin", "--email", email, "--name", name, "--password-stdin"]
        assert admin_cli(args, stdin=io.StringIO(PASSWORD + "\n"), out=out) == 2, out.getvalue()
        assert out.getvalue().startswith("error: ")
        with session_scope() as session:
            found = select(SuperAdminRow.id).where(SuperAdminRow.email == email)
            assert session.scalar(found) is None


def test_a_wrong_password_is_401_and_audited(client):
    email = create_super_admin()
    resp = client.simulate_post(
        "/api/admin/auth/login", json={"email": email, "password": "not the password"}
    )
    assert resp.status_code == 401
    assert resp.json["error"]["code"] == "unauthenticated"
    (row,) = audit_rows(resp.headers["X-Request-ID"])
    assert (row.action, row.status, row.super_admin_id) == ("Super-admin login", 401, None)
    assert row.details == {"email": email}


def test_an_oversized_password_is_422_before_it_is_hashed(client):
    """The tenant login bounds its password at 256 characters; this public route took any
    length and hashed it in full (CPU for anyone, unauthenticated)."""
    email = create_super_admin()
    resp = client.simulate_post(
        "/api/admin/auth/login", json={"email": email, "password": "x" * 257}
    )
    assert resp.status_code == 422, resp.text
    assert [d["field"] for d in resp.json["error"]["details"]] == ["password"]


def test_tenant_credentials_are_refused_on_admin_routes(root, workspace):
    as_tenant = workspace.call("GET", "/api/admin/tenants")
    assert as_tenant.status_code == 403
    assert "super-admin token" in as_tenant.json["error"]["message"]
    key = workspace.call("POST", "/api/api-keys", json={"name": "k"}).json["key"]
    with_key = root.client.simulate_get("/api/admin/tenants", headers={"X-API-Key": key})
    assert with_key.status_code == 403
    assert root.client.simulate_get("/api/admin/tenants").status_code == 401
    forged = root.call("GET", "/api/admin/tenants", token=root.token[:-4] + "abcd")
    assert forged.status_code == 401
    # The refusal is on record too, with nobody behind it.
    (row,) = audit_rows(as_tenant.headers["X-Request-ID"])
    assert (row.status, row.super_admin_id, row.method) == (403, None, "GET")


def test_super_admin_tokens_are_refused_on_tenant_routes(root):
    for path in ("/api/auth/me", "/api/agents", "/api/conversations"):
        resp = root.call("GET", path)
        assert resp.status_code == 403, (path, resp.text)
        assert "only under /api/admin" in resp.json["error"]["message"]


def test_list_create_and_delete_super_admins(root):
    created = root.call(
        "POST",
        "/api/admin/super-admins",
        json={
            "email": f"ops-{uuid.uuid4().hex[:6]}@platform.example",
            "full_name": "Ops",
            "password": "another long pass",
        },
    )
    assert created.status_code == 201, created.text
    assert "password" not in created.json and "password_hash" not in created.json
    again = root.call(
        "POST",
        "/api/admin/super-admins",
        json={"email": created.json["email"].upper(), "full_name": "Ops", "password": "x" * 12},
    )
    assert again.status_code == 409
    listed = root.call("GET", "/api/admin/super-admins")
    ids = [item["id"] for item in listed.json]
    assert root.id in ids and created.json["id"] in ids
    gone = root.call("DELETE", f"/api/admin/super-admins/{created.json['id']}")
    assert gone.status_code == 204
    assert root.call("DELETE", f"/api/admin/super-admins/{created.json['id']}").status_code == 404
    (row,) = audit_rows(gone.headers["X-Request-ID"])
    assert (row.action, row.status, str(row.super_admin_id)) == (
        "Delete a super-admin account",
        204,
        root.id,
    )


def test_deleting_yourself_is_409(root):
    resp = root.call("DELETE", f"/api/admin/super-admins/{root.id}")
    assert resp.status_code == 409
    assert resp.json["error"]["code"] == "conflict"


def test_deleting_the_last_super_admin_is_refused(root):
    """Only one account left (the others removed in this rolled-back transaction): the
    caller, gone too, is refused before anything is deleted."""
    with session_scope() as session:
        session.execute(delete(SuperAdminRow).where(SuperAdminRow.id != uuid.UUID(root.id)))
        someone_else = AdminCtx(super_admin_id=uuid.uuid4(), email="gone@platform.example")
        with pytest.raises(Unauthenticated, match="no longer exists"):
            super_admins.delete(session, someone_else, uuid.UUID(root.id))
        session.rollback()
    with session_scope() as session:
        assert session.scalar(select(SuperAdminRow).where(SuperAdminRow.id == uuid.UUID(root.id)))


def test_a_password_reset_returns_a_temporary_password_and_ends_older_tokens(client, root):
    other = login(client, create_super_admin())
    reset = root.call("POST", f"/api/admin/super-admins/{other.id}/reset-password")
    assert reset.status_code == 200, reset.text
    temporary = reset.json["temporary_password"]
    assert len(temporary) >= 20
    assert other.call("GET", "/api/admin/super-admins").status_code == 401
    old = client.simulate_post(
        "/api/admin/auth/login", json={"email": other.email, "password": PASSWORD}
    )
    assert old.status_code == 401
    fresh = login(client, other.email, temporary)
    assert fresh.call("GET", "/api/admin/super-admins").status_code == 200
    unknown = root.call("POST", f"/api/admin/super-admins/{uuid.uuid4()}/reset-password")
    assert unknown.status_code == 404


def test_every_call_is_audited_with_its_outcome(root):
    ok = root.call("GET", "/api/admin/super-admins")
    missing = root.call("GET", f"/api/admin/tenants/{uuid.uuid4()}")
    assert (ok.status_code, missing.status_code) == (200, 404)
    (first,) = audit_rows(ok.headers["X-Request-ID"])
    assert (first.action, first.status, first.path) == (
        "List super-admin accounts",
        200,
        "/api/admin/super-admins",
    )
    (second,) = audit_rows(missing.headers["X-Request-ID"])
    assert second.status == 404 and str(second.super_admin_id) == root.id


def test_an_email_given_to_two_new_super_admins_at_once_is_a_409_naming_the_email(root):
    email = f"twin-{uuid.uuid4().hex[:6]}@platform.example"
    holder = get_sessionmaker()()
    super_admins.create(holder, email=email, full_name="First", password="a long pass 1")

    resp = race(
        holder,
        lambda: root.call(
            "POST",
            "/api/admin/super-admins",
            json={"email": email.upper(), "full_name": "Second", "password": "a long pass 2"},
        ),
    )

    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["details"] == [{"field": "email", "message": "already used"}]

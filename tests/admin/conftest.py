"""Super-admin fixtures: an account made by the CLI, logged in over HTTP, and its calls."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from shared.admin.__main__ import main as admin_cli
from shared.db import session_scope
from shared.models import PlatformAuditLog

PASSWORD = "platform operator pass"


@dataclass
class SuperAdmin:
    """A super admin's identity and token, and calls made with it."""

    client: object
    id: str
    email: str
    token: str

    def call(self, method: str, path: str, *, token: str | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {token or self.token}", **kwargs.pop("headers", {})}
        return self.client.simulate_request(method, path, headers=headers, **kwargs)


def create_super_admin(email: str | None = None, password: str = PASSWORD) -> str:
    """Run ``python -m shared.admin create-super-admin``'s code; return the email."""
    email = email or f"root-{uuid.uuid4().hex[:10]}@platform.example"
    out = io.StringIO()
    code = admin_cli(
        ["create-super-admin", "--email", email, "--name", "Root Operator", "--password-stdin"],
        stdin=io.StringIO(password + "\n"),
        out=out,
    )
    assert code == 0, out.getvalue()
    return email


def login(client, email: str, password: str = PASSWORD) -> SuperAdmin:
    resp = client.simulate_post(
        "/api/admin/auth/login", json={"email": email, "password": password}
    )
    assert resp.status_code == 200, resp.text
    return SuperAdmin(client, resp.json["super_admin"]["id"], email, resp.json["access_token"])


@pytest.fixture(scope="module")
def root(app) -> SuperAdmin:
    """A super admin (made by the CLI), logged in; one per module (argon2 is slow on purpose)."""
    import falcon.testing

    return login(falcon.testing.TestClient(app), create_super_admin())


def audit_rows(request_id: str) -> list[PlatformAuditLog]:
    """The platform audit rows of one request (by its X-Request-ID)."""
    with session_scope() as session:
        rows = list(
            session.scalars(
                select(PlatformAuditLog).where(PlatformAuditLog.request_id == request_id)
            )
        )
        session.expunge_all()
        return rows

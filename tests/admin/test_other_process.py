"""A super admin's suspension or password reset applies at once in another API process.

A second application runs in a subprocess (its own principal cache, same database and
Redis); the change is made through this process's app.
"""

from __future__ import annotations

import pytest

from tests.api.second_process import serving


@pytest.fixture(scope="module")
def other_process(app):
    with serving() as process:
        yield process


def test_suspension_and_reset_refuse_cached_tokens_in_another_process(
    root, workspace, other_process
):
    agent, token = workspace.create_agent()
    assert other_process.status("/api/auth/me", token) == 200  # cached there now
    assert other_process.status("/api/auth/me", workspace.token) == 200
    base = f"/api/admin/tenants/{workspace.tenant['id']}/users"

    assert root.call("POST", f"{base}/{agent['id']}/suspend").status_code == 200
    status, body = other_process.get("/api/auth/me", token)
    assert status == 403 and b"user_suspended" in body

    assert root.call("POST", f"{base}/{workspace.admin['id']}/reset-password").status_code == 200
    assert other_process.status("/api/auth/me", workspace.token) == 401

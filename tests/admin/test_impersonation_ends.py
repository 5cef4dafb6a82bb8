"""An impersonation ends with the super admin behind it, at once and in every API process.

Deleting the super admin, or resetting their password (``tokens_valid_after``), refuses
the ``imp`` tokens they issued on the very next request, here and in another process
whose principal cache held the token (the auth epoch).
"""

from __future__ import annotations

import pytest

from tests.admin.conftest import create_super_admin, login
from tests.api.second_process import serving


@pytest.fixture(scope="module")
def other_process(app):
    with serving() as process:
        yield process


def _impersonate(operator, workspace) -> str:
    resp = operator.call("POST", f"/api/admin/tenants/{workspace.tenant['id']}/impersonate")
    assert resp.status_code == 200, resp.text
    return resp.json["access_token"]


def _me(workspace, token: str) -> int:
    return workspace.call("GET", "/api/auth/me", token=token).status_code


def test_deleting_the_super_admin_ends_their_impersonations_everywhere(
    root, client, workspace, other_process
):
    operator = login(client, create_super_admin())
    token = _impersonate(operator, workspace)
    # Verified, so cached, in both processes.
    assert _me(workspace, token) == 200
    assert other_process.status("/api/auth/me", token) == 200
    kept = _impersonate(root, workspace)

    assert root.call("DELETE", f"/api/admin/super-admins/{operator.id}").status_code == 204

    refused = workspace.call("GET", "/api/auth/me", token=token)
    assert refused.status_code == 401
    assert "no longer exists" in refused.json["error"]["message"]
    assert other_process.status("/api/auth/me", token) == 401
    # Another super admin's impersonation, and the user's own token, carry on.
    assert _me(workspace, kept) == 200
    assert _me(workspace, workspace.token) == 200


def test_resetting_the_super_admins_password_ends_their_impersonations(
    root, client, workspace, other_process
):
    operator = login(client, create_super_admin())
    token = _impersonate(operator, workspace)
    assert _me(workspace, token) == 200
    assert other_process.status("/api/auth/me", token) == 200

    reset = root.call("POST", f"/api/admin/super-admins/{operator.id}/reset-password")
    assert reset.status_code == 200, reset.text

    assert _me(workspace, token) == 401
    assert other_process.status("/api/auth/me", token) == 401
    # Once logged in again with the new password, they may impersonate afresh.
    again = login(client, operator.email, reset.json["temporary_password"])
    assert _me(workspace, _impersonate(again, workspace)) == 200

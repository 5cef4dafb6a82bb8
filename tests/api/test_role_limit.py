"""A workspace holds at most MAX_CUSTOM_ROLES custom roles: their list has no pages."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from shared.db import get_sessionmaker, session_scope
from shared.identity import auth, roles
from shared.identity.roles import MAX_CUSTOM_ROLES
from shared.models import Role
from tests.lock_races import race


def _fill(workspace, count: int) -> None:
    tenant_id = uuid.UUID(workspace.tenant["id"])
    with session_scope() as session:
        session.add_all(
            Role(tenant_id=tenant_id, name=f"filler {n}", permissions=[]) for n in range(count)
        )


def _custom_roles(workspace) -> int:
    tenant_id = uuid.UUID(workspace.tenant["id"])
    with session_scope() as session:
        return session.scalar(
            select(func.count()).where(Role.tenant_id == tenant_id, Role.is_builtin.is_(False))
        )


def _refused(resp) -> None:
    assert resp.status_code == 422, resp.text
    error = resp.json["error"]
    assert error["code"] == "role_limit"
    assert error["details"] == [
        {"field": "body", "message": f"at most {MAX_CUSTOM_ROLES} custom roles per workspace"}
    ]


def test_a_role_past_the_limit_is_refused_and_one_deleted_makes_room(workspace):
    """Roles were created without end, and GET /api/roles answered all of them at once."""
    _fill(workspace, MAX_CUSTOM_ROLES)

    _refused(workspace.call("POST", "/api/roles", json={"name": "one more", "permissions": []}))

    listed = workspace.call("GET", "/api/roles").json
    assert len(listed) == MAX_CUSTOM_ROLES + 3  # the built-ins are not counted
    victim = next(r for r in listed if r["name"] == "filler 0")
    assert workspace.call("DELETE", f"/api/roles/{victim['id']}").status_code == 204
    again = workspace.call("POST", "/api/roles", json={"name": "one more", "permissions": []})
    assert again.status_code == 201, again.text


def test_a_role_created_while_the_last_allowed_one_is_being_created_is_refused(workspace):
    """Both creations counted the roles before either committed: the workspace held 101."""
    _fill(workspace, MAX_CUSTOM_ROLES - 1)
    holder = get_sessionmaker()()
    ctx = auth.authenticate_token(holder, workspace.token)
    roles.create_role(holder, ctx, name="the last one", permissions=[])

    body = {"name": "one more", "permissions": []}
    resp = race(holder, lambda: workspace.call("POST", "/api/roles", json=body))

    _refused(resp)
    assert _custom_roles(workspace) == MAX_CUSTOM_ROLES


def test_the_limit_is_documented_on_the_create_endpoint(workspace):
    doc = workspace.client.simulate_get("/api/openapi.json").json
    description = doc["paths"]["/api/roles"]["post"]["description"]
    assert f"{MAX_CUSTOM_ROLES} custom roles" in description and "role_limit" in description

"""Two creations of the same name at once: the second is the service's own 409, naming
the field, not the constraint net's bare one (logged as a schema bug)."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import select

from shared.db import get_sessionmaker
from shared.models import Role, User
from tests.lock_races import race
from tests.workspaces import PASSWORD


def _holding(make) -> object:
    """A transaction that has inserted ``make(session)``'s row, not committed yet."""
    holder = get_sessionmaker()()
    holder.add(make(holder))
    holder.flush()
    return holder


def _taken(resp, field: str, caplog) -> None:
    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["details"] == [
        {"field": field, "message": "already used in this workspace"}
    ]
    assert not [r for r in caplog.records if "database refused" in r.getMessage()]


def test_a_role_created_while_another_of_its_name_is_being_created(workspace, caplog):
    tenant_id = uuid.UUID(workspace.tenant["id"])
    holder = _holding(lambda s: Role(tenant_id=tenant_id, name="Night", permissions=[]))
    body = {"name": "night", "permissions": []}
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        resp = race(holder, lambda: workspace.call("POST", "/api/roles", json=body))
    _taken(resp, "name", caplog)


def test_a_role_renamed_while_another_of_its_name_is_being_created(workspace, caplog):
    tenant_id = uuid.UUID(workspace.tenant["id"])
    role = workspace.call("POST", "/api/roles", json={"name": "day", "permissions": []}).json
    holder = _holding(lambda s: Role(tenant_id=tenant_id, name="Night", permissions=[]))
    path = f"/api/roles/{role['id']}"
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        resp = race(holder, lambda: workspace.call("PATCH", path, json={"name": "NIGHT"}))
    _taken(resp, "name", caplog)


def test_an_agent_created_while_another_of_their_email_is_being_created(workspace, caplog):
    tenant_id = uuid.UUID(workspace.tenant["id"])

    def agent(session):
        role_id = session.scalar(
            select(Role.id).where(Role.tenant_id == tenant_id, Role.name == "agent")
        )
        return User(
            tenant_id=tenant_id, role_id=role_id, email="twin@example.com", full_name="Twin"
        )

    holder = _holding(agent)
    body = {"email": "TWIN@example.com", "full_name": "Twin", "role": "agent"}
    body["password"] = PASSWORD
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        resp = race(holder, lambda: workspace.call("POST", "/api/agents", json=body))
    _taken(resp, "email", caplog)


def test_an_agent_renamed_to_an_email_being_taken(workspace, caplog):
    tenant_id = uuid.UUID(workspace.tenant["id"])
    agent, _ = workspace.create_agent()

    def other(session):
        role_id = session.scalar(
            select(Role.id).where(Role.tenant_id == tenant_id, Role.name == "agent")
        )
        return User(tenant_id=tenant_id, role_id=role_id, email="new@example.com", full_name="N")

    holder = _holding(other)
    path = f"/api/agents/{agent['id']}"
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        resp = race(
            holder, lambda: workspace.call("PATCH", path, json={"email": "new@example.com"})
        )
    _taken(resp, "email", caplog)

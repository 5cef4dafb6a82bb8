"""Deleting a custom role: held by an agent is 409; held only by deleted agents is 204."""

from __future__ import annotations

import logging

from sqlalchemy import text

from shared.db import get_sessionmaker
from tests.lock_races import race
from tests.workspaces import PASSWORD


def _custom_role(ws, name: str = "night-shift") -> dict:
    resp = ws.call("POST", "/api/roles", json={"name": name, "permissions": []})
    assert resp.status_code == 201, resp.text
    return resp.json


def test_a_role_only_deleted_agents_held_is_deleted(workspace):
    """This answered 500 (the deleted agent's row still referenced the role)."""
    role = _custom_role(workspace)
    agent, _ = workspace.create_agent(role=role["name"])
    assert workspace.call("DELETE", f"/api/agents/{agent['id']}").status_code == 204
    resp = workspace.call("DELETE", f"/api/roles/{role['id']}")
    assert resp.status_code == 204, resp.text
    assert workspace.call("GET", f"/api/roles/{role['id']}").status_code == 404
    names = [r["name"] for r in workspace.call("GET", "/api/roles").json]
    assert role["name"] not in names


def test_a_role_a_live_agent_holds_is_kept(workspace):
    role = _custom_role(workspace)
    workspace.create_agent(role=role["name"])
    resp = workspace.call("DELETE", f"/api/roles/{role['id']}")
    assert resp.status_code == 409
    assert resp.json["error"]["code"] == "conflict"
    assert workspace.call("GET", f"/api/roles/{role['id']}").status_code == 200


def _refused_as_unknown_role(resp, role: dict, caplog) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"] == [
        {"field": "role", "message": f"no role '{role['name']}' in this workspace"}
    ]
    assert not [r for r in caplog.records if "database refused" in r.getMessage()]


def _deleting(role: dict):
    """A transaction deleting ``role`` (as DELETE /api/roles/{id} does), not committed yet."""
    holder = get_sessionmaker()()
    holder.execute(text("DELETE FROM roles WHERE id = :id"), {"id": role["id"]})
    return holder


def test_an_agent_created_with_a_role_being_deleted_is_told_it_is_gone(workspace, caplog):
    """This answered the constraint net's bare 409 (the insert's foreign key failed once the
    deletion committed): the role was read unlocked while it was being deleted."""
    role = _custom_role(workspace)
    body = {"email": "late@example.com", "full_name": "Late", "role": role["name"]}
    body["password"] = PASSWORD
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        resp = race(_deleting(role), lambda: workspace.call("POST", "/api/agents", json=body))
    _refused_as_unknown_role(resp, role, caplog)


def test_an_agent_moved_to_a_role_being_deleted_keeps_their_role(workspace, caplog):
    role = _custom_role(workspace)
    agent, _ = workspace.create_agent()
    path = f"/api/agents/{agent['id']}"
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        resp = race(
            _deleting(role), lambda: workspace.call("PATCH", path, json={"role": role["id"]})
        )
    _refused_as_unknown_role(resp, {"name": role["id"]}, caplog)
    assert workspace.call("GET", path).json["role"]["name"] == "agent"

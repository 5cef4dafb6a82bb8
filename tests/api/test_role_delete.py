"""Deleting a custom role: held by an agent is 409; held only by deleted agents is 204."""

from __future__ import annotations


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

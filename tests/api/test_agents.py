"""Agents through HTTP: CRUD, self-service limits, the last admin, tenancy."""

from __future__ import annotations

import uuid


def test_create_get_update_delete_agent(workspace):
    ws = workspace
    created = ws.call(
        "POST",
        "/api/agents",
        json={"email": "Bo@Example.com", "full_name": " Bo ", "role": "supervisor"},
    )
    assert created.status_code == 201, created.text
    agent = created.json
    assert agent["full_name"] == "Bo" and agent["role"]["name"] == "supervisor"
    assert agent["status"] == "offline"

    duplicate = ws.call(
        "POST", "/api/agents", json={"email": "bo@example.com", "full_name": "B", "role": "agent"}
    )
    assert duplicate.status_code == 409
    assert duplicate.json["error"]["details"][0]["field"] == "email"

    fetched = ws.call("GET", f"/api/agents/{agent['id']}")
    assert fetched.json == agent

    updated = ws.call(
        "PATCH", f"/api/agents/{agent['id']}", json={"full_name": "Bo Diddley", "role": "agent"}
    )
    assert updated.status_code == 200
    assert updated.json["full_name"] == "Bo Diddley" and updated.json["role"]["name"] == "agent"

    assert ws.call("DELETE", f"/api/agents/{agent['id']}").status_code == 204
    assert ws.call("GET", f"/api/agents/{agent['id']}").status_code == 404
    assert ws.call("DELETE", f"/api/agents/{agent['id']}").status_code == 404
    # The email is free again once its owner is deleted.
    again = ws.call(
        "POST", "/api/agents", json={"email": "bo@example.com", "full_name": "Bo", "role": "agent"}
    )
    assert again.status_code == 201


def test_list_agents_paginates_and_filters(workspace):
    ws = workspace
    for i in range(5):
        ws.call(
            "POST",
            "/api/agents",
            json={"email": f"p{i}@example.com", "full_name": f"Pager {i}", "role": "agent"},
        )
    seen, cursor = [], None
    while True:
        page = ws.call(
            "GET", "/api/agents", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        ).json
        assert len(page["items"]) <= 2
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6
    listed = ws.call("GET", "/api/agents", params={"limit": 1}).json["items"][0]
    assert listed == ws.call("GET", f"/api/agents/{listed['id']}").json
    found = ws.call("GET", "/api/agents", params={"q": "pager 3"}).json["items"]
    assert [a["full_name"] for a in found] == ["Pager 3"]
    assert ws.call("GET", "/api/agents", params={"status": "online"}).json["items"] == []


def test_list_agents_refuses_bad_queries(workspace):
    for params in ({"limit": 0}, {"limit": 201}, {"limit": "ten"}, {"cursor": "!!"}, {"zap": 1}):
        resp = workspace.call("GET", "/api/agents", params=params)
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json["error"]["code"] == "bad_request"


def test_agents_may_edit_only_their_own_profile_fields(workspace):
    ws = workspace
    agent, token = ws.create_agent()
    own = ws.call("PATCH", f"/api/agents/{agent['id']}", token=token, json={"full_name": "Me"})
    assert own.status_code == 200 and own.json["full_name"] == "Me"
    promote = ws.call("PATCH", f"/api/agents/{agent['id']}", token=token, json={"role": "admin"})
    assert promote.status_code == 403
    other = ws.call("PATCH", f"/api/agents/{ws.admin['id']}", token=token, json={"full_name": "X"})
    assert other.status_code == 403
    delete = ws.call("DELETE", f"/api/agents/{ws.admin['id']}", token=token)
    assert delete.status_code == 403


def test_the_last_admin_cannot_be_demoted_or_deleted(workspace):
    ws = workspace
    demote = ws.call("PATCH", f"/api/agents/{ws.admin['id']}", json={"role": "agent"})
    assert demote.status_code == 409
    assert ws.call("DELETE", f"/api/agents/{ws.admin['id']}").status_code == 409
    second, _ = ws.create_agent(role="admin")
    assert ws.call("DELETE", f"/api/agents/{second['id']}").status_code == 204


def test_status_toggle_self_or_supervisor(workspace):
    ws = workspace
    agent, token = ws.create_agent()
    _, peer_token = ws.create_agent()
    online = ws.call(
        "PATCH", f"/api/agents/{agent['id']}/status", token=token, json={"status": "online"}
    )
    assert online.status_code == 200 and online.json["status"] == "online"
    meddling = ws.call(
        "PATCH", f"/api/agents/{agent['id']}/status", token=peer_token, json={"status": "offline"}
    )
    assert meddling.status_code == 403
    by_admin = ws.call("PATCH", f"/api/agents/{agent['id']}/status", json={"status": "offline"})
    assert by_admin.json["status"] == "offline"
    bad = ws.call("PATCH", f"/api/agents/{agent['id']}/status", json={"status": "away"})
    assert bad.status_code == 422


def test_deleting_an_agent_revokes_their_keys_and_tokens(workspace):
    ws = workspace
    agent, token = ws.create_agent(role="admin")
    key = ws.call("POST", "/api/api-keys", token=token, json={"name": "theirs"}).json["key"]
    assert ws.client.simulate_get("/api/agents", headers={"X-API-Key": key}).status_code == 200
    assert ws.call("DELETE", f"/api/agents/{agent['id']}").status_code == 204
    assert ws.client.simulate_get("/api/agents", headers={"X-API-Key": key}).status_code == 401
    assert ws.call("GET", "/api/auth/me", token=token).status_code == 401


def test_other_tenants_agents_are_invisible(workspace, other_workspace):
    theirs = other_workspace.admin["id"]
    for method, path, body in (
        ("GET", f"/api/agents/{theirs}", None),
        ("PATCH", f"/api/agents/{theirs}", {"full_name": "Pwned"}),
        ("DELETE", f"/api/agents/{theirs}", None),
        ("PATCH", f"/api/agents/{theirs}/status", {"status": "online"}),
    ):
        resp = workspace.call(method, path, json=body)
        assert resp.status_code == 404, (method, path, resp.text)
    listed = workspace.call("GET", "/api/agents").json["items"]
    assert theirs not in {a["id"] for a in listed}
    assert other_workspace.call("GET", f"/api/agents/{theirs}").json["full_name"] == "Grace Admin"


def test_unknown_role_and_malformed_ids(workspace):
    bad_role = workspace.call(
        "POST", "/api/agents", json={"email": "r@example.com", "full_name": "R", "role": "wizard"}
    )
    assert bad_role.status_code == 422
    assert bad_role.json["error"]["details"] == [
        {"field": "role", "message": "no role 'wizard' in this workspace"}
    ]
    assert workspace.call("GET", "/api/agents/not-a-uuid").status_code == 404
    assert workspace.call("GET", f"/api/agents/{uuid.uuid4()}").status_code == 404

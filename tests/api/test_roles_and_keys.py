"""Roles, permissions and API keys through HTTP."""

from __future__ import annotations

from shared.identity.permissions import ALL_KEYS
from tests.workspaces import PASSWORD


def test_builtin_roles_and_permission_catalogue(workspace):
    roles = workspace.call("GET", "/api/roles").json
    by_name = {r["name"]: r for r in roles}
    assert set(by_name) == {"admin", "supervisor", "agent"}
    assert set(by_name["admin"]["permissions"]) == ALL_KEYS
    assert "conversations.manage" in by_name["supervisor"]["permissions"]
    assert "roles.manage" not in by_name["supervisor"]["permissions"]
    assert by_name["agent"]["permissions"] == []
    catalogue = workspace.call("GET", "/api/permissions").json
    assert {p["key"] for p in catalogue} == ALL_KEYS


def test_custom_role_lifecycle_and_effect(workspace):
    ws = workspace
    role = ws.call(
        "POST",
        "/api/roles",
        json={"name": "Auditor", "permissions": ["activity_logs.view", "roles.manage"]},
    )
    assert role.status_code == 201, role.text
    role_id = role.json["id"]
    agent, token = ws.create_agent(role="auditor")
    assert ws.call("GET", "/api/activity-logs", token=token).status_code == 200
    assert ws.call("GET", "/api/roles", token=token).status_code == 200

    # Permissions are read per request: revoking one applies at once.
    patched = ws.call("PATCH", f"/api/roles/{role_id}", json={"permissions": ["roles.manage"]})
    assert patched.json["permissions"] == ["roles.manage"]
    assert ws.call("GET", "/api/activity-logs", token=token).status_code == 403

    in_use = ws.call("DELETE", f"/api/roles/{role_id}")
    assert in_use.status_code == 409
    ws.call("PATCH", f"/api/agents/{agent['id']}", json={"role": "agent"})
    assert ws.call("DELETE", f"/api/roles/{role_id}").status_code == 204
    assert ws.call("GET", f"/api/roles/{role_id}").status_code == 404


def test_role_rules(workspace, other_workspace):
    ws = workspace
    roles = {r["name"]: r["id"] for r in ws.call("GET", "/api/roles").json}
    assert (
        ws.call("PATCH", f"/api/roles/{roles['admin']}", json={"description": "x"}).status_code
        == 409
    )
    assert ws.call("DELETE", f"/api/roles/{roles['agent']}").status_code == 409
    rename = ws.call("PATCH", f"/api/roles/{roles['supervisor']}", json={"name": "boss"})
    assert rename.status_code == 409
    unknown = ws.call("POST", "/api/roles", json={"name": "x", "permissions": ["nuke.all"]})
    assert unknown.status_code == 422
    assert unknown.json["error"]["details"][0]["field"] == "permissions[0]"
    dup = ws.call("POST", "/api/roles", json={"name": "ADMIN", "permissions": []})
    assert dup.status_code == 409
    theirs = other_workspace.call("GET", "/api/roles").json[0]["id"]
    assert ws.call("GET", f"/api/roles/{theirs}").status_code == 404
    assert ws.call("DELETE", f"/api/roles/{theirs}").status_code == 404
    _, agent_token = ws.create_agent()
    assert ws.call("GET", "/api/roles", token=agent_token).status_code == 403
    assert ws.call("GET", "/api/permissions", token=agent_token).status_code == 403


def _manager(ws, name: str, permissions: list[str]) -> tuple[dict, dict, str]:
    """A custom role holding ``permissions``, and an agent with it (and its token)."""
    role = ws.call("POST", "/api/roles", json={"name": name, "permissions": permissions})
    assert role.status_code == 201, role.text
    agent, token = ws.create_agent(role=name)
    return role.json, agent, token


def _refused(resp, *missing: str) -> None:
    assert resp.status_code == 403, resp.text
    assert resp.json["error"]["code"] == "forbidden"
    assert [d["permission"] for d in resp.json["error"]["details"]] == sorted(missing)


def test_a_manager_of_agents_grants_no_permission_it_lacks(workspace):
    """agents.manage alone once made anyone an admin, its holder included."""
    ws = workspace
    _, me, token = _manager(ws, "HR", ["agents.manage"])
    everything_else = set(ALL_KEYS) - {"agents.manage"}

    to_admin = ws.call("PATCH", f"/api/agents/{me['id']}", json={"role": "admin"}, token=token)
    _refused(to_admin, *everything_else)
    new_admin = {"email": "puppet@example.com", "full_name": "Puppet", "role": "admin"}
    _refused(ws.call("POST", "/api/agents", json=new_admin, token=token), *everything_else)
    admin = ws.admin["id"]
    ws.create_agent(role="admin")  # not the last admin: the rule below is the one refusing
    _refused(ws.call("DELETE", f"/api/agents/{admin}", token=token), *everything_else)
    renamed = ws.call("PATCH", f"/api/agents/{admin}", json={"full_name": "X"}, token=token)
    _refused(renamed, *everything_else)
    assert ws.call("GET", "/api/auth/me", token=token).json["role"]["name"] == "HR"

    # Agents holding no more than the manager: created, changed and deleted as before.
    peer = {"email": "peer@example.com", "full_name": "Peer", "role": "HR"}
    created = ws.call("POST", "/api/agents", json=peer, token=token)
    assert created.status_code == 201, created.text
    peer_id = created.json["id"]
    renamed = ws.call("PATCH", f"/api/agents/{peer_id}", json={"full_name": "P."}, token=token)
    assert renamed.status_code == 200, renamed.text
    assert ws.call("DELETE", f"/api/agents/{peer_id}", token=token).status_code == 204


def test_a_manager_of_roles_grants_no_permission_it_lacks(workspace):
    ws = workspace
    mine, _, token = _manager(ws, "RoleKeeper", ["roles.manage"])
    roles = ws.call("GET", "/api/roles").json
    supervisor = next(r for r in roles if r["name"] == "supervisor")

    wider = {"permissions": ["roles.manage", "agents.manage", "billing.manage"]}
    _refused(
        ws.call("PATCH", f"/api/roles/{mine['id']}", json=wider, token=token),
        "agents.manage",
        "billing.manage",
    )
    _refused(
        ws.call("POST", "/api/roles", json={"name": "Wide"} | wider, token=token),
        "agents.manage",
        "billing.manage",
    )
    # A role holding what the manager lacks is not theirs to change or delete.
    strong = ws.call("POST", "/api/roles", json={"name": "Strong"} | wider).json
    rename = {"description": "mine now"}
    assert (
        ws.call("PATCH", f"/api/roles/{strong['id']}", json=rename, token=token).status_code == 403
    )
    assert ws.call("DELETE", f"/api/roles/{strong['id']}", token=token).status_code == 403
    stripped = {"permissions": ["roles.manage"]}
    resp = ws.call("PATCH", f"/api/roles/{supervisor['id']}", json=stripped, token=token)
    assert resp.status_code == 403
    assert ws.call("GET", "/api/auth/me", token=token).json["permissions"] == ["roles.manage"]

    # Within what it holds, it manages roles as before.
    narrow = ws.call("POST", "/api/roles", json={"name": "Narrow", **stripped}, token=token)
    assert narrow.status_code == 201, narrow.text
    assert ws.call("DELETE", f"/api/roles/{narrow.json['id']}", token=token).status_code == 204


def test_api_keys_rules(workspace, other_workspace):
    ws = workspace
    _, agent_token = ws.create_agent()
    assert (
        ws.call("POST", "/api/api-keys", token=agent_token, json={"name": "x"}).status_code == 403
    )
    assert ws.call("GET", "/api/api-keys", token=agent_token).json["items"] == []
    past = ws.call(
        "POST", "/api/api-keys", json={"name": "old", "expires_at": "2001-01-01T00:00:00Z"}
    )
    assert past.status_code == 422
    naive = ws.call(
        "POST", "/api/api-keys", json={"name": "n", "expires_at": "2099-01-01T00:00:00"}
    )
    assert naive.status_code == 422
    key = ws.call("POST", "/api/api-keys", json={"name": "mine"}).json
    theirs = other_workspace.call("POST", "/api/api-keys", json={"name": "theirs"}).json
    assert ws.call("DELETE", f"/api/api-keys/{theirs['id']}").status_code == 404
    assert (
        other_workspace.client.simulate_get(
            "/api/agents", headers={"X-API-Key": theirs["key"]}
        ).status_code
        == 200
    )
    # A key acts with its creator's *current* permissions.
    admin_key_caller = ws.client.simulate_get("/api/roles", headers={"X-API-Key": key["key"]})
    assert admin_key_caller.status_code == 200
    assert ws.call("DELETE", f"/api/api-keys/{key['id']}").status_code == 204


def test_activity_log_records_who_did_what(workspace):
    ws = workspace
    agent = ws.call(
        "POST", "/api/agents", json={"email": "log@example.com", "full_name": "L", "role": "agent"}
    ).json
    ws.call("PATCH", f"/api/agents/{agent['id']}", json={"full_name": "Logged"})
    logs = ws.call("GET", "/api/activity-logs", params={"entity_id": agent["id"]}).json["items"]
    assert [entry["action"] for entry in logs] == ["agent.updated", "agent.created"]
    update = logs[0]
    assert update["actor_type"] == "user" and update["actor_id"] == ws.admin["id"]
    assert update["before"]["full_name"] == "L" and update["after"]["full_name"] == "Logged"
    assert update["request_id"]
    only_updates = ws.call("GET", "/api/activity-logs", params={"action": "agent.updated"})
    assert {e["action"] for e in only_updates.json["items"]} == {"agent.updated"}
    window = ws.call("GET", "/api/activity-logs", params={"from": "2999-01-01T00:00:00Z"}).json[
        "items"
    ]
    assert window == []
    bad = ws.call("GET", "/api/activity-logs", params={"from": "yesterday"})
    assert bad.status_code == 400


def test_activity_logs_from_after_to_is_422_naming_from(workspace):
    """As every other ranged list: not an empty page that looks like "nothing happened"."""
    later, earlier = "2026-03-02T00:00:00Z", "2026-03-01T00:00:00Z"
    for bounds in ({"from": later, "to": earlier}, {"from": earlier, "to": earlier}):
        resp = workspace.call("GET", "/api/activity-logs", params=bounds)
        assert resp.status_code == 422, resp.text
        assert resp.json["error"]["code"] == "validation_error"
        assert resp.json["error"]["details"] == [
            {"field": "from", "message": "must be before 'to'"}
        ]
    ok = workspace.call("GET", "/api/activity-logs", params={"from": earlier, "to": later})
    assert ok.status_code == 200 and ok.json["items"] == []


def test_expired_api_keys_do_not_count_against_the_live_key_limit(workspace):
    """The limit is on live keys: a user whose keys have all expired may make a new one."""
    import datetime as dt
    import time

    from shared.identity.api_keys import MAX_KEYS_PER_USER

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    for n in range(MAX_KEYS_PER_USER):
        body = {"name": f"short-lived {n}", "expires_at": soon.isoformat()}
        assert workspace.call("POST", "/api/api-keys", json=body).status_code == 201
    time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 0.2)

    fresh = workspace.call("POST", "/api/api-keys", json={"name": "after they expired"})

    assert fresh.status_code == 201, fresh.text


def test_an_api_key_makes_no_credential_that_would_outlive_its_revocation(workspace):
    """A leaked key is taken back by revoking it: it may not mint another key, nor set its
    owner's password (then log in with it)."""
    ws = workspace
    agent, _token = ws.create_agent()
    key = ws.call("POST", "/api/api-keys", json={"name": "integration"}).json
    as_key = {"X-API-Key": key["key"]}

    minted = ws.client.simulate_post("/api/api-keys", headers=as_key, json={"name": "spare"})
    assert minted.status_code == 403, minted.text
    own = ws.client.simulate_patch(
        f"/api/agents/{ws.admin['id']}", headers=as_key, json={"password": "a brand new secret"}
    )
    assert own.status_code == 403, own.text
    assert "logged-in session" in own.json["error"]["message"]
    # An admin's integration still provisions others' passwords; a session still changes its own.
    theirs = ws.client.simulate_patch(
        f"/api/agents/{agent['id']}", headers=as_key, json={"password": "set by provisioning"}
    )
    assert theirs.status_code == 200, theirs.text
    assert ws.call("POST", "/api/api-keys", json={"name": "from a session"}).status_code == 201
    new_password = {"password": "changed in a session", "current_password": PASSWORD}
    mine = ws.call("PATCH", f"/api/agents/{ws.admin['id']}", json=new_password)
    assert mine.status_code == 200, mine.text


def test_api_keys_list_in_pages_newest_first(workspace):
    """A user's keys pile up (revoked and expired ones stay listed): the list is paginated
    like every other, so it stays bounded."""
    ws = workspace
    made = [ws.call("POST", "/api/api-keys", json={"name": f"k{n}"}).json for n in range(3)]
    ws.call("DELETE", f"/api/api-keys/{made[0]['id']}")

    first = ws.call("GET", "/api/api-keys", params={"limit": 2})
    assert first.status_code == 200, first.text
    assert [k["name"] for k in first.json["items"]] == ["k2", "k1"]
    assert "key" not in first.json["items"][0]
    cursor = first.json["next_cursor"]
    second = ws.call("GET", "/api/api-keys", params={"limit": 2, "cursor": cursor}).json
    assert [k["name"] for k in second["items"]] == ["k0"]
    assert second["items"][0]["revoked_at"] is not None
    assert second["next_cursor"] is None
    for params in ({"limit": 0}, {"limit": 201}, {"cursor": "!!"}, {"zap": 1}):
        resp = ws.call("GET", "/api/api-keys", params=params)
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json["error"]["code"] == "bad_request"

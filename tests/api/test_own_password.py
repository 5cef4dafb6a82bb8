"""Changing one's own password asks for the current one: a stolen token alone cannot take
the account over. An admin setting another agent's password still needs no such thing."""

from __future__ import annotations

from tests.workspaces import PASSWORD

NEW_PASSWORD = "a brand new passphrase"


def _logs_in(ws, email: str, password: str) -> bool:
    resp = ws.client.simulate_post("/api/auth/login", json={"email": email, "password": password})
    return resp.status_code == 200


def test_own_password_without_the_current_one_is_422(workspace):
    agent, token = workspace.create_agent()
    resp = workspace.call(
        "PATCH", f"/api/agents/{agent['id']}", json={"password": NEW_PASSWORD}, token=token
    )
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["code"] == "validation_error"
    assert [d["field"] for d in resp.json["error"]["details"]] == ["current_password"]
    assert _logs_in(workspace, agent["email"], PASSWORD)
    assert not _logs_in(workspace, agent["email"], NEW_PASSWORD)


def test_own_password_with_a_wrong_current_one_is_refused(workspace):
    agent, token = workspace.create_agent()
    body = {"password": NEW_PASSWORD, "current_password": "not my password at all"}
    resp = workspace.call("PATCH", f"/api/agents/{agent['id']}", json=body, token=token)
    assert resp.status_code == 403, resp.text
    assert resp.json["error"]["code"] == "invalid_password"
    assert [d["field"] for d in resp.json["error"]["details"]] == ["current_password"]
    assert _logs_in(workspace, agent["email"], PASSWORD)
    # The token still works: a mistyped current password logs nobody out.
    assert workspace.call("GET", "/api/auth/me", token=token).status_code == 200


def test_own_password_with_the_current_one_changes_it(workspace):
    agent, token = workspace.create_agent()
    body = {"password": NEW_PASSWORD, "current_password": PASSWORD}
    resp = workspace.call("PATCH", f"/api/agents/{agent['id']}", json=body, token=token)
    assert resp.status_code == 200, resp.text
    assert _logs_in(workspace, agent["email"], NEW_PASSWORD)
    assert not _logs_in(workspace, agent["email"], PASSWORD)


def test_an_admin_changing_their_own_password_is_asked_too(workspace):
    me = workspace.admin["id"]
    refused = workspace.call("PATCH", f"/api/agents/{me}", json={"password": NEW_PASSWORD})
    assert refused.status_code == 422, refused.text
    assert refused.json["error"]["details"][0]["field"] == "current_password"
    assert _logs_in(workspace, workspace.admin["email"], PASSWORD)


def test_an_admin_sets_another_agents_password_without_their_current_one(workspace):
    agent, _token = workspace.create_agent()
    resp = workspace.call("PATCH", f"/api/agents/{agent['id']}", json={"password": NEW_PASSWORD})
    assert resp.status_code == 200, resp.text
    assert _logs_in(workspace, agent["email"], NEW_PASSWORD)


def test_other_own_fields_need_no_current_password(workspace):
    agent, token = workspace.create_agent()
    resp = workspace.call(
        "PATCH", f"/api/agents/{agent['id']}", json={"full_name": "Ada Renamed"}, token=token
    )
    assert resp.status_code == 200, resp.text
    assert resp.json["full_name"] == "Ada Renamed"


def test_the_openapi_document_declares_the_refusal(client):
    doc = client.simulate_get("/api/openapi.json").json
    patch = doc["paths"]["/api/agents/{id}"]["patch"]
    assert "invalid_password" in patch["description"]
    body = patch["requestBody"]["content"]["application/json"]["schema"]
    ref = body["$ref"].rsplit("/", 1)[-1]
    assert "current_password" in doc["components"]["schemas"][ref]["properties"]

"""Revoking someone else's API key needs every permission its owner holds."""

from __future__ import annotations


def test_a_key_manager_cannot_revoke_a_key_of_someone_holding_more(workspace):
    ws = workspace
    role = ws.call(
        "POST", "/api/roles", json={"name": "Key keeper", "permissions": ["api_keys.manage"]}
    )
    assert role.status_code == 201, role.text
    _, keeper_token = ws.create_agent(role="key keeper")
    admin_key = ws.call("POST", "/api/api-keys", json={"name": "CRM sync"}).json
    keeper_key = ws.call("POST", "/api/api-keys", token=keeper_token, json={"name": "mine"}).json
    _, peer_token = ws.create_agent(role="key keeper")
    peer_key = ws.call("POST", "/api/api-keys", token=peer_token, json={"name": "peer"}).json

    refused = ws.call("DELETE", f"/api/api-keys/{admin_key['id']}", token=keeper_token)
    assert refused.status_code == 403, refused.text
    assert refused.json["error"]["code"] == "forbidden"
    still = ws.client.simulate_get("/api/agents", headers={"X-API-Key": admin_key["key"]})
    assert still.status_code == 200

    # Their own key, a peer's (no more than they hold), and the admin over anyone's.
    assert (
        ws.call("DELETE", f"/api/api-keys/{keeper_key['id']}", token=keeper_token).status_code
        == 204
    )
    assert (
        ws.call("DELETE", f"/api/api-keys/{peer_key['id']}", token=keeper_token).status_code == 204
    )
    assert ws.call("DELETE", f"/api/api-keys/{admin_key['id']}").status_code == 204

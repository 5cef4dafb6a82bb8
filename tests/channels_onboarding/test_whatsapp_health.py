"""WhatsApp health: Meta's verdict on a number; tenancy; an expired token marks the account."""

from __future__ import annotations

import uuid

from tests.channels_onboarding.conftest import assert_error, credentials_of, signup

HEALTH = "/api/integrations/whatsapp/health"


def _connected(workspace, graph):
    resp, waba_id, (number,) = signup(workspace, graph)
    assert resp.status_code == 201, resp.text
    return resp.json, waba_id, number


def test_health_of_the_default_or_named_account(workspace, meta_settings):
    graph = meta_settings
    account, waba_id, number = _connected(workspace, graph)
    number.can_send_message = "LIMITED"
    for path in (HEALTH, f"{HEALTH}?integration_account_id={account['id']}"):
        resp = workspace.call("GET", path)
        assert resp.status_code == 200, resp.text
        body = resp.json
        assert body["integration_account_id"] == account["id"]
        assert (body["phone_number_id"], body["waba_id"]) == (number.id, waba_id)
        assert body["quality_rating"] == "GREEN"
        assert body["messaging_limit_tier"] == "TIER_1K"
        assert body["status"] == "CONNECTED"
        assert body["throughput_level"] == "STANDARD"
        assert body["can_send_message"] == "LIMITED"
        phone = body["entities"][0]
        assert phone["entity_type"] == "PHONE_NUMBER"
        assert phone["errors"][0]["error_code"] == 141006
    token = credentials_of(account["id"])["access_token"]
    assert all(r.token == token for r in graph.gets(f"/v21.0/{number.id}"))


def test_another_tenants_or_an_unknown_account_is_404(workspace, other_workspace, meta_settings):
    account, _, _ = _connected(workspace, meta_settings)
    resp = other_workspace.call("GET", f"{HEALTH}?integration_account_id={account['id']}")
    assert_error(resp, 404, "not_found")
    assert_error(other_workspace.call("GET", HEALTH), 404, "not_found")
    resp = workspace.call("GET", f"{HEALTH}?integration_account_id={uuid.uuid4()}")
    assert_error(resp, 404, "not_found")
    assert workspace.call("GET", f"{HEALTH}?integration_account_id=12").status_code == 400


def test_an_expired_token_marks_the_account_error_and_says_so(workspace, meta_settings):
    graph = meta_settings
    account, _, number = _connected(workspace, graph)
    graph.meta.expire(credentials_of(account["id"])["access_token"])
    resp = workspace.call("GET", HEALTH)
    error = assert_error(resp, 409, "meta_token_invalid")
    assert "is now in status 'error'" in error["message"]
    assert "Session has expired" in error["message"]
    assert error["details"][0]["meta_code"] == "190"
    # The mark outlived the failed request: the account shows it, the audit log too.
    again = workspace.call("GET", f"/api/integration-accounts/{account['id']}")
    assert again.json["status"] == "error"
    logs = workspace.call(
        "GET", "/api/activity-logs?action=integration_account.token_invalid"
    ).json["items"]
    assert [entry["entity_id"] for entry in logs] == [account["id"]]
    # Not retried: a rejected token does not get better.
    assert len(graph.gets(f"/v21.0/{number.id}")) == 1


def test_a_disabled_account_stays_disabled_when_its_token_fails(workspace, meta_settings):
    graph = meta_settings
    account, _, _ = _connected(workspace, graph)
    workspace.call(
        "PATCH", f"/api/integration-accounts/{account['id']}", json={"status": "disabled"}
    )
    graph.meta.expire(credentials_of(account["id"])["access_token"])
    error = assert_error(workspace.call("GET", HEALTH), 409, "meta_token_invalid")
    assert "stays 'disabled'" in error["message"]
    again = workspace.call("GET", f"/api/integration-accounts/{account['id']}")
    assert again.json["status"] == "disabled"


def test_meta_down_answers_502(workspace, meta_settings):
    _connected(workspace, meta_settings)
    meta_settings.meta.script("number", ("raw", 500, b"<html>oops</html>"))
    error = assert_error(workspace.call("GET", HEALTH), 502, "meta_api_error")
    assert "after 3 tries" in error["message"]

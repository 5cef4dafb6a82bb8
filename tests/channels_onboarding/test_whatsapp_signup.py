"""WhatsApp Embedded Signup: code exchange, WABA subscription, number registration, account."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from shared.db import session_scope
from shared.models import WaTemplateSync
from tests.channels_onboarding.conftest import (
    PIN,
    assert_error,
    credentials_of,
    events,
    signup,
)

SIGNUP = "/api/integrations/whatsapp/embedded-signup"


def test_signup_connects_the_number_and_asks_for_a_template_sync(workspace, meta_settings):
    graph = meta_settings
    resp, waba_id, (number,) = signup(workspace, graph)
    assert resp.status_code == 201, resp.text
    account = resp.json
    assert account["channel"] == "whatsapp"
    assert account["external_id"] == number.id
    assert account["name"] == number.verified_name
    assert account["settings"] == {
        "waba_id": waba_id,
        "phone_number_id": number.id,
        "display_phone_number": number.display_phone_number,
        "verified_name": number.verified_name,
        "quality_rating": "GREEN",
        "connected_via": "embedded_signup",
    }
    assert account["credential_keys"] == ["access_token"]
    assert account["is_default"] is True and account["status"] == "active"

    # At Meta: the app subscribed to the WABA and the number registered with the PIN.
    assert waba_id in graph.meta.subscriptions
    assert graph.meta.registered == {number.id: PIN}
    token = credentials_of(account["id"])["access_token"]
    assert token in graph.meta.tokens
    assert token not in resp.text

    # The connection is announced, and the templates' first sync was queued with it (the
    # scheduler's own claim would be up to 10 minutes away).
    (connected,) = events(workspace, "integration_account.connected")
    assert connected["id"] == account["id"]
    assert token not in str(connected)
    with session_scope() as session:
        queued = session.get(WaTemplateSync, uuid.UUID(account["id"]))
        assert queued is not None and queued.job_id is None
        assert queued.due_at > dt.datetime.now(dt.UTC) + dt.timedelta(hours=5, minutes=59)


def test_tokens_codes_and_the_app_secret_never_reach_the_log(workspace, meta_settings, caplog):
    caplog.set_level(logging.DEBUG)
    # httpx's request lines are off by default (shared.logs.CHATTY_LOGGERS); an operator
    # who turns them on for a diagnosis must not find a secret in them either.
    caplog.set_level(logging.DEBUG, logger="httpx")
    waba_id, _ = meta_settings.meta.add_waba()
    code = meta_settings.meta.grant(wabas=[waba_id])
    resp = workspace.call("POST", SIGNUP, json={"code": code, "pin": PIN})
    assert resp.status_code == 201, resp.text
    assert "debug_token" in caplog.text  # httpx logged the calls...
    secrets = [code, meta_settings.meta.app_secret, *meta_settings.meta.tokens]
    for secret in secrets:  # ...without a secret
        assert secret not in caplog.text


def test_several_numbers_need_a_phone_number_id(workspace, meta_settings):
    graph = meta_settings
    waba_id, numbers = graph.meta.add_waba(numbers=2)
    code = graph.meta.grant(wabas=[waba_id])
    resp = workspace.call("POST", SIGNUP, json={"code": code, "pin": PIN})
    error = assert_error(resp, 422, "validation_error")
    assert error["details"][0]["field"] == "phone_number_id"
    assert numbers[0].id in error["message"] and numbers[1].id in error["message"]
    assert graph.meta.registered == {}

    code = graph.meta.grant(wabas=[waba_id])
    body = {"code": code, "pin": PIN, "waba_id": waba_id, "phone_number_id": numbers[1].id}
    resp = workspace.call("POST", SIGNUP, json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json["external_id"] == numbers[1].id


def test_a_waba_the_signup_did_not_share_is_refused(workspace, meta_settings):
    graph = meta_settings
    shared, _ = graph.meta.add_waba()
    other, _ = graph.meta.add_waba()
    code = graph.meta.grant(wabas=[shared])
    resp = workspace.call("POST", SIGNUP, json={"code": code, "pin": PIN, "waba_id": other})
    error = assert_error(resp, 422, "validation_error")
    assert error["details"][0]["field"] == "waba_id"
    assert graph.meta.subscriptions == {}


def test_a_used_or_unknown_code_answers_422(workspace, meta_settings):
    resp, _, _ = signup(workspace, meta_settings)
    assert resp.status_code == 201
    used = next(iter(meta_settings.meta.used_codes))
    again = workspace.call("POST", SIGNUP, json={"code": used, "pin": PIN})
    error = assert_error(again, 422, "invalid_oauth_code")
    assert error["details"][0]["field"] == "code"
    assert "has been used" in error["message"]
    unknown = workspace.call("POST", SIGNUP, json={"code": "AQnot-a-code", "pin": PIN})
    assert_error(unknown, 422, "invalid_oauth_code")


def test_a_pin_mismatch_is_meta_refusing_the_pin_and_creates_nothing(workspace, meta_settings):
    graph = meta_settings
    waba_id, (_number,) = graph.meta.add_waba(pin="111111")
    code = graph.meta.grant(wabas=[waba_id])
    resp = workspace.call("POST", SIGNUP, json={"code": code, "pin": "222222"})
    error = assert_error(resp, 422, "meta_rejected")
    assert error["details"][0] == {
        "meta_code": "133005",
        "message": error["details"][0]["message"],
        "field": "pin",
    }
    assert "PIN Mismatch" in error["message"]
    assert workspace.call("GET", "/api/integration-accounts?channel=whatsapp").json["items"] == []
    assert events(workspace, "integration_account.connected") == []


def test_meta_failing_answers_502_after_the_retries_and_creates_nothing(workspace, meta_settings):
    graph = meta_settings
    graph.meta.script("register", "503")
    resp, _, (number,) = signup(workspace, graph)
    error = assert_error(resp, 502, "meta_api_error")
    assert "registering the phone number" in error["message"]
    assert "after 3 tries" in error["message"]
    assert len([r for r in graph.requests if r.path.endswith(f"{number.id}/register")]) == 3
    assert workspace.call("GET", "/api/integration-accounts?channel=whatsapp").json["items"] == []


def test_a_transient_failure_is_retried_and_the_signup_completes(workspace, meta_settings):
    graph = meta_settings
    graph.meta.script("subscribed_apps", "500", "ok")
    resp, waba_id, _ = signup(workspace, graph)
    assert resp.status_code == 201, resp.text
    assert len([r for r in graph.requests if r.path.endswith(f"{waba_id}/subscribed_apps")]) == 2


def test_a_long_retry_after_answers_429_at_once(workspace, meta_settings):
    graph = meta_settings
    graph.meta.script("subscribed_apps", ("retry_after", 120, "130429"))
    resp, waba_id, _ = signup(workspace, graph)
    assert_error(resp, 429, "meta_rate_limited")
    assert resp.headers["Retry-After"] == "120"
    assert len([r for r in graph.requests if r.path.endswith(f"{waba_id}/subscribed_apps")]) == 1


def test_a_missing_permission_answers_409(workspace, meta_settings):
    meta_settings.meta.script("subscribed_apps", "200")
    resp, _, _ = signup(workspace, meta_settings)
    error = assert_error(resp, 409, "meta_permission_denied")
    assert "(#200)" in error["message"]


def test_another_workspaces_number_answers_409_before_anything_reaches_meta(
    workspace, other_workspace, meta_settings
):
    graph = meta_settings
    resp, waba_id, (number,) = signup(workspace, graph)
    assert resp.status_code == 201
    code = graph.meta.grant(wabas=[waba_id])
    again = other_workspace.call("POST", SIGNUP, json={"code": code, "pin": PIN})
    assert_error(again, 409, "conflict")
    assert len([r for r in graph.requests if r.path.endswith(f"{number.id}/register")]) == 1
    assert other_workspace.call("GET", "/api/integration-accounts").json["items"] == []


def test_signing_up_a_number_again_reconnects_it(workspace, meta_settings):
    """How an account marked 'error' (an expired token) recovers: run the signup again."""
    graph = meta_settings
    resp, waba_id, _ = signup(workspace, graph)
    account = resp.json
    old_token = credentials_of(account["id"])["access_token"]
    graph.meta.expire(old_token)
    health = workspace.call("GET", "/api/integrations/whatsapp/health")
    assert_error(health, 409, "meta_token_invalid")

    code = graph.meta.grant(wabas=[waba_id])
    again = workspace.call("POST", SIGNUP, json={"code": code, "pin": PIN, "name": "Support"})
    assert again.status_code == 200, again.text
    assert (again.json["id"], again.json["status"], again.json["name"]) == (
        account["id"],
        "active",
        "Support",
    )
    assert credentials_of(account["id"])["access_token"] not in (old_token, None)
    assert workspace.call("GET", "/api/integrations/whatsapp/health").status_code == 200
    assert len(events(workspace, "integration_account.connected")) == 1


def test_target_ids_of_another_shape_are_metas_failure(workspace, meta_settings):
    """A string ``target_ids`` was read character by character: the admin was asked to
    choose among WABAs "7", "0", "4"... (422); it is Meta's failure, a 502."""
    graph = meta_settings
    waba_id, _ = graph.meta.add_waba(numbers=1)
    code = graph.meta.grant(wabas=[waba_id])
    scopes = [{"scope": "whatsapp_business_management", "target_ids": waba_id}]
    graph.meta.script("debug_token", ("raw", 200, {"data": {"granular_scopes": scopes}}))
    resp = workspace.call("POST", SIGNUP, json={"code": code, "pin": PIN})
    assert_error(resp, 502, "meta_api_error")
    assert waba_id not in graph.meta.subscriptions


def test_a_phone_number_id_that_is_no_graph_id_is_metas_failure(workspace, meta_settings):
    """A number whose id is no Graph id was subscribed and registered with it, and the
    admin was told Meta refused their ``pin`` (422); it is a 502 before any write at Meta."""
    graph = meta_settings
    waba_id, _ = graph.meta.add_waba(numbers=1)
    code = graph.meta.grant(wabas=[waba_id])
    graph.meta.script("phone_numbers", ("raw", 200, {"data": [{"id": {"value": 1}}]}))
    resp = workspace.call("POST", SIGNUP, json={"code": code, "pin": PIN})
    assert_error(resp, 502, "meta_api_error")
    assert waba_id not in graph.meta.subscriptions and graph.meta.registered == {}


def test_signing_up_a_number_again_with_is_default_makes_it_the_default(workspace, meta_settings):
    """WHY: ``is_default`` was honoured on create and silently dropped on a reconnect."""
    graph = meta_settings
    first, _, _ = signup(workspace, graph)
    second, waba_id, _ = signup(workspace, graph)
    assert (first.json["is_default"], second.json["is_default"]) == (True, False)

    code = graph.meta.grant(wabas=[waba_id])
    again = workspace.call("POST", SIGNUP, json={"code": code, "pin": PIN, "is_default": True})

    assert again.status_code == 200, again.text
    assert (again.json["id"], again.json["is_default"]) == (second.json["id"], True)
    before = workspace.call("GET", f"/api/integration-accounts/{first.json['id']}").json
    assert before["is_default"] is False
    # Without it, a reconnect leaves the default where it is.
    code = graph.meta.grant(wabas=[waba_id])
    plain = workspace.call("POST", SIGNUP, json={"code": code, "pin": PIN})
    assert (plain.status_code, plain.json["is_default"]) == (200, True)

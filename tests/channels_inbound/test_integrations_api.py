"""Integrations and integration accounts over HTTP: CRUD, defaults, permissions, secrecy."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.channels_inbound.conftest import numeric_id

SECRETS = ("EAAG-very-secret-token", "meta-app-secret-value", "verify-token-value")


def _account(ws, channel="whatsapp", **fields):
    body = {
        "channel": channel,
        "name": "Support",
        "external_id": numeric_id(),
        "settings": {"waba_id": "102290129340398", "display_phone_number": "+1 555 0100"},
        "credentials": {
            "access_token": SECRETS[0],
            "app_secret": SECRETS[1],
            "verify_token": SECRETS[2],
        },
    } | fields
    return ws.call("POST", "/api/integration-accounts", json=body)


def _assert_no_secret(resp):
    text = resp.text
    for secret in SECRETS:
        assert secret not in text


def test_account_crud_never_returns_credentials(workspace):
    created = _account(workspace)
    assert created.status_code == 201, created.text
    _assert_no_secret(created)
    account = created.json
    assert account["credential_keys"] == ["access_token", "app_secret", "verify_token"]
    assert account["has_credentials"] is True
    assert account["is_default"] is True
    assert "credentials" not in account and "credentials_encrypted" not in account

    for resp in (
        workspace.call("GET", f"/api/integration-accounts/{account['id']}"),
        workspace.call("GET", "/api/integration-accounts"),
        workspace.call("GET", "/api/integration-accounts?channel=whatsapp"),
        workspace.call("GET", "/api/integrations"),
        workspace.call("GET", "/api/integrations/whatsapp"),
    ):
        assert resp.status_code == 200, resp.text
        _assert_no_secret(resp)

    patched = workspace.call(
        "PATCH",
        f"/api/integration-accounts/{account['id']}",
        json={"name": "Sales", "credentials": {"verify_token": None, "access_token": "EAAG-new"}},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json["name"] == "Sales"
    assert patched.json["credential_keys"] == ["access_token", "app_secret"]
    assert "EAAG-new" not in patched.text

    events = workspace.call("GET", "/api/activity-logs?entity_type=integration_account")
    assert events.status_code == 200
    _assert_no_secret(events)
    assert "EAAG-new" not in events.text

    deleted = workspace.call("DELETE", f"/api/integration-accounts/{account['id']}")
    assert deleted.status_code == 204
    assert workspace.call("GET", f"/api/integration-accounts/{account['id']}").status_code == 404


def test_connected_and_disconnected_events_carry_no_secret(workspace):
    from sqlalchemy import select

    from shared.db import session_scope
    from shared.models import OutboxEvent

    account = _account(workspace).json
    workspace.call("DELETE", f"/api/integration-accounts/{account['id']}")
    with session_scope() as session:
        events = session.scalars(
            select(OutboxEvent).where(
                OutboxEvent.tenant_id == uuid.UUID(workspace.tenant["id"]),
                OutboxEvent.type.like("integration_account.%"),
            )
        ).all()
    assert sorted(e.type for e in events) == [
        "integration_account.connected",
        "integration_account.disconnected",
    ]
    for event in events:
        assert event.data["id"] == account["id"]
        dumped = json.dumps(event.data)
        assert not any(secret in dumped for secret in SECRETS)


def test_set_default_moves_the_flag(workspace):
    first = _account(workspace).json
    second = _account(workspace).json
    assert (first["is_default"], second["is_default"]) == (True, False)
    resp = workspace.call("POST", f"/api/integration-accounts/{second['id']}/set-default")
    assert resp.status_code == 200 and resp.json["is_default"] is True
    again = workspace.call("GET", f"/api/integration-accounts/{first['id']}")
    assert again.json["is_default"] is False
    # Deleting the default promotes the remaining account.
    workspace.call("DELETE", f"/api/integration-accounts/{second['id']}")
    assert workspace.call("GET", f"/api/integration-accounts/{first['id']}").json["is_default"]


def test_integration_upsert_get_and_delete(workspace):
    resp = workspace.call(
        "PUT", "/api/integrations/email", json={"enabled": True, "settings": {"footer": "Acme"}}
    )
    assert resp.status_code == 201, resp.text
    resp = workspace.call("PUT", "/api/integrations/email", json={"enabled": False})
    assert resp.status_code == 200
    assert (resp.json["enabled"], resp.json["settings"]) == (False, {"footer": "Acme"})
    account = _account(
        workspace,
        channel="email",
        external_id="Help@Acme.Example",
        settings={"smtp_host": "127.0.0.1", "smtp_port": 2525, "smtp_security": "none"},
        credentials={"smtp_password": SECRETS[0], "inbound_signing_key": SECRETS[1]},
    )
    assert account.status_code == 201, account.text
    assert account.json["external_id"] == "help@acme.example"
    _assert_no_secret(account)

    resp = workspace.call("DELETE", "/api/integrations/email")
    assert resp.status_code == 204
    assert workspace.call("GET", "/api/integrations/email").status_code == 404
    assert (
        workspace.call("GET", f"/api/integration-accounts/{account.json['id']}").status_code == 404
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"channel": "telegram"}, "channel"),
        ({"external_id": "not-a-number"}, "external_id"),
        ({"external_id": "\u0663\u0663\u0663"}, "external_id"),  # digits, not Meta's
        ({"credentials": {"password": "x"}}, "credentials.password"),
        ({"name": ""}, "name"),
        (
            {
                "channel": "email",
                "external_id": "a@b.example",
                "settings": {"smtp_security": "tls"},
                "credentials": {},
            },
            "settings.smtp_security",
        ),
        *(
            (
                {
                    "channel": "email",
                    "external_id": "a@b.example",
                    "settings": {name: value},
                    "credentials": {},
                },
                f"settings.{name}",
            )
            # a relay the sender cannot even be built for: refused here, not at each send
            for name, value in (
                ("smtp_host", 5),
                ("smtp_username", {"a": 1}),
                ("from_name", ["Acme"]),
                ("smtp_port", True),
            )
        ),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_accounts_are_422_with_the_field(workspace, fields, field):
    resp = _account(workspace, **fields)
    assert resp.status_code == 422, resp.text
    assert field in {d["field"] for d in resp.json["error"]["details"]}


def test_the_same_external_id_cannot_be_connected_twice(workspace, other_workspace):
    external_id = numeric_id()
    assert _account(workspace, external_id=external_id).status_code == 201
    assert _account(workspace, external_id=external_id).status_code == 409
    assert _account(other_workspace, external_id=external_id).status_code == 409


def test_another_tenants_account_is_404(workspace, other_workspace):
    theirs = _account(other_workspace).json
    for method, path, body in (
        ("GET", f"/api/integration-accounts/{theirs['id']}", None),
        ("PATCH", f"/api/integration-accounts/{theirs['id']}", {"name": "mine now"}),
        ("DELETE", f"/api/integration-accounts/{theirs['id']}", None),
        ("POST", f"/api/integration-accounts/{theirs['id']}/set-default", None),
    ):
        resp = workspace.call(method, path, json=body)
        assert resp.status_code == 404, (method, path)
    assert workspace.call("GET", "/api/integration-accounts").json["items"] == []
    assert other_workspace.call("GET", f"/api/integration-accounts/{theirs['id']}").json[
        "name"
    ] == ("Support")


def test_agents_read_but_only_admins_write(workspace):
    account = _account(workspace).json
    _, token = workspace.create_agent("agent")
    assert workspace.call("GET", "/api/integration-accounts", token=token).status_code == 200
    resp = workspace.call("GET", f"/api/integration-accounts/{account['id']}", token=token)
    assert resp.status_code == 200
    _assert_no_secret(resp)
    for method, path in (
        ("POST", "/api/integration-accounts"),
        ("PATCH", f"/api/integration-accounts/{account['id']}"),
        ("DELETE", f"/api/integration-accounts/{account['id']}"),
        ("POST", f"/api/integration-accounts/{account['id']}/set-default"),
        ("PUT", "/api/integrations/whatsapp"),
        ("DELETE", "/api/integrations/whatsapp"),
    ):
        resp = workspace.call(method, path, token=token, json={})
        assert resp.status_code == 403, (method, path, resp.text)
    assert workspace.client.simulate_get("/api/integration-accounts").status_code == 401


def test_unknown_channel_is_404(workspace):
    assert workspace.call("GET", "/api/integrations/telegram").status_code == 404
    assert workspace.call("PUT", "/api/integrations/telegram", json={}).status_code == 404

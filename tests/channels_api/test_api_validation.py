"""Accounts and posts refused for what they are: unsafe URLs, bad fields, foreign ids, roles."""

from __future__ import annotations

import uuid

import pytest

from tests.channels_api.conftest import ACCOUNTS, ApiChannel


def _fields(resp) -> set[str]:
    return {d.get("field") for d in resp.json["error"]["details"]}


def _create(ws, **body):
    return ws.call("POST", ACCOUNTS, json={"channel": "api", "name": "Backend"} | body)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:8080/hook",
        "http://intranet/hook",
        "http://[::1]/hook",
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
    ],
)
def test_an_unsafe_callback_url_is_refused_at_creation(ws, url):
    resp = _create(ws, settings={"callback_url": url})
    assert resp.status_code == 422, resp.text
    assert _fields(resp) == {"settings.callback_url"}


def test_account_settings_and_credentials_are_checked(ws, receiver, path):
    blank = _create(ws, settings={"callback_url": " "})
    assert blank.status_code == 422 and _fields(blank) == {"settings.callback_url"}
    not_text = _create(ws, settings={"callback_url": 42})
    assert not_text.status_code == 422 and _fields(not_text) == {"settings.callback_url"}
    slow = _create(ws, settings={"callback_url": receiver.url(path), "timeout_seconds": 600})
    assert slow.status_code == 422 and _fields(slow) == {"settings.timeout_seconds"}
    secret = _create(
        ws, settings={"callback_url": receiver.url(path)}, credentials={"signing_secret": "x"}
    )
    assert secret.status_code == 422 and _fields(secret) == {"credentials.signing_secret"}

    api = ApiChannel(ws, receiver.url(path), external_id="shop-inbox-1")
    assert api.account["external_id"] == "shop-inbox-1"
    taken = _create(ws, settings={"callback_url": receiver.url(path)}, external_id="shop-inbox-1")
    assert taken.status_code == 409

    patch = f"{ACCOUNTS}/{api.id}"
    unsafe = ws.call("PATCH", patch, json={"settings": {"callback_url": "http://10.1.1.1/x"}})
    assert unsafe.status_code == 422 and _fields(unsafe) == {"settings.callback_url"}
    moved = ws.call("PATCH", patch, json={"settings": {"callback_url": receiver.url("/new")}})
    assert moved.status_code == 200 and moved.json["credential_keys"] == ["signing_secret"]

    # Other channels still need their provider's id.
    whatsapp = ws.call("POST", ACCOUNTS, json={"channel": "whatsapp", "name": "WA"})
    assert whatsapp.status_code == 422 and _fields(whatsapp) == {"external_id"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contact": {"source_id": None}, "content": "x"}, "contact.source_id"),
        ({"contact": {"source_id": ""}, "content": "x"}, "contact.source_id"),
        ({"contact": {"source_id": "a", "email": "not-an-email"}, "content": "x"}, "contact.email"),
        ({"contact": {"source_id": "a", "phone": "12"}, "content": "x"}, "contact.phone"),
        ({"contact": {"source_id": "a"}, "content": ""}, "content"),
        ({"contact": {"source_id": "a"}}, "content"),
        ({"contact": {"source_id": "a"}, "content": None}, "content"),
        ({"content": "who am I?"}, "contact"),
        ({"contact": {"source_id": "a"}, "content": "x", "colour": "red"}, "colour"),
        ({"contact": {"source_id": "a"}, "content": "x", "conversation_id": "nope"}, None),
        ({"contact": {"source_id": "a"}, "content": "x", "external_message_id": ""}, None),
        ({"contact": {"source_id": "a"}, "attachments": [{"media_id": str(uuid.uuid4())}]}, None),
    ],
)
def test_bad_message_fields_answer_422_naming_them(api, body, field):
    resp = api.post(body)
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["code"] == "validation_error"
    if field is not None:
        assert field in _fields(resp), resp.json


def test_a_malformed_body_is_400(ws, api):
    resp = ws.call(
        "POST",
        f"{api.base}/messages",
        body=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400, resp.text


def test_a_conversation_must_be_the_accounts_and_match_the_contact(ws, api, receiver, path):
    mine = api.inbound("hi", source_id="a")
    other = ApiChannel(ws, receiver.url(path), name="Other backend")
    theirs = other.inbound("hi", source_id="a")

    foreign = api.post({"conversation_id": theirs["conversation_id"], "content": "x"})
    assert foreign.status_code == 422 and _fields(foreign) == {"conversation_id"}
    unknown = api.post({"conversation_id": str(uuid.uuid4()), "content": "x"})
    assert unknown.status_code == 422 and _fields(unknown) == {"conversation_id"}
    mismatch = api.post(
        {"conversation_id": mine["conversation_id"], "contact": {"source_id": "b"}, "content": "x"}
    )
    assert mismatch.status_code == 422 and _fields(mismatch) == {"contact.source_id"}


def test_another_tenants_account_is_404_and_agents_are_403(ws, other_workspace, api):
    body = {"contact": {"source_id": "a"}, "content": "x"}
    for path in ("messages", "contacts", "conversations", "rotate-secret"):
        payload = {"source_id": "a"} if path == "contacts" else body
        if path == "conversations":
            payload = {"contact": {"source_id": "a"}}
        resp = other_workspace.call("POST", f"{api.base}/{path}", json=payload)
        assert resp.status_code == 404, (path, resp.text)
    status = other_workspace.call(
        "POST", f"{api.base}/messages/{uuid.uuid4()}/status", json={"status": "read"}
    )
    assert status.status_code == 404
    unknown = ws.call("POST", f"{ACCOUNTS}/{uuid.uuid4()}/api/messages", json=body)
    assert unknown.status_code == 404

    _agent, token = ws.create_agent("agent")
    assert api.post(body, token=token).status_code == 403
    assert ws.client.simulate_post(f"{api.base}/messages", json=body).status_code == 401


def test_an_account_of_another_channel_has_no_api_routes(ws):
    email = ws.call(
        "POST",
        ACCOUNTS,
        json={"channel": "email", "name": "Mailbox", "external_id": "help@shop.example"},
    )
    assert email.status_code == 201, email.text
    resp = ws.call(
        "POST",
        f"{ACCOUNTS}/{email.json['id']}/api/messages",
        json={"contact": {"source_id": "a"}, "content": "x"},
    )
    assert resp.status_code == 404
    assert "signing_secret" not in email.json


def test_an_api_key_posts_like_its_owner(ws, api):
    created = ws.call("POST", "/api/api-keys", json={"name": "shop backend"})
    assert created.status_code == 201, created.text
    resp = ws.client.simulate_post(
        f"{api.base}/messages",
        json={"contact": {"source_id": "k-1"}, "content": "via key"},
        headers={"X-API-Key": created.json["key"]},
    )
    assert resp.status_code == 201, resp.text


def test_the_routes_are_documented_in_the_integrations_group(client):
    doc = client.simulate_get("/api/openapi.json").json
    base = "/api/integration-accounts/{id}/api"
    routes = {
        f"{base}/contacts": "ApiContact",
        f"{base}/conversations": "ApiConversationCreate",
        f"{base}/messages": "ApiMessageCreate",
        f"{base}/messages/{{message_id}}/status": "ApiStatusReport",
        f"{base}/rotate-secret": None,
        f"{base}/test-callback": None,
    }
    for route, schema in routes.items():
        operation = doc["paths"][route]["post"]
        assert operation["tags"] == ["Integrations"], route
        assert operation["summary"] and "integrations.manage" in operation["description"]
        if schema:
            assert operation["requestBody"]["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{schema}"
            }
    status = doc["components"]["schemas"]["ApiStatusReport"]["properties"]["status"]
    assert status["enum"] == ["delivered", "read", "failed"]
    created = doc["paths"]["/api/integration-accounts"]["post"]["requestBody"]
    account = doc["components"]["schemas"][
        created["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    ]
    assert "api" in account["properties"]["channel"]["enum"]
    assert "external_id" not in account["required"]


def test_an_inbox_identifier_is_unique_per_workspace_not_across_them(ws, other_workspace):
    """An api account's ``external_id`` is the tenant's own label: another workspace using
    the same one answered 409, which told it the label existed elsewhere (and let names be
    taken). Meta and email ids stay unique across workspaces: inbound finds its tenant by
    them."""
    body = {"channel": "api", "name": "Shop backend", "external_id": "shop-backend"}
    ours = ws.call("POST", "/api/integration-accounts", json=body)
    assert ours.status_code == 201, ours.text
    theirs = other_workspace.call("POST", "/api/integration-accounts", json=body)
    assert theirs.status_code == 201, theirs.text
    again = ws.call("POST", "/api/integration-accounts", json=body)
    assert again.status_code == 409, again.text

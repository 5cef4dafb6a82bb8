"""The WA Templates endpoints: list, create (submitted to Meta), get, local delete, header media."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.db import session_scope
from shared.models import ActivityLog
from tests.wa_templates.conftest import meta_template

NEW = {
    "name": "order_update",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
        {
            "type": "body",
            "text": "Hi {{1}}, your order ships on {{2}}.",
            "example": {"body_text": [["Ada", "Monday"]]},
        },
        {"type": "FOOTER", "text": "Acme Shop"},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Thanks"}]},
    ],
}


def _create(ws, account, **fields):
    body = NEW | {"integration_account_id": str(account["id"])} | fields
    return ws.call("POST", "/api/wa-templates", json=body)


def test_create_submits_to_meta_with_the_account_token_and_stores_it_pending(workspace, templates):
    account = templates.account()

    resp = _create(workspace, account)

    assert resp.status_code == 201, resp.text
    created = resp.json
    assert created["status"] == "PENDING" and created["name"] == "order_update"
    assert created["integration_account_id"] == str(account["id"])
    [request] = templates.graph.sent("/message_templates")
    assert request.path == f"/v21.0/{account['waba_id']}/message_templates"
    assert request.token == account["token"]
    assert request.json["name"] == "order_update" and request.json["category"] == "UTILITY"
    assert request.json["components"][1]["type"] == "BODY"  # normalized to Meta's case
    [at_meta] = templates.graph.wa_templates[account["waba_id"]]
    assert created["meta_template_id"] == at_meta["id"]
    assert workspace.call("GET", f"/api/wa-templates/{created['id']}").json == created
    with session_scope() as session:
        actions = session.scalars(
            select(ActivityLog.action).where(ActivityLog.entity_id == uuid.UUID(created["id"]))
        ).all()
    assert actions == ["wa_template.created"]


def test_bad_templates_are_422_and_never_reach_meta(workspace, templates):
    account = templates.account()
    body_missing = [{"type": "FOOTER", "text": "x"}]
    gap = [{"type": "BODY", "text": "Hi {{1}} and {{3}}"}]
    cases = [
        ({"name": "Order Update"}, "name"),
        ({"language": "english"}, "language"),
        ({"category": "PROMO"}, "category"),
        ({"components": []}, "components"),
        ({"components": body_missing}, "components"),
        ({"components": gap}, "components[0].text"),
        ({"components": [{"type": "BODY", "text": "x" * 1025}]}, "components[0].text"),
        ({"components": [{"type": "HEADER", "format": "GIF"}, NEW["components"][1]]}, "format"),
        ({"components": [{"type": "BODY", "text": "a"}, {"type": "BODY", "text": "b"}]}, "type"),
        ({"integration_account_id": "not-a-uuid"}, "integration_account_id"),
        ({"unknown": 1}, "unknown"),
    ]
    for fields, field in cases:
        resp = _create(workspace, account, **fields)
        assert resp.status_code == 422, (fields, resp.text)
        assert resp.json["error"]["code"] == "validation_error"
        assert any(field in (d.get("field") or "") for d in resp.json["error"]["details"]), (
            fields,
            resp.json,
        )
    assert templates.graph.sent("/message_templates") == []
    assert templates.templates() == {}


def test_an_existing_name_and_language_is_409_here_or_at_meta(workspace, templates):
    account = templates.account()
    assert _create(workspace, account).status_code == 201
    again = _create(workspace, account)
    assert again.status_code == 409 and again.json["error"]["code"] == "conflict"
    assert len(templates.graph.sent("/message_templates")) == 1  # refused before Meta

    # Meta has it (created elsewhere) but we do not yet: Meta's 2388024 is a 409 too.
    templates.at_meta(account, meta_template("welcome", language="pt_BR"))
    resp = _create(workspace, account, name="welcome", language="pt_BR")
    assert resp.status_code == 409, resp.text
    # Another language of the same name is a new template.
    assert _create(workspace, account, language="es").status_code == 201


def test_meta_refusing_the_template_is_422_and_meta_failing_is_502(workspace, templates):
    account = templates.account()
    templates.graph.script_templates("template_invalid")
    refused = _create(workspace, account)
    assert refused.status_code == 422, refused.text
    assert "Add sample text" in refused.json["error"]["message"]
    assert refused.json["error"]["details"][0]["meta_code"] == "100"

    for behaviour in ("503", "500"):
        templates.graph.script_templates(behaviour)
        failed = _create(workspace, account)
        assert failed.status_code == 502, (behaviour, failed.text)
        assert failed.json["error"]["code"] == "meta_api_error"
    templates.graph.script_templates("130429")
    throttled = _create(workspace, account)
    assert throttled.status_code == 429, throttled.text
    assert throttled.json["error"]["code"] == "meta_rate_limited"

    templates.graph.script_templates("190")
    token = _create(workspace, account)
    assert token.status_code == 409, token.text
    assert token.json["error"]["code"] == "meta_token_invalid"
    assert "status 'error'" in token.json["error"]["message"]
    assert account["token"] not in token.text
    assert _account_status(account) == "error"

    templates.graph.script_templates(("raw", 502, b"<html>bad gateway</html>"))
    assert _create(workspace, account).status_code == 502
    assert templates.templates() == {}  # nothing stored when Meta did not take it


def test_create_needs_a_whatsapp_account_of_the_tenant_with_credentials(
    workspace, templates, other_templates
):
    theirs = other_templates.account()
    resp = _create(workspace, theirs)
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
    missing = _create(workspace, {"id": uuid.uuid4()})
    assert missing.status_code == 404

    from shared.channels import accounts
    from shared.context import Ctx

    with session_scope() as session:
        email = accounts.create_account(
            session,
            Ctx.system(templates.tenant_id),
            channel="email",
            name="Mail",
            external_id=f"{uuid.uuid4().hex[:8]}@shop.example",
            settings={},
            credentials={},
        )
        no_waba = accounts.create_account(
            session,
            Ctx.system(templates.tenant_id),
            channel="whatsapp",
            name="No WABA",
            external_id=str(uuid.uuid4().int)[:15],
            settings={},
            credentials={"access_token": "t"},
        )
        email_id, no_waba_id = email.id, no_waba.id
    assert _create(workspace, {"id": email_id}).status_code == 422
    resp = _create(workspace, {"id": no_waba_id})
    assert resp.status_code == 422 and "waba_id" in resp.json["error"]["message"]
    assert templates.graph.sent("/message_templates") == []


def test_agents_read_templates_but_only_integrations_managers_change_them(workspace, templates):
    account = templates.account()
    created = _create(workspace, account).json
    _agent, token = workspace.create_agent("agent")
    path = f"/api/wa-templates/{created['id']}"

    assert workspace.call("GET", "/api/wa-templates", token=token).status_code == 200
    assert workspace.call("GET", path, token=token).status_code == 200
    for method, url, body in (
        ("POST", "/api/wa-templates", NEW | {"integration_account_id": str(account["id"])}),
        ("POST", "/api/wa-templates/sync", {}),
        ("DELETE", path, None),
        ("PATCH", path + "/header-media", {"header_media_url": None}),
    ):
        resp = workspace.call(method, url, token=token, json=body)
        assert resp.status_code == 403, (method, url, resp.text)
        assert resp.json["error"]["code"] == "forbidden"
    assert workspace.call("GET", path).status_code == 200  # still there


def test_list_filters_and_pages_newest_first(workspace, templates):
    account, second = templates.account(), templates.account()
    templates.at_meta(
        account,
        meta_template("order_update"),
        meta_template("order_update", language="es", status="PENDING"),
        meta_template("spring_sale", category="MARKETING", status="REJECTED"),
        meta_template("login_code", category="AUTHENTICATION", body="{{1}} is your code."),
    )
    templates.at_meta(second, meta_template("order_shipped"))
    templates.synced(account)
    templates.synced(second)

    def names(**params):
        resp = workspace.call("GET", "/api/wa-templates", params=params)
        assert resp.status_code == 200, resp.text
        return sorted(f"{t['name']}/{t['language']}" for t in resp.json["items"])

    assert len(names()) == 5
    assert names(integration_account_id=str(second["id"])) == ["order_shipped/en_US"]
    assert names(status="APPROVED") == [
        "login_code/en_US",
        "order_shipped/en_US",
        "order_update/en_US",
    ]
    assert names(category="MARKETING") == ["spring_sale/en_US"]
    assert names(language="es") == ["order_update/es"]
    assert names(q="ORDER_", status="APPROVED", integration_account_id=str(account["id"])) == [
        "order_update/en_US"
    ]
    assert names(q="%") == []

    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = workspace.call("GET", "/api/wa-templates", params=params).json
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5

    for params in ({"status": "NOPE"}, {"limit": 0}, {"cursor": "junk"}, {"language": "x y"}):
        resp = workspace.call("GET", "/api/wa-templates", params=params)
        assert resp.status_code == 400, (params, resp.text)


def test_other_tenants_templates_are_404(workspace, other_workspace, templates, other_templates):
    theirs = other_templates.account()
    created = _create(other_workspace, theirs).json
    path = f"/api/wa-templates/{created['id']}"
    assert workspace.call("GET", path).status_code == 404
    assert workspace.call("DELETE", path).status_code == 404
    patch = workspace.call("PATCH", path + "/header-media", json={"header_media_url": None})
    assert patch.status_code == 404
    assert workspace.call("GET", "/api/wa-templates").json["items"] == []
    listed = workspace.call(
        "GET", "/api/wa-templates", params={"integration_account_id": str(theirs["id"])}
    )
    assert listed.json["items"] == []
    assert other_workspace.call("GET", path).status_code == 200


def test_delete_is_local_and_the_next_sync_brings_it_back(workspace, templates):
    account = templates.account()
    templates.at_meta(account, meta_template("order_update"))
    templates.synced(account)
    [template] = workspace.call("GET", "/api/wa-templates").json["items"]

    resp = workspace.call("DELETE", f"/api/wa-templates/{template['id']}")
    assert resp.status_code == 204
    assert workspace.call("GET", f"/api/wa-templates/{template['id']}").status_code == 404
    assert templates.graph.requests[-1].method == "GET"  # no call to Meta to delete
    assert workspace.call("DELETE", f"/api/wa-templates/{template['id']}").status_code == 404

    templates.synced(account)
    [back] = workspace.call("GET", "/api/wa-templates").json["items"]
    assert back["meta_template_id"] == template["meta_template_id"] and back["id"] != template["id"]


def test_header_media_only_for_a_media_header_and_https(workspace, templates):
    account = templates.account()
    templates.at_meta(
        account,
        meta_template("catalogue", header={"format": "IMAGE"}, body="New in {{1}}"),
        meta_template("plain"),
    )
    templates.synced(account)
    found = {t.name: t for t in templates.templates().values()}
    path = f"/api/wa-templates/{found['catalogue'].id}/header-media"

    url = "https://cdn.example.com/spring.jpg"
    resp = workspace.call("PATCH", path, json={"header_media_url": url})
    assert resp.status_code == 200, resp.text
    assert resp.json["header_media_url"] == url
    cleared = workspace.call("PATCH", path, json={"header_media_url": None})
    assert cleared.status_code == 200 and cleared.json["header_media_url"] is None

    for body in (
        {"header_media_url": "http://cdn.example.com/a.jpg"},
        {"header_media_url": "not a url"},
        {},
    ):
        bad = workspace.call("PATCH", path, json=body)
        assert bad.status_code == 422, (body, bad.text)
    plain = f"/api/wa-templates/{found['plain'].id}/header-media"
    refused = workspace.call("PATCH", plain, json={"header_media_url": url})
    assert refused.status_code == 422 and "header" in refused.json["error"]["message"]


def _account_status(account) -> str:
    from shared.db import session_scope
    from shared.models import IntegrationAccount

    with session_scope() as session:
        return session.get(IntegrationAccount, account["id"]).status


def test_meta_accepting_with_an_answer_of_another_shape_is_502_and_stores_nothing(
    workspace, templates
):
    account = templates.account()
    answers = (
        {"id": "9" * 65, "status": "PENDING"},
        {"id": "123", "status": "PENDING" * 6},
        {"id": "123", "category": "UTILITY" * 6},
        {"id": {"nested": 1}},
        {"id": True},
        {"id": "123", "status": {"x": 1}},
    )
    for answer in answers:
        templates.graph.script_templates(("raw", 200, answer))
        resp = _create(workspace, account)
        assert resp.status_code == 502, (answer, resp.text)
        assert resp.json["error"]["code"] == "meta_api_error"
    assert templates.templates() == {}


def test_a_transient_meta_failure_answered_with_a_400_is_502_not_a_refusal(workspace, templates):
    """Meta answers some outages as a 400 marked transient (code 2, 131000): not a refusal
    of the template (422: the admin would edit it for nothing) but Meta failing (502)."""
    account = templates.account()
    for code, message in ((2, "Service temporarily unavailable"), (131000, "Something went wrong")):
        error = {"message": message, "type": "OAuthException", "code": code, "is_transient": True}
        templates.graph.script_templates(("raw", 400, {"error": error}))
        resp = _create(workspace, account)
        assert resp.status_code == 502, (code, resp.text)
        assert resp.json["error"]["code"] == "meta_api_error"
    assert templates.templates() == {}

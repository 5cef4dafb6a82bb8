"""A template send is checked before anything is stored or sent: the template exists for the
conversation's account, is APPROVED, in that language, and gets its parameters (else 422)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Message
from tests.wa_templates.conftest import meta_template
from tests.waiting import wait_until

STALE = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)


def _conversation(templates, account):
    contact = templates.contact(
        channel="whatsapp", external_id="15551234567", last_inbound_at=STALE
    )
    return templates.conversation(contact, integration_account_id=account["id"])


def _send(workspace, conversation, template):
    return workspace.call(
        "POST", f"/api/conversations/{conversation['id']}/messages", json={"template": template}
    )


def _messages(templates) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).where(Message.tenant_id == templates.tenant_id))


def _body(*values: str) -> dict:
    return {"type": "body", "parameters": [{"type": "text", "text": v} for v in values]}


def test_an_approved_template_with_its_parameters_is_sent_outside_the_window(workspace, templates):
    account = templates.account()
    templates.at_meta(account, meta_template("order_update"))
    templates.synced(account)
    conversation = _conversation(templates, account)
    template = {"name": "order_update", "language": "en_US", "components": [_body("A-17", "Mon")]}

    resp = _send(workspace, conversation, template)

    assert resp.status_code == 201, resp.text
    assert resp.json["template"] == template

    def sent():
        return [r for r in templates.graph.sent() if r.json.get("type") == "template"]

    [request] = wait_until(sent, "the template send at Meta", timeout=20)
    assert request.path == f"/v21.0/{account['external_id']}/messages"
    assert request.json["template"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [_body("A-17", "Mon")],
    }


def test_what_meta_would_refuse_is_422_naming_it_and_nothing_is_stored_or_sent(
    workspace, templates
):
    account, other = templates.account(), templates.account()
    templates.at_meta(
        account,
        meta_template("order_update"),
        meta_template("order_update", language="es", status="PENDING"),
        meta_template("spring_sale", status="PAUSED"),
        meta_template(
            "track",
            body="Track {{1}}",
            header={"format": "TEXT", "text": "Order {{1}}"},
            buttons=[
                {"type": "URL", "text": "Track", "url": "https://acme.example/t/{{1}}"},
                {"type": "QUICK_REPLY", "text": "Stop"},
                {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "+15550001"},
            ],
        ),
    )
    templates.at_meta(other, meta_template("only_on_the_other_number"))
    templates.synced(account)
    templates.synced(other)
    conversation = _conversation(templates, account)
    track_ok = [
        {"type": "header", "parameters": [{"type": "text", "text": "A-17"}]},
        _body("A-17"),
        {
            "type": "button",
            "sub_type": "url",
            "index": "0",
            "parameters": [{"type": "text", "text": "a17"}],
        },
    ]
    cases = [
        ({"name": "nope", "language": "en_US"}, "template.name", "no template 'nope'"),
        (
            {"name": "only_on_the_other_number", "language": "en_US"},
            "template.name",
            "no template",
        ),
        ({"name": "order_update", "language": "fr"}, "template.language", "en_US, es"),
        (
            {"name": "order_update", "language": "en" + "_abcd" * 10},
            "template.language",
            "at most 16 characters",
        ),
        (
            {"name": "order_update", "language": "es", "components": [_body("a", "b")]},
            "template.status",
            "PENDING, not APPROVED",
        ),
        ({"name": "spring_sale", "language": "en_US"}, "template.status", "PAUSED"),
        (
            {"name": "order_update", "language": "en_US", "components": [_body("A-17")]},
            "template.body",
            "expects 2 parameter(s), got 1",
        ),
        (
            {"name": "order_update", "language": "en_US", "components": [_body("a", "b", "c")]},
            "template.body",
            "got 3",
        ),
        ({"name": "track", "language": "en_US", "components": track_ok[1:]}, "template.header", ""),
        (
            {"name": "track", "language": "en_US", "components": track_ok[:2]},
            "template.button[0]",
            "got none",
        ),
        (
            {
                "name": "track",
                "language": "en_US",
                "components": [
                    *track_ok,
                    {"type": "button", "sub_type": "url", "index": "5", "parameters": []},
                ],
            },
            "template.button[5]",
            "no such button",
        ),
        (
            {
                "name": "track",
                "language": "en_US",
                "components": [*track_ok, {"type": "footer", "parameters": []}],
            },
            "template.components[3].type",
            "",
        ),
    ]
    for template, field, words in cases:
        resp = _send(workspace, conversation, template)
        assert resp.status_code == 422, (template, resp.text)
        error = resp.json["error"]
        assert error["code"] == "validation_error"
        assert field in [d["field"] for d in error["details"]], (template, error)
        assert words in error["message"] + str(error["details"]), (template, error)
    assert _messages(templates) == 0
    assert templates.graph.sent() == []

    # The well-formed one goes through; a quick reply may carry its payload.
    quick = {
        "type": "button",
        "sub_type": "quick_reply",
        "index": "1",
        "parameters": [{"type": "payload", "payload": "STOP"}],
    }
    ok = _send(
        workspace,
        conversation,
        {"name": "track", "language": "en_US", "components": [*track_ok, quick]},
    )
    assert ok.status_code == 201, ok.text


def test_a_media_header_takes_the_templates_header_media_url_when_the_send_gives_none(
    workspace, templates
):
    account = templates.account()
    templates.at_meta(
        account, meta_template("catalogue", header={"format": "IMAGE"}, body="New in {{1}}")
    )
    templates.synced(account)
    [template] = templates.templates(account).values()
    conversation = _conversation(templates, account)
    send = {"name": "catalogue", "language": "en_US", "components": [_body("spring")]}

    refused = _send(workspace, conversation, send)
    assert refused.status_code == 422
    assert "header media URL" in refused.json["error"]["message"]

    url = "https://cdn.example.com/spring.jpg"
    patched = workspace.call(
        "PATCH", f"/api/wa-templates/{template.id}/header-media", json={"header_media_url": url}
    )
    assert patched.status_code == 200, patched.text
    resp = _send(workspace, conversation, send)
    assert resp.status_code == 201, resp.text
    assert resp.json["template"]["components"][0] == {
        "type": "header",
        "parameters": [{"type": "image", "image": {"link": url}}],
    }
    # A header the send gives itself is kept, and must be of the header's kind.
    own = {"type": "header", "parameters": [{"type": "image", "image": {"link": url + "?v=2"}}]}
    kept = _send(workspace, conversation, send | {"components": [own, _body("x")]})
    assert kept.status_code == 201 and kept.json["template"]["components"][0] == own
    video = {"type": "header", "parameters": [{"type": "video", "video": {"link": url}}]}
    wrong = _send(workspace, conversation, send | {"components": [video, _body("x")]})
    assert wrong.status_code == 422


def test_a_scheduled_template_is_checked_when_scheduled_all_but_its_approval(workspace, templates):
    account = templates.account()
    templates.at_meta(account, meta_template("order_update", status="PENDING"))
    templates.synced(account)
    conversation = _conversation(templates, account)
    path = f"/api/conversations/{conversation['id']}/scheduled-messages"
    run_at = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()

    def schedule(template):
        return workspace.call("POST", path, json={"template": template, "run_at": run_at})

    unknown = schedule({"name": "nope", "language": "en_US"})
    assert unknown.status_code == 422 and unknown.json["error"]["details"][0]["field"] == (
        "template.name"
    )
    short = schedule({"name": "order_update", "language": "en_US", "components": [_body("A")]})
    assert short.status_code == 422 and "expects 2" in short.json["error"]["message"]
    # Still PENDING: Meta may approve it before it is due (checked again then).
    pending = {"name": "order_update", "language": "en_US", "components": [_body("A", "B")]}
    resp = schedule(pending)
    assert resp.status_code == 201, resp.text
    assert resp.json["template"] == pending


def test_a_template_meta_listed_with_odd_buttons_is_checked_not_a_500(workspace, templates):
    """Components are stored as Meta lists them: a BUTTONS whose ``buttons`` is not a list
    (nor the components' other parts the documented shapes) must not break every send."""
    account = templates.account()
    odd = meta_template("odd", body="Hi {{1}}")
    odd["components"] += [{"type": "BUTTONS", "buttons": 5}, {"type": "HEADER", "format": 7}]
    templates.at_meta(account, odd)
    templates.synced(account)
    [template] = templates.templates(account).values()
    conversation = _conversation(templates, account)

    resp = _send(
        workspace, conversation, {"name": "odd", "language": "en_US", "components": [_body("A")]}
    )
    assert resp.status_code == 201, resp.text
    patched = workspace.call(
        "PATCH",
        f"/api/wa-templates/{template.id}/header-media",
        json={"header_media_url": "https://cdn.example.com/a.jpg"},
    )
    assert patched.status_code == 422, patched.text


def test_parameters_of_the_wrong_type_or_without_their_value_are_422(workspace, templates):
    account = templates.account()
    templates.at_meta(
        account,
        meta_template("order_update", body="Order {{1}}"),
        meta_template("catalogue", header={"format": "IMAGE"}, body="New in {{1}}"),
    )
    templates.synced(account)
    conversation = _conversation(templates, account)
    url = "https://cdn.example.com/a.jpg"

    def body(*parameters):
        return {"type": "body", "parameters": list(parameters)}

    def header(*parameters):
        return {"type": "header", "parameters": list(parameters)}

    ok_body = body({"type": "text", "text": "x"})
    cases = [
        ("order_update", [body({"type": "text"})], "template.body"),
        ("order_update", [body({"type": "text", "text": 5})], "template.body"),
        ("order_update", [body({"type": "image", "image": {"link": url}})], "template.body"),
        ("catalogue", [header({"type": "image"}), ok_body], "template.header"),
        ("catalogue", [header({"type": "image", "image": {}}), ok_body], "template.header"),
        ("catalogue", [header({"type": "image", "image": url}), ok_body], "template.header"),
    ]
    for name, components, field in cases:
        template = {"name": name, "language": "en_US", "components": components}
        resp = _send(workspace, conversation, template)
        assert resp.status_code == 422, (components, resp.text)
        assert field in [d["field"] for d in resp.json["error"]["details"]], resp.json
    assert _messages(templates) == 0

    for name, components in (
        ("order_update", [ok_body]),
        ("order_update", [body({"type": "currency", "currency": {"code": "USD"}})]),
        ("catalogue", [header({"type": "image", "image": {"id": "123"}}), ok_body]),
    ):
        template = {"name": name, "language": "en_US", "components": components}
        resp = _send(workspace, conversation, template)
        assert resp.status_code == 201, (components, resp.text)


def test_a_named_template_needs_each_parameter_named_after_its_variable(workspace, templates):
    """Meta matches a NAMED template's parameters by ``parameter_name``: a send without
    them (or naming another variable) is refused there (132000), so it is a 422 here."""
    account = templates.account()
    named = meta_template("named_update", body="Hi {{first_name}}, order {{order_id}}")
    named["parameter_format"] = "NAMED"
    templates.at_meta(account, named)
    templates.synced(account)
    conversation = _conversation(templates, account)

    def send(*parameters):
        components = [{"type": "body", "parameters": list(parameters)}]
        template = {"name": "named_update", "language": "en_US", "components": components}
        return _send(workspace, conversation, template)

    def text(value, name=None):
        return {"type": "text", "text": value} | ({"parameter_name": name} if name else {})

    for parameters in (
        (text("Ada"), text("A-17")),
        (text("Ada", "first_name"), text("A-17", "order")),
        (text("Ada", "first_name"), text("A-17", "first_name")),
    ):
        resp = send(*parameters)
        assert resp.status_code == 422, (parameters, resp.text)
        assert "template.body" in [d["field"] for d in resp.json["error"]["details"]]
    assert _messages(templates) == 0
    ok = send(text("A-17", "order_id"), text("Ada", "first_name"))  # any order
    assert ok.status_code == 201, ok.text

"""The api channel feeds the same events as every channel: automation, outgoing webhooks,
statuses; and its secret rotates, its files travel."""

from __future__ import annotations

import os

from sqlalchemy import select

from shared.db import session_scope
from shared.models import OutboxEvent
from shared.webhooks import signing
from tests.channels_api.conftest import message_row, messages_of, wait_for_status
from tests.channels_outbound.test_media import upload as upload_media
from tests.waiting import wait_until
from tests.webhooks.test_api import create as create_webhook


def test_an_automation_rule_answers_an_api_message_through_the_callback(ws, api, receiver, path):
    rule = ws.call(
        "POST",
        "/api/automation/rules",
        json={
            "name": "Refund desk",
            "trigger_event_types": ["message.created"],
            "conditions": {
                "match": "all",
                "conditions": [
                    {"attribute": "conversation.channel", "operator": "equal_to", "value": "api"},
                    {"attribute": "message.content", "operator": "contains", "value": "refund"},
                ],
            },
            "actions": [
                {"type": "add_tags", "params": {"tags": ["refund"]}},
                {"type": "send_message", "params": {"body": "Refunds take 5 days."}},
            ],
        },
    )
    assert rule.status_code == 201, rule.text

    inbound = api.inbound("I want a refund please")
    conversation_id = inbound["conversation_id"]

    def automated():
        return [m for m in messages_of(ws, conversation_id) if m["sender_type"] == "automation"]

    [answer] = wait_until(automated, "the rule's message")
    wait_for_status(ws, conversation_id, answer["id"], "sent")
    [callback] = wait_until(lambda: receiver.at(path), "the callback")
    assert signing.verify(api.secret, callback.headers, callback.body)
    assert callback.json["data"]["content"] == "Refunds take 5 days."
    assert callback.json["data"]["sender"]["type"] == "automation"
    tags = ws.call("GET", f"/api/conversations/{conversation_id}").json["tags"]
    assert tags == ["refund"]


def test_an_outgoing_webhook_subscriber_gets_the_api_channels_events(ws, api, receiver):
    hook = create_webhook(
        ws,
        receiver.url("/subscriber"),
        event_types=["message.created", "conversation.created", "contact.created"],
    )

    inbound = api.inbound("Hello from the shop", source_id="sub-1")

    def arrived():
        types = sorted(r.json["type"] for r in receiver.at("/subscriber"))
        return types if len(types) >= 3 else None

    assert wait_until(arrived, "three webhooks") == [
        "contact.created",
        "conversation.created",
        "message.created",
    ]
    [message] = [r for r in receiver.at("/subscriber") if r.json["type"] == "message.created"]
    assert signing.verify(hook["secret"], message.headers, message.body)
    data = message.json["data"]
    assert data["id"] == inbound["id"] and data["channel"] == "api"
    assert data["direction"] == "inbound"
    assert message.json["actor"]["type"] == "contact"


def test_the_tenants_system_reports_statuses_that_only_move_forward(ws, api, receiver, path):
    conversation_id = api.inbound("hi")["conversation_id"]
    reply = api.reply(conversation_id)
    wait_for_status(ws, conversation_id, reply["id"], "sent")

    delivered = api.report(reply["id"], "delivered", at="2026-12-01T10:00:00Z")
    assert delivered.status_code == 200, delivered.text
    assert delivered.json["status"] == "delivered"
    read = api.report(reply["id"], "read")
    assert read.status_code == 200 and read.json["status"] == "read"
    late = api.report(reply["id"], "delivered")
    assert late.status_code == 200 and late.json["status"] == "read"  # never backwards
    failed = api.report(reply["id"], "failed", error_code="bounced")
    assert failed.status_code == 200 and failed.json["status"] == "read"

    with session_scope() as session:
        changes = session.scalars(
            select(OutboxEvent.data["status"].astext).where(
                OutboxEvent.type == "message.status_updated",
                OutboxEvent.data["id"].astext == reply["id"],
            )
        ).all()
    assert sorted(changes) == ["delivered", "read", "sent"]

    inbound = api.inbound("another")
    assert api.report(inbound["id"], "read").status_code == 404  # not an outbound message
    assert api.report(reply["id"], "sent").status_code == 422
    assert api.report(reply["id"], "read", at="yesterday").status_code == 422


def test_a_reported_failure_is_shown_on_the_message(ws, api, receiver, path):
    conversation_id = api.inbound("hi")["conversation_id"]
    reply = api.reply(conversation_id)
    wait_for_status(ws, conversation_id, reply["id"], "sent")

    resp = api.report(
        reply["id"], "failed", error_code="no_device", error_message="the app is uninstalled"
    )
    assert resp.status_code == 200, resp.text
    row = message_row(reply["id"])
    assert row["status"] == "failed" and row["error_code"] == "no_device"
    assert row["error_message"] == "the app is uninstalled"


def test_rotating_the_secret_signs_with_both_for_a_day(ws, api, receiver, path):
    old = api.secret
    rotated = ws.call("POST", f"{api.base}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json["signing_secret"]
    assert new.startswith("whsec_") and new != old
    assert rotated.json["previous_secret_expires_at"] is not None
    shown = ws.call("GET", f"/api/integration-accounts/{api.id}").json
    assert "signing_secret" not in shown and new not in str(shown)

    conversation_id = api.inbound("hi")["conversation_id"]
    reply = api.reply(conversation_id)
    wait_for_status(ws, conversation_id, reply["id"], "sent")
    [callback] = receiver.at(path)
    assert len(callback.headers["webhook-signature"].split()) == 2
    assert signing.verify(new, callback.headers, callback.body)
    assert signing.verify(old, callback.headers, callback.body)


def test_files_travel_both_ways_as_uploaded_media(ws, api, receiver, path):
    pdf = b"%PDF-1.4\n" + os.urandom(512)
    upload = upload_media(ws, pdf, filename="invoice.pdf", content_type="application/pdf")
    assert upload.status_code == 201, upload.text
    media_id = upload.json["id"]

    posted = api.post({"contact": {"source_id": "f-1"}, "attachments": [{"media_id": media_id}]})
    assert posted.status_code == 201, posted.text
    assert posted.json["content_type"] == "document" and posted.json["body"] is None
    [attachment] = posted.json["attachments"]
    assert attachment["media_id"] == media_id and attachment["filename"] == "invoice.pdf"

    conversation_id = posted.json["conversation_id"]
    sent = ws.call(
        "POST",
        f"/api/conversations/{conversation_id}/messages",
        json={"body": "Here it is, signed", "attachments": [{"media_id": media_id}]},
    )
    assert sent.status_code == 201, sent.text
    wait_for_status(ws, conversation_id, sent.json["id"], "sent")
    [callback] = receiver.at(path)
    [item] = callback.json["data"]["attachments"]
    assert item["url"] == f"/api/media/{media_id}" and item["mime_type"] == "application/pdf"
    download = ws.call("GET", item["url"])
    assert download.status_code == 200 and download.content == pdf

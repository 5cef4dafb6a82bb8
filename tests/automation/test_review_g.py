"""Review findings: loops, tenancy and odd input around automation rules."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select

from shared.channels.statuses import apply_status
from shared.db import session_scope
from shared.models import Message
from tests.automation.conftest import (
    add_conversation,
    create_rule,
    runs,
    send_message,
    wait_settled,
)


def automation_messages(conv_id: str) -> list[Message]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(Message)
                .where(
                    Message.conversation_id == uuid.UUID(conv_id),
                    Message.sender_type == "automation",
                )
                .order_by(Message.created_at)
            )
        )


def report_status(message_id: uuid.UUID, status: str) -> None:
    """A provider's status report, as the channels record it (the system's event)."""
    with session_scope() as session:
        message = session.get(Message, message_id, with_for_update=True)
        apply_status(session, message, status)


def test_a_rule_never_fires_on_the_delivery_status_of_its_own_message(ws):
    rule = create_rule(
        ws,
        name="status reply",
        trigger_event_types=["message.status_updated"],
        conditions={"match": "all", "conditions": []},
        actions=[{"type": "send_message", "params": {"body": "Thanks for waiting"}}],
    )
    conv_id = add_conversation(ws)
    first = send_message(ws, conv_id, "Hello")
    report_status(uuid.UUID(first["id"]), "delivered")
    wait_settled(ws)
    for _ in range(4):  # every status the provider reports of the rule's own message
        for message in automation_messages(conv_id):
            if message.status not in ("delivered", "failed"):
                report_status(message.id, "delivered")
        time.sleep(0.2)
        wait_settled(ws)
    sent = automation_messages(conv_id)
    assert len(sent) == 1, [m.body for m in sent]
    own = [r for r in runs(ws) if str(r.rule_id) == rule["id"] and r.status == "skipped"]
    assert own and all(r.error.startswith("loop") for r in own)


def test_a_malformed_placeholder_is_refused_at_once_not_after_minutes(workspace):
    """A placeholder of many argument-less filters padded with spaces, malformed at its
    end, made the placeholder pattern backtrack exponentially: the request hung."""
    body = "Hi {{contact.name" + " | downcase  " * 11 + "!}}"
    started = time.monotonic()
    resp = workspace.call(
        "POST",
        "/api/automation/rules",
        json={
            "name": "greeting",
            "trigger_event_types": ["message.created"],
            "actions": [{"type": "send_message", "params": {"body": body}}],
        },
    )
    elapsed = time.monotonic() - started
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "actions[0].params.body"
    assert elapsed < 2.0, f"took {elapsed:.1f} s"


def test_a_dry_run_payload_with_null_tags_is_no_500(ws):
    """``"tags": null`` passed the shape check (null: not sent) and then failed the
    change reading (a 500); it reads as no tags."""
    rule = create_rule(
        ws,
        trigger_event_types=["conversation.tags_updated"],
        conditions={"match": "all", "conditions": []},
    )
    resp = ws.call(
        "POST",
        f"/api/automation/rules/{rule['id']}/dry-run",
        json={
            "payload": {"id": add_conversation(ws), "tags": None},
            "event_type": "conversation.tags_updated",
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json["changes"] == {}


def test_a_rule_cannot_send_another_agents_personal_quick_reply(workspace):
    """Another agent's personal quick reply is invisible to the admin; a rule
    naming it sent its text to a contact, where the admin could read it."""
    _, token = workspace.create_agent("agent")
    reply = workspace.call(
        "POST",
        "/api/quick-replies",
        token=token,
        json={"shortcut": "mine", "title": "Mine", "content": "my private text"},
    )
    assert reply.status_code == 201, reply.text
    listed = workspace.call("GET", "/api/quick-replies")
    assert reply.json["id"] not in [r["id"] for r in listed.json["items"]]
    resp = workspace.call(
        "POST",
        "/api/automation/rules",
        json={
            "name": "leak",
            "trigger_event_types": ["message.created"],
            "actions": [
                {"type": "send_quick_reply", "params": {"quick_reply_id": reply.json["id"]}}
            ],
        },
    )
    assert resp.status_code == 422, resp.text
    [detail] = resp.json["error"]["details"]
    assert detail["field"] == "actions[0].params.quick_reply_id"

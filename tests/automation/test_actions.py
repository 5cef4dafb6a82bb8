"""Each action applied through the inbox services by the real worker, and time facts from
the working hours table."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.models import AutomationRun, Message, WebhookDelivery, WorkingHours
from tests.automation.conftest import (
    RULES,
    add_conversation,
    add_division,
    conversation,
    create_rule,
    runs,
    send_message,
    tid,
    wait_settled,
)
from tests.waiting import wait_until
from tests.webhooks.conftest import path, receiver  # noqa: F401  (fixtures)
from tests.webhooks.test_api import create as create_webhook
from tests.webhooks.test_event_samples import _assert_samples_match, _real

#: Also run on RabbitMQ by `make test`'s second pass (BROKER_URL=amqp://...).
pytestmark = pytest.mark.broker


def results_of(run: AutomationRun) -> list[tuple[str, str]]:
    return [(a["type"], a["result"]) for a in run.action_results]


def test_routing_status_and_handover_actions_change_the_conversation(ws):
    division = add_division(ws, "Billing")
    create_rule(
        ws,
        actions=[
            {"type": "assign_division", "params": {"division_id": division}},
            {"type": "handover_to_ai", "params": {}},
            {"type": "handover_to_human", "params": {"division_id": division}},
            {"type": "set_status", "params": {"status": "pending"}},
            {"type": "snooze", "params": {"minutes": 30}},
            {"type": "remove_tags", "params": {"tags": ["new"]}},
        ],
    )
    conv_id = add_conversation(ws, tags=["new", "keep"])
    send_message(ws, conv_id, "refund")
    wait_settled(ws, at_least_rows=1)
    after = conversation(conv_id)
    assert str(after.division_id) == division and after.ai_active is False
    assert after.status == "snoozed" and after.snoozed_until is not None
    assert after.tags == ["keep"]
    [run] = [r for r in runs(ws) if r.status != "skipped"]
    assert run.status == "matched", run.action_results
    assert [result for _, result in results_of(run)] == ["applied"] * 6
    # The hand-off says why, in the shape an AI agent's hand-off has (one sample for both).
    handed_off = _real(ws.tenant["id"], "conversation.handed_off")
    assert (handed_off["reason"], handed_off["message_id"]) == ("automation_rule", None)
    _assert_samples_match(ws, ws.tenant["id"], ("conversation.handed_off",))


def test_quick_reply_and_webhook_actions_send_through_their_engines(ws, receiver, path):  # noqa: F811
    reply = ws.call(
        "POST",
        "/api/quick-replies",
        json={
            "shortcut": "refund",
            "title": "Refund",
            "content": "Hi {{contact.name}}, refunds take 5 days",
            "scope": "shared",
        },
    )
    assert reply.status_code == 201, reply.text
    hook = create_webhook(ws, receiver.url(path), event_types=["contact.created"])
    rule = create_rule(
        ws,
        actions=[
            {"type": "send_quick_reply", "params": {"quick_reply_id": reply.json["id"]}},
            {"type": "send_webhook", "params": {"endpoint_id": hook["id"]}},
        ],
    )
    conv_id = add_conversation(ws)
    sent = send_message(ws, conv_id, "refund?")
    wait_settled(ws, at_least_rows=2)
    with session_scope() as session:
        bodies = session.scalars(
            select(Message.body).where(
                Message.conversation_id == uuid.UUID(conv_id), Message.sender_type == "automation"
            )
        ).all()
        [delivery] = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.endpoint_id == uuid.UUID(hook["id"]))
        ).all()
    assert bodies == ["Hi Carla Customer, refunds take 5 days"]
    assert delivery.event_type == "message.created"
    [got] = wait_until(lambda: receiver.at(path), "the webhook delivered")
    assert got.json["type"] == "message.created" and got.json["data"]["id"] == sent["id"]
    assert got.json["actor"]["type"] == "user"
    matched = [r for r in runs(ws) if r.status == "matched"]
    assert [str(r.rule_id) for r in matched] == [rule["id"]]


def test_time_facts_follow_the_tenants_working_hours_and_a_divisions_override(ws):
    closed = {"days": [], "holidays": []}
    always = {
        "days": [
            {"weekday": d, "intervals": [{"start": "00:00", "end": "24:00"}]} for d in range(7)
        ],
        "holidays": [],
    }
    division = add_division(ws, "Night shift")
    with session_scope() as session:
        session.add(WorkingHours(tenant_id=tid(ws), schedule=closed))
        session.add(
            WorkingHours(tenant_id=tid(ws), division_id=uuid.UUID(division), schedule=always)
        )
    rule = create_rule(ws)
    plain = add_conversation(ws)
    night = add_conversation(ws, division_id=uuid.UUID(division))

    def inside(conv_id: str) -> bool:
        resp = ws.call(
            "POST",
            f"{RULES}/{rule['id']}/dry-run",
            json={"payload": {"conversation_id": conv_id, "body": "x"}},
        )
        assert resp.status_code == 200, resp.text
        facts = resp.json["facts"]
        assert facts["time.weekday"] in (
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        )
        return facts["time.inside_working_hours"]

    assert inside(plain) is False
    assert inside(night) is True

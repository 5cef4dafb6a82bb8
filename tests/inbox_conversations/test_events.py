"""Conversation events travel the outbox and reach dispatch_event (status processed)."""

from __future__ import annotations

from tests.inbox_conversations.conftest import add_conversation, events
from tests.waiting import wait_until

LIST = "/api/conversations"


def test_conversation_events_are_dispatched(worker, workspace):
    ws = workspace
    agent, _ = ws.create_agent()
    conversation = add_conversation(ws, ai_active=True, inbound_count=1)
    calls = [
        ("POST", f"{LIST}/{conversation}/takeover", None),
        ("POST", f"{LIST}/{conversation}/read", None),
        ("PATCH", f"{LIST}/{conversation}/tags", {"add": ["vip"]}),
        ("PATCH", f"{LIST}/{conversation}/status", {"status": "resolved"}),
        ("PATCH", f"{LIST}/{conversation}/status", {"status": "open"}),
        ("POST", f"{LIST}/{conversation}/transfer", {"to_agent_id": agent["id"]}),
        ("PATCH", f"{LIST}/{conversation}/assignment", {"assignee_id": None}),
    ]
    for method, path, body in calls:
        resp = ws.call(method, path, json=body)
        assert resp.status_code == 200, (path, resp.text)
    expected = {
        "conversation.taken_over",
        "conversation.assigned",
        "conversation.read",
        "conversation.tags_updated",
        "conversation.status_changed",
        "conversation.transferred",
        "conversation.unassigned",
    }

    def all_processed():
        mine = [e for e in events(ws) if e.type.startswith("conversation.")]
        done = {e.type for e in mine if e.status == "processed"}
        return mine if expected <= done and all(e.status == "processed" for e in mine) else None

    dispatched = wait_until(all_processed)
    assert len(dispatched) == 9  # two assigned (takeover, transfer), two status changes
    for event in dispatched:
        assert event.data["id"] == conversation and event.dispatch_attempts == 1
        assert event.actor_type == "user" and str(event.actor_id) == ws.admin["id"]

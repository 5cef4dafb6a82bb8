"""A priority-only change reaches the open streams of whoever sees the conversation, and
nobody else: the catalogue has no event for it, so it is the stream-only
``conversation.priority_changed``."""

from __future__ import annotations

from tests.realtime.conftest import (
    about,
    in_division,
    inbound,
    new_division,
    of_type,
    ready_event,
    ready_streams,
)

PRIORITY_CHANGED = "conversation.priority_changed"


def _set_priority(ws, conversation: str, priority: str) -> None:
    body = {"ids": [conversation], "action": "set_priority", "priority": priority}
    resp = ws.call("POST", "/api/conversations/bulk", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json["counts"]["updated"] == 1, resp.json


def test_a_priority_change_reaches_who_sees_the_conversation_only(stream_url, ws, other, streams):
    seller, seller_token = ws.create_agent("agent")
    outsider, outsider_token = ws.create_agent("agent")
    sales = new_division(ws, "Sales", seller["id"])
    new_division(ws, "Support", outsider["id"])
    conversation = in_division(ws, "cust-priority", sales)
    admin, seller_stream, outsider_stream, foreign = ready_streams(
        streams, stream_url, ws.token, seller_token, outsider_token, other.token
    )

    _set_priority(ws, conversation, "urgent")

    # The manager and the division's agent see the new priority, with the old one.
    for stream in (admin, seller_stream):
        event = stream.until(of_type(PRIORITY_CHANGED, id=conversation))
        body = event.json
        assert event.id and body["tenant_id"] == ws.tenant["id"]
        assert body["data"]["priority"] == "urgent"
        assert body["data"]["from_priority"] == "normal"
        assert body["data"]["division_id"] == sales
        assert body["actor"]["id"] == ws.admin["id"]
    # An agent who cannot see it and another tenant hear nothing of it.
    assert not [e for e in outsider_stream.drain(0.5) if about(conversation)(e)]
    assert not [e for e in foreign.drain(0.1) if e.event != "ready"]
    # Unchanged priority: no event.
    resp = ws.call(
        "POST",
        "/api/conversations/bulk",
        json={"ids": [conversation], "action": "set_priority", "priority": "urgent"},
    )
    assert resp.status_code == 200 and resp.json["counts"]["unchanged"] == 1, resp.text
    assert not [e for e in admin.drain(0.5) if of_type(PRIORITY_CHANGED)(e)]


def test_a_priority_change_of_an_assigned_conversation_reaches_its_assignee(
    stream_url, ws, streams
):
    assignee, assignee_token = ws.create_agent("agent")
    _, bystander_token = ws.create_agent("agent")
    conversation = inbound(ws, "cust-priority-own", "first")["conversation_id"]
    assign = f"/api/conversations/{conversation}/assignment"
    assert ws.call("PATCH", assign, json={"assignee_id": assignee["id"]}).status_code == 200
    mine = streams(stream_url, assignee_token)
    theirs = streams(stream_url, bystander_token)
    ready_event(mine)
    ready_event(theirs)

    _set_priority(ws, conversation, "low")

    event = mine.until(of_type(PRIORITY_CHANGED, id=conversation, priority="low"))
    assert event.json["data"]["assignee_id"] == assignee["id"]
    # Assigned to someone else: not the bystander's, though they are in no division.
    assert not [e for e in theirs.drain(0.5) if about(conversation)(e)]

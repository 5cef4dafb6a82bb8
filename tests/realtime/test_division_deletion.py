"""Deleting a division tells the open streams what happened to its conversations: each
one's ``conversation.division_changed`` (a ``conversation.removed`` for an agent who saw it
only through that division), as a bulk division change does; a division holding more than
``ANNOUNCED_ONE_BY_ONE`` of them gives one ``conversations.division_released`` instead."""

from __future__ import annotations

from shared.inbox import divisions
from tests.realtime.conftest import (
    about,
    in_division,
    new_division,
    of_type,
    ready_event,
    ready_streams,
)

REMOVED = "conversation.removed"
DIVISION_CHANGED = "conversation.division_changed"
RELEASED = "conversations.division_released"


def _delete(ws, division: str) -> None:
    resp = ws.call("DELETE", f"/api/divisions/{division}")
    assert resp.status_code == 204, resp.text


def test_deleting_a_division_moves_its_conversations_in_the_streams(stream_url, ws, other, streams):
    seller, seller_token = ws.create_agent("agent")
    outsider, outsider_token = ws.create_agent("agent")
    owner, owner_token = ws.create_agent("agent")
    _, floater_token = ws.create_agent("agent")
    sales = new_division(ws, "Sales", seller["id"])
    new_division(ws, "Support", seller["id"], outsider["id"], owner["id"])
    queued = in_division(ws, "cust-del-queued", sales)
    owned = in_division(ws, "cust-del-owned", sales)
    assign = f"/api/conversations/{owned}/assignment"
    assert ws.call("PATCH", assign, json={"assignee_id": owner["id"]}).status_code == 200
    admin, seller_stream, outsider_stream, owner_stream, floater, foreign = ready_streams(
        streams,
        stream_url,
        ws.token,
        seller_token,
        outsider_token,
        owner_token,
        floater_token,
        other.token,
    )

    _delete(ws, sales)

    # A manager sees both leave the division, as a bulk division change would say it.
    changed = {}
    while len(changed) < 2:
        event = admin.until(of_type(DIVISION_CHANGED))
        changed[event.json["data"]["id"]] = event
    assert set(changed) == {queued, owned}
    for event in changed.values():
        assert event.json["tenant_id"] == ws.tenant["id"]
        assert event.json["data"]["division_id"] is None
        assert event.json["data"]["from_division_id"] == sales
        assert event.json["actor"]["id"] == ws.admin["id"]
    # The division's agent saw the queued one only through it: told to drop it.
    gone = seller_stream.until(lambda e: e.event == REMOVED)
    assert gone.json["data"]["id"] == queued and gone.json["type"] == DIVISION_CHANGED
    # The assignee keeps theirs, now without a division.
    kept = owner_stream.until(of_type(DIVISION_CHANGED, id=owned))
    assert kept.json["data"]["division_id"] is None
    # An agent in no division sees every unassigned conversation: the queued one comes in.
    came = floater.until(of_type(DIVISION_CHANGED, id=queued))
    assert came.json["data"]["division_id"] is None
    # Nobody hears of a conversation they never saw; another tenant hears nothing.
    assert not [e for e in seller_stream.drain(0.5) if about(owned)(e)]
    assert not [e for e in owner_stream.drain(0.1) if about(queued)(e)]
    assert not [e for e in floater.drain(0.1) if about(owned)(e)]
    assert not [e for e in outsider_stream.drain(0.1) if about(queued, owned)(e)]
    assert not [e for e in foreign.drain(0.1) if e.event != "ready"]
    for conversation in (queued, owned):
        assert ws.call("GET", f"/api/conversations/{conversation}").json["division_id"] is None


def test_a_large_divisions_deletion_is_one_stream_event(
    stream_url, ws, other, streams, monkeypatch
):
    monkeypatch.setattr(divisions, "ANNOUNCED_ONE_BY_ONE", 1)
    seller, seller_token = ws.create_agent("agent")
    sales = new_division(ws, "Sales", seller["id"])
    new_division(ws, "Support", seller["id"])
    conversations = [in_division(ws, f"cust-del-large-{i}", sales) for i in range(2)]
    admin = streams(stream_url, ws.token)
    seller_stream = streams(stream_url, seller_token)
    foreign = streams(stream_url, other.token)
    for stream in (admin, seller_stream, foreign):
        ready_event(stream)

    _delete(ws, sales)

    for stream in (admin, seller_stream):
        event = stream.until(of_type(RELEASED))
        body = event.json
        assert event.id and body["tenant_id"] == ws.tenant["id"]
        assert body["data"] == {"from_division_id": sales, "division_id": None}
        # One entry for the division, none per conversation.
        assert not [e for e in stream.drain(0.5) if about(*conversations)(e)]
    assert not [e for e in foreign.drain(0.1) if e.event != "ready"]
    for conversation in conversations:
        assert ws.call("GET", f"/api/conversations/{conversation}").json["division_id"] is None

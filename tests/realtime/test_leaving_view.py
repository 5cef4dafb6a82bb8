"""A conversation that leaves an agent's view is dropped from their stream; one that
enters it is announced, whatever moved it (a transfer, a bulk division change, an
assignment)."""

from __future__ import annotations

from tests.realtime.conftest import inbound, new_division, of_type, ready_event

REMOVED = "conversation.removed"


def _transfer(ws, conversation: str, division: str) -> None:
    resp = ws.call(
        "POST", f"/api/conversations/{conversation}/transfer", json={"to_division_id": division}
    )
    assert resp.status_code == 200, resp.text


def _set_division(ws, conversation: str, division: str) -> None:
    body = {"ids": [conversation], "action": "set_division", "division_id": division}
    resp = ws.call("POST", "/api/conversations/bulk", json=body)
    assert resp.status_code == 200, resp.text


def _removed(conversation: str):
    def match(event) -> bool:
        return event.event == REMOVED and event.json["data"]["id"] == conversation

    return match


def _two_divisions(ws, stream_url, streams, customer: str):
    """A conversation in Sales, a Sales agent's and a Support agent's open streams."""
    seller, seller_token = ws.create_agent("agent")
    helper, helper_token = ws.create_agent("agent")
    sales = new_division(ws, "Sales", seller["id"])
    support = new_division(ws, "Support", helper["id"])
    conversation = inbound(ws, customer, "first")["conversation_id"]
    _transfer(ws, conversation, sales)
    seller_stream = streams(stream_url, seller_token)
    helper_stream = streams(stream_url, helper_token)
    ready_event(seller_stream)
    ready_event(helper_stream)
    return conversation, support, seller_stream, helper_stream


def _moved_between_divisions(ws, stream_url, streams, customer: str, move) -> None:
    conversation, support, seller, helper = _two_divisions(ws, stream_url, streams, customer)
    move(ws, conversation, support)
    # The old division's agent is told to drop it; the new division's is given it.
    gone = seller.until(_removed(conversation))
    assert gone.id and gone.json["tenant_id"] == ws.tenant["id"]
    added = helper.until(lambda e: e.event == "message" and _about(e) == conversation)
    assert added.json["data"]["division_id"] == support
    # Later events of it reach the new division only.
    inbound(ws, customer, "after the move")
    helper.until(of_type("message.created", conversation_id=conversation, body="after the move"))
    assert not [e for e in seller.drain(0.5) if _about(e) == conversation]


def _about(event) -> str | None:
    """The conversation an event is about, if it is a catalogue event."""
    if event.event not in ("message", REMOVED):
        return None
    data = event.json["data"]
    return data.get("conversation_id") or data.get("id")


def test_a_transfer_to_another_division_moves_it_between_streams(stream_url, ws, streams):
    _moved_between_divisions(ws, stream_url, streams, "cust-transfer-div", _transfer)


def test_a_bulk_division_change_moves_it_between_streams(stream_url, ws, streams):
    _moved_between_divisions(ws, stream_url, streams, "cust-bulk-div", _set_division)


def test_an_agent_it_is_taken_from_is_told_to_drop_it(stream_url, ws, streams):
    agent, token = ws.create_agent("agent")
    new_division(ws, "Own", agent["id"])
    conversation = inbound(ws, "cust-taken", "first")["conversation_id"]
    assign = f"/api/conversations/{conversation}/assignment"
    assert ws.call("PATCH", assign, json={"assignee_id": agent["id"]}).status_code == 200
    stream = streams(stream_url, token)
    ready_event(stream)
    assert ws.call("PATCH", assign, json={"assignee_id": ws.admin["id"]}).status_code == 200
    gone = stream.until(_removed(conversation))
    assert gone.json["type"] == "conversation.assigned"
    # Still visible after the event (back to their own queue): an ordinary event, no removal.
    assert ws.call("PATCH", assign, json={"assignee_id": agent["id"]}).status_code == 200
    back = stream.until(of_type("conversation.assigned", id=conversation))
    assert back.json["data"]["assignee_id"] == agent["id"]

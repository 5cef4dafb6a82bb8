"""Takeovers and transfers through HTTP, and the history they leave."""

from __future__ import annotations

import uuid

from tests.inbox_conversations.conftest import add_conversation, add_division, events, row

LIST = "/api/conversations"


def test_takeover_from_an_ai_agent_by_any_agent(workspace, other_workspace):
    ws = workspace
    agent, token = ws.create_agent()
    conversation = add_conversation(ws, ai_active=True)
    resp = ws.call("POST", f"{LIST}/{conversation}/takeover", token=token)
    assert resp.status_code == 200, resp.text
    assert resp.json["assignee_id"] == agent["id"] and resp.json["ai_active"] is False
    [taken] = events(ws, "conversation.taken_over")
    assert taken.data["from_ai"] is True and taken.data["previous_assignee_id"] is None
    [assigned] = events(ws, "conversation.assigned")
    assert assigned.data["assignee_id"] == agent["id"]
    # Now theirs, not the AI's: a second takeover has nobody to take from.
    again = ws.call("POST", f"{LIST}/{conversation}/takeover", token=token)
    assert again.status_code == 409
    history = ws.call("GET", f"{LIST}/{conversation}/transfers").json["items"]
    assert [(h["kind"], h["from_ai"], h["to_agent_id"]) for h in history] == [
        ("takeover", True, agent["id"])
    ]
    foreign = add_conversation(other_workspace, ai_active=True)
    assert ws.call("POST", f"{LIST}/{foreign}/takeover").status_code == 404


def test_takeover_from_another_agent_needs_conversations_manage(workspace):
    ws = workspace
    agent, token = ws.create_agent()
    supervisor, supervisor_token = ws.create_agent(role="supervisor")
    conversation = add_conversation(ws, assignee_id=agent["id"])
    # A plain agent cannot even see another agent's conversation: 404, like any hidden one.
    _, peer_token = ws.create_agent()
    assert ws.call("POST", f"{LIST}/{conversation}/takeover", token=peer_token).status_code == 404
    # The owner has nothing to take over; an unassigned non-AI one is claimed, not taken.
    assert ws.call("POST", f"{LIST}/{conversation}/takeover", token=token).status_code == 409
    unassigned = add_conversation(ws)
    assert ws.call("POST", f"{LIST}/{unassigned}/takeover", token=token).status_code == 409
    # With conversations.manage a supervisor takes it from its human assignee.
    taken = ws.call("POST", f"{LIST}/{conversation}/takeover", token=supervisor_token)
    assert taken.status_code == 200
    assert taken.json["assignee_id"] == supervisor["id"]
    [event] = events(ws, "conversation.taken_over")
    assert event.data["previous_assignee_id"] == agent["id"] and event.data["from_ai"] is False


def test_transfer_to_an_agent_and_a_division(workspace, other_workspace):
    ws = workspace
    agent, token = ws.create_agent()
    peer, peer_token = ws.create_agent()
    support = add_division(ws, "Support", agent["id"], peer["id"])
    conversation = add_conversation(ws, assignee_id=agent["id"])
    path = f"{LIST}/{conversation}/transfer"

    to_peer = ws.call("POST", path, token=token, json={"to_agent_id": peer["id"], "note": "VIP"})
    assert to_peer.status_code == 200, to_peer.text
    assert to_peer.json["assignee_id"] == peer["id"]
    [moved] = events(ws, "conversation.transferred")
    assert moved.data["from_agent_id"] == agent["id"] and moved.data["to_agent_id"] == peer["id"]
    assert moved.data["note"] == "VIP" and moved.data["to_division_id"] is None
    [assigned] = events(ws, "conversation.assigned")
    assert assigned.data["previous_assignee_id"] == agent["id"]
    # The previous assignee no longer owns it: they cannot see it any more.
    assert ws.call("POST", path, token=token, json={"to_agent_id": agent["id"]}).status_code == 404

    to_queue = ws.call("POST", path, token=peer_token, json={"to_division_id": support})
    assert to_queue.status_code == 200
    assert to_queue.json["assignee_id"] is None and to_queue.json["division_id"] == support
    [unassigned] = events(ws, "conversation.unassigned")
    assert unassigned.data["previous_assignee_id"] == peer["id"]
    # Unassigned in their division: visible to the agent, but not theirs to transfer.
    denied = ws.call("POST", path, token=token, json={"to_agent_id": agent["id"]})
    assert denied.status_code == 403
    # A supervisor may transfer anything; the same place again is a conflict.
    assert ws.call("POST", path, json={"to_agent_id": agent["id"]}).status_code == 200
    assert ws.call("POST", path, json={"to_agent_id": agent["id"]}).status_code == 409

    history = ws.call("GET", f"{LIST}/{conversation}/transfers").json
    assert [(h["kind"], h["to_agent_id"], h["to_division_id"]) for h in history["items"]] == [
        ("transfer", peer["id"], None),
        ("transfer", None, support),
        ("transfer", agent["id"], None),
    ]
    assert history["items"][0]["note"] == "VIP" and history["next_cursor"] is None
    first = ws.call("GET", f"{LIST}/{conversation}/transfers", params={"limit": 2}).json
    rest = ws.call(
        "GET", f"{LIST}/{conversation}/transfers", params={"cursor": first["next_cursor"]}
    ).json
    assert [h["id"] for h in first["items"] + rest["items"]] == [h["id"] for h in history["items"]]


def test_transfer_bad_targets_and_other_tenants(workspace, other_workspace):
    ws = workspace
    conversation = add_conversation(ws, assignee_id=ws.admin["id"])
    path = f"{LIST}/{conversation}/transfer"
    theirs = other_workspace.admin["id"]
    their_division = add_division(other_workspace, "Theirs")
    for body, field in (
        ({"to_agent_id": theirs}, "to_agent_id"),
        ({"to_agent_id": str(uuid.uuid4())}, "to_agent_id"),
        ({"to_division_id": their_division}, "to_division_id"),
        ({}, "to_agent_id"),
        ({"note": "x"}, "to_agent_id"),
        ({"to_agent_id": "bob"}, "to_agent_id"),
        ({"to_agent_id": ws.admin["id"], "note": "n" * 2001}, "note"),
    ):
        resp = ws.call("POST", path, json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["error"]["details"][0]["field"] == field
        assert "Theirs" not in resp.text and "Grace" not in resp.text
    assert row(conversation).assignee_id == uuid.UUID(ws.admin["id"])
    assert ws.call("GET", f"{LIST}/{conversation}/transfers").json["items"] == []
    foreign = add_conversation(other_workspace, assignee_id=theirs)
    body = {"to_agent_id": ws.admin["id"]}
    assert ws.call("POST", f"{LIST}/{foreign}/transfer", json=body).status_code == 404
    assert ws.call("GET", f"{LIST}/{foreign}/transfers").status_code == 404
    assert (
        ws.call("GET", f"{LIST}/{conversation}/transfers", params={"limit": 0}).status_code == 400
    )


def test_a_transfer_is_refused_before_its_target_is_looked_at(workspace, other_workspace):
    """A caller without the right to transfer got 422 for a target that is no agent of the
    workspace and 403 for one that is: an oracle for agent ids. The right comes first (403
    whatever the target), and a conversation the caller cannot see is a 404 whatever it."""
    ws = workspace
    agent, token = ws.create_agent()
    peer, _ = ws.create_agent()
    support = add_division(ws, "Support", agent["id"])
    conversation = add_conversation(ws, division_id=support)
    hidden = add_conversation(ws, assignee_id=peer["id"])
    foreign = add_conversation(other_workspace)
    for target in (peer["id"], other_workspace.admin["id"], str(uuid.uuid4())):
        body = {"to_agent_id": target}
        denied = ws.call("POST", f"{LIST}/{conversation}/transfer", token=token, json=body)
        assert denied.status_code == 403, (target, denied.text)
        unseen = ws.call("POST", f"{LIST}/{hidden}/transfer", token=token, json=body)
        assert unseen.status_code == 404, (target, unseen.text)
        elsewhere = ws.call("POST", f"{LIST}/{foreign}/transfer", json=body)
        assert elsewhere.status_code == 404, (target, elsewhere.text)
    assert row(conversation).assignee_id is None

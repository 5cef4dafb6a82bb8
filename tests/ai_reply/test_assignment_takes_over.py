"""Assigning a conversation to a person hands it over from its AI agent, as a takeover does.

A human assignee and an AI agent must never both answer the customer: an assignment,
bulk assignment, transfer to an agent or an automation rule's assignment to a person
pauses the AI (``ai_active`` false) and records it as the takeover endpoint does
(``conversation.taken_over`` with ``from_ai``, a takeover in the transfer history).
Unassigning hands nothing back: that stays explicit (``handover_to_ai``).
"""

from __future__ import annotations

from tests.automation.conftest import create_rule
from tests.waiting import wait_until

CONVERSATIONS = "/api/conversations"


def _answered_by_ai(world) -> object:
    """A conversation the AI agent owns and has answered once."""
    world.agent()
    world.write("How long does shipping take?")
    world.drain()
    conversation = world.conversation()
    [reply] = world.final_replies(conversation.id)
    assert reply.status == "sent" and world.fresh(conversation.id).ai_active is True
    return conversation


def _taken_over_from_ai(world, conversation, agent_id: str) -> None:
    """The AI is paused and the hand-over recorded as the takeover endpoint records it."""
    assert world.fresh(conversation.id).ai_active is False
    [taken] = [
        e for e in world.events("conversation.taken_over") if e.data["id"] == str(conversation.id)
    ]
    assert taken.data["from_ai"] is True and taken.data["assignee_id"] == agent_id
    history = world.ws.call("GET", f"{CONVERSATIONS}/{conversation.id}/transfers").json["items"]
    assert [(h["from_ai"], h["to_agent_id"]) for h in history] == [(True, agent_id)]


def _customer_writes_again_unanswered(world, conversation) -> None:
    world.write("And can I return it?")
    world.drain()
    assert len(world.replies(conversation.id)) == 1
    assert len(world.outbound(conversation.id)) == 1


def test_assigning_to_a_person_pauses_the_ai_and_unassigning_does_not_resume_it(world):
    conversation = _answered_by_ai(world)
    agent, _ = world.ws.create_agent()
    path = f"{CONVERSATIONS}/{conversation.id}/assignment"

    resp = world.ws.call("PATCH", path, json={"assignee_id": agent["id"]})
    assert resp.status_code == 200, resp.text
    assert resp.json["assignee_id"] == agent["id"] and resp.json["ai_active"] is False
    _taken_over_from_ai(world, conversation, agent["id"])
    [assigned] = world.events("conversation.assigned")
    assert assigned.data["assignee_id"] == agent["id"]
    _customer_writes_again_unanswered(world, conversation)

    unassigned = world.ws.call("PATCH", path, json={"assignee_id": None})
    assert unassigned.status_code == 200, unassigned.text
    assert unassigned.json["ai_active"] is False
    _customer_writes_again_unanswered(world, conversation)


def test_claiming_an_ai_conversation_for_oneself_pauses_the_ai(world):
    conversation = _answered_by_ai(world)
    agent, token = world.ws.create_agent()
    path = f"{CONVERSATIONS}/{conversation.id}/assignment"
    resp = world.ws.call("PATCH", path, token=token, json={"assignee_id": agent["id"]})
    assert resp.status_code == 200, resp.text
    assert resp.json["ai_active"] is False
    _taken_over_from_ai(world, conversation, agent["id"])


def test_a_bulk_assignment_pauses_the_ai(world):
    conversation = _answered_by_ai(world)
    agent, _ = world.ws.create_agent()
    body = {"ids": [str(conversation.id)], "action": "assign", "assignee_id": agent["id"]}
    resp = world.ws.call("POST", f"{CONVERSATIONS}/bulk", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json["counts"]["updated"] == 1
    _taken_over_from_ai(world, conversation, agent["id"])
    _customer_writes_again_unanswered(world, conversation)


def test_a_transfer_to_a_person_pauses_the_ai_and_one_to_a_division_does_not(world):
    conversation = _answered_by_ai(world)
    path = f"{CONVERSATIONS}/{conversation.id}/transfer"
    to_queue = world.ws.call("POST", path, json={"to_division_id": str(world.division())})
    assert to_queue.status_code == 200, to_queue.text
    assert to_queue.json["ai_active"] is True

    agent, _ = world.ws.create_agent()
    resp = world.ws.call("POST", path, json={"to_agent_id": agent["id"]})
    assert resp.status_code == 200, resp.text
    assert resp.json["ai_active"] is False
    assert world.fresh(conversation.id).ai_active is False
    [taken] = world.events("conversation.taken_over")
    assert taken.data["from_ai"] is True and taken.data["assignee_id"] == agent["id"]
    history = world.ws.call("GET", f"{CONVERSATIONS}/{conversation.id}/transfers").json["items"]
    assert [(h["kind"], h["from_ai"], h["to_agent_id"]) for h in history] == [
        ("transfer", True, None),
        ("transfer", True, agent["id"]),
    ]
    assert taken.data["transfer_id"] == history[-1]["id"]
    _customer_writes_again_unanswered(world, conversation)


def test_an_automation_rule_assigning_a_person_pauses_the_ai(world):
    conversation = _answered_by_ai(world)
    agent, _ = world.ws.create_agent()
    create_rule(
        world.ws,
        name="vip to a person",
        trigger_event_types=["conversation.tags_updated"],
        conditions={"match": "all", "conditions": []},
        actions=[{"type": "assign_agent", "params": {"agent_id": agent["id"]}}],
    )
    tags = world.ws.call("PATCH", f"{CONVERSATIONS}/{conversation.id}/tags", json={"add": ["vip"]})
    assert tags.status_code == 200, tags.text
    wait_until(
        lambda: world.fresh(conversation.id).assignee_id is not None, "the rule's assignment"
    )
    _taken_over_from_ai(world, conversation, agent["id"])
    _customer_writes_again_unanswered(world, conversation)

"""Deleting an agent unassigns their unresolved conversations, in the same transaction."""

from __future__ import annotations

import uuid

from shared.models import Conversation
from tests.inbox_messages.conftest import Inbox


def test_deleting_an_agent_puts_their_conversations_back_in_the_queues(workspace, worker):
    inbox = Inbox(workspace.tenant["id"])
    agent, _ = workspace.create_agent()
    teammate, teammate_token = workspace.create_agent()
    division = inbox.division(uuid.UUID(agent["id"]), uuid.UUID(teammate["id"]))
    agent_id = uuid.UUID(agent["id"])
    open_one = inbox.conversation(assignee_id=agent_id, division_id=division)
    pending = inbox.conversation(assignee_id=agent_id, status="pending")
    resolved = inbox.conversation(assignee_id=agent_id, status="resolved")
    someone_elses = inbox.conversation(assignee_id=uuid.UUID(teammate["id"]))

    resp = workspace.call("DELETE", f"/api/agents/{agent['id']}")

    assert resp.status_code == 204, resp.text
    assert inbox.row(Conversation, open_one["id"]).assignee_id is None
    assert inbox.row(Conversation, open_one["id"]).division_id == division
    assert inbox.row(Conversation, pending["id"]).assignee_id is None
    assert inbox.row(Conversation, resolved["id"]).assignee_id == agent_id  # history stays
    assert inbox.row(Conversation, someone_elses["id"]).assignee_id == uuid.UUID(teammate["id"])
    events = inbox.events("conversation.unassigned")
    assert sorted(e.data["id"] for e in events) == sorted([str(open_one["id"]), str(pending["id"])])
    assert {e.data["previous_assignee_id"] for e in events} == {agent["id"]}
    assert {e.actor_type for e in events} == {"user"}
    # Back in the division's queue: the teammate (no conversations.manage) sees it unassigned.
    queue = workspace.call(
        "GET",
        "/api/conversations",
        params={"assignee_id": "none", "division_id": str(division)},
        token=teammate_token,
    )
    assert queue.status_code == 200, queue.text
    assert [item["id"] for item in queue.json["items"]] == [str(open_one["id"])]


def test_another_tenants_agent_is_404_and_keeps_their_conversations(
    workspace, other_workspace, worker
):
    theirs, _ = other_workspace.create_agent()
    other_inbox = Inbox(other_workspace.tenant["id"])
    held = other_inbox.conversation(assignee_id=uuid.UUID(theirs["id"]))

    resp = workspace.call("DELETE", f"/api/agents/{theirs['id']}")

    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "not_found"
    assert other_inbox.row(Conversation, held["id"]).assignee_id == uuid.UUID(theirs["id"])
    assert other_inbox.events("conversation.unassigned") == []


def test_a_refused_deletion_unassigns_nothing(workspace, worker):
    inbox = Inbox(workspace.tenant["id"])
    admin_id = uuid.UUID(workspace.admin["id"])
    held = inbox.conversation(assignee_id=admin_id)

    resp = workspace.call("DELETE", f"/api/agents/{workspace.admin['id']}")

    assert resp.status_code == 409  # the last admin
    assert inbox.row(Conversation, held["id"]).assignee_id == admin_id
    assert inbox.events("conversation.unassigned") == []

"""An AI agent deleted while a reply of its is being settled.

Settling locks the reply and its conversation, then writes the agent's usage of the day,
whose foreign key check takes the agent row FOR KEY SHARE. The deletion releases the
agent's conversations before deleting it: had it locked the agent first, each would wait
for the other (a deadlock, one of them aborted). A batch of replies settled together
(``generation.finish_many``) locks its replies before the usage rows of the day of
limited agents, whose foreign key takes the agent FOR KEY SHARE, for the same reason.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import select

from shared.ai import agents, generation, replies, usage
from shared.db import get_sessionmaker, session_scope
from shared.models.ai import AiAgent, AiReply, AiUsageDaily
from tests.ai_config.conftest import (
    AGENTS,
    agent_row,
    ai_message,
    answered,
    create_agent,
    generating_reply,
    inbound_message,
    tid,
)
from tests.automation.conftest import admin_ctx
from tests.inbox_conversations.conftest import add_conversation, row
from tests.lock_races import blocked_on_a_lock, race


def test_deleting_an_agent_while_its_reply_settles_does_not_deadlock(workspace):
    ws = workspace
    agent_id = create_agent(ws)["id"]
    conversation, reply_id = generating_reply(ws, agent_id)
    settling = get_sessionmaker()()
    # As generation.settle locks: the reply and its conversation, in one statement.
    settling.execute(
        generation.reply_and_conversation().where(AiReply.id == reply_id).with_for_update()
    ).one()
    agent = settling.get(AiAgent, uuid.UUID(agent_id))
    failures: list = []

    def count_the_handoff():
        try:
            usage.record(settling, agent, handoffs=1)  # the day's first row: a new one
        except Exception as exc:  # reported by the test
            failures.append(exc)
            settling.rollback()

    status = race(
        settling,
        lambda: ws.call("DELETE", f"{AGENTS}/{agent_id}").status_code,
        then=count_the_handoff,
    )

    assert failures == []
    assert status == 204
    released = row(conversation)
    assert (released.ai_agent_id, released.ai_active) == (None, False)


def test_deleting_a_limited_agent_while_a_batch_of_its_replies_settles_does_not_deadlock(
    workspace, caplog
):
    ws = workspace
    agent_id = create_agent(ws, daily_reply_limit=10)["id"]
    generating = [generating_reply(ws, agent_id) for _ in range(2)]
    agent = agent_row(agent_id)
    ended = [answered(ws, agent, conversation, reply_id) for conversation, reply_id in generating]
    # Any write referencing the agent (a foreign key check) holds it FOR KEY SHARE for a
    # moment: the deletion, its replies and conversations locked, waits there for the agent.
    referencing = get_sessionmaker()()
    referencing.execute(
        select(AiAgent.id).where(AiAgent.id == agent.id).with_for_update(read=True, key_share=True)
    ).one()
    statuses: list[str] = []
    settling = threading.Thread(target=lambda: statuses.extend(generation.finish_many(ended)))

    def settle_the_batch():
        settling.start()
        deadline = time.monotonic() + 10
        while settling.is_alive() and blocked_on_a_lock() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)

    status = race(
        referencing, lambda: ws.call("DELETE", f"{AGENTS}/{agent_id}").status_code, settle_the_batch
    )
    settling.join(timeout=30)

    assert [r.exc_info[1] for r in caplog.records if r.exc_info] == []
    assert status == 204
    # The deletion went first: the batch found its replies gone and settled nothing.
    assert statuses == ["stale", "stale"]
    with session_scope() as session:
        assert session.scalars(select(AiReply).where(AiReply.tenant_id == tid(ws))).all() == []
        assert (
            session.scalars(select(AiUsageDaily).where(AiUsageDaily.tenant_id == tid(ws))).all()
            == []
        )
    for conversation, _ in generating:
        released = row(conversation)
        assert (released.ai_agent_id, released.ai_active) == (None, False)


def test_deleting_an_agent_while_a_message_of_its_conversation_is_dispatched_does_not_deadlock(
    workspace,
):
    """A message on a conversation the agent owns already is scheduled without locking the
    conversation: the upsert of its reply takes the agent and then the conversation FOR
    KEY SHARE (its foreign keys, in that order). The deletion locks the agent's
    conversations, then the agent: had it locked them FOR UPDATE (which conflicts with
    KEY SHARE), each would wait for the other."""
    ws = workspace
    agent_id = create_agent(ws)["id"]
    conversation = add_conversation(ws, ai_agent_id=uuid.UUID(agent_id), ai_active=True)
    message_id = inbound_message(ws, conversation, "Open today?")
    dispatching = get_sessionmaker()()
    # The upsert's first foreign key check: the agent, FOR KEY SHARE.
    dispatching.execute(
        select(AiAgent.id)
        .where(AiAgent.id == uuid.UUID(agent_id))
        .with_for_update(read=True, key_share=True)
    ).one()
    failures: list = []

    def schedule_the_reply():
        try:
            replies.schedule(
                dispatching, tid(ws), uuid.UUID(conversation), message_id, "Open today?"
            )
        except Exception as exc:  # reported by the test
            failures.append(exc)
            dispatching.rollback()

    status = race(
        dispatching,
        lambda: ws.call("DELETE", f"{AGENTS}/{agent_id}").status_code,
        then=schedule_the_reply,
    )

    assert failures == []
    assert status == 204
    released = row(conversation)
    assert (released.ai_agent_id, released.ai_active) == (None, False)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("products", {"name": "Apple"}),
        ("handoff-rules", {"kind": "model_error"}),
        ("knowledge-sources", {"kind": "text", "title": "Hours", "content": "Open at nine."}),
    ],
)
def test_a_row_added_under_an_agent_being_deleted_is_404(workspace, path, body):
    """The deletion goes first: the new row waiting on the agent answers 404 (the agent is
    gone), not a 409 from its insert's foreign key."""
    agent_id = create_agent(workspace)["id"]
    deleting = get_sessionmaker()()
    agents.delete_agent(deleting, admin_ctx(workspace), uuid.UUID(agent_id))
    deleting.flush()

    resp = race(deleting, lambda: workspace.call("POST", f"{AGENTS}/{agent_id}/{path}", json=body))

    assert resp.status_code == 404, resp.text
    assert resp.json["error"]["code"] == "not_found"


@pytest.mark.parametrize("what", ["evaluation", "import"])
def test_an_evaluation_or_import_under_an_agent_being_deleted_is_404(workspace, what):
    agent_id = create_agent(workspace)["id"]
    message_id = ai_message(workspace, agent_id)
    deleting = get_sessionmaker()()
    agents.delete_agent(deleting, admin_ctx(workspace), uuid.UUID(agent_id))
    deleting.flush()

    def create():
        if what == "evaluation":
            body = {"message_id": message_id, "score": 4}
            return workspace.call("POST", f"{AGENTS}/{agent_id}/evaluations", json=body)
        return workspace.call(
            "POST",
            f"{AGENTS}/{agent_id}/products/import",
            body="name\nApple\n",
            headers={"Content-Type": "text/csv"},
        )

    resp = race(deleting, create)

    assert resp.status_code == 404, resp.text


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/ai-agent-assignments", "ai_agent_id"),
        ("/api/ai-orchestration-rules", "target_ai_agent_id"),
    ],
)
def test_a_rule_naming_an_agent_being_deleted_is_422_on_that_field(workspace, path, field):
    """The deletion goes first: the body's agent is gone, a 422 naming the field as for any
    unknown agent, not a 409 from the insert's foreign key."""
    agent_id = create_agent(workspace)["id"]
    body = {
        "/api/ai-agent-assignments": {"ai_agent_id": agent_id, "channel": "whatsapp"},
        "/api/ai-orchestration-rules": {
            "name": "Sales",
            "match_type": "keyword",
            "keywords": ["price"],
            "target_ai_agent_id": agent_id,
        },
    }[path]
    deleting = get_sessionmaker()()
    agents.delete_agent(deleting, admin_ctx(workspace), uuid.UUID(agent_id))
    deleting.flush()

    resp = race(deleting, lambda: workspace.call("POST", path, json=body))

    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == field


def _rule_body(path: str, agent_id: str) -> dict:
    return {
        "/api/ai-agent-assignments": {"ai_agent_id": agent_id, "channel": "whatsapp"},
        "/api/ai-orchestration-rules": {
            "name": "Sales",
            "match_type": "keyword",
            "keywords": ["price"],
            "target_ai_agent_id": agent_id,
        },
    }[path]


RULES = pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/ai-agent-assignments", "ai_agent_id"),
        ("/api/ai-orchestration-rules", "target_ai_agent_id"),
    ],
)


@RULES
def test_a_rule_switched_to_an_agent_being_deleted_is_422_on_that_field(workspace, path, field):
    """As for a create: the deletion goes first, the replace's agent is gone, a 422 naming
    the field, not a 409 from the update's foreign key."""
    kept, doomed = create_agent(workspace)["id"], create_agent(workspace)["id"]
    created = workspace.call("POST", path, json=_rule_body(path, kept))
    assert created.status_code == 201, created.text
    deleting = get_sessionmaker()()
    agents.delete_agent(deleting, admin_ctx(workspace), uuid.UUID(doomed))
    deleting.flush()

    resp = race(
        deleting,
        lambda: workspace.call(
            "PUT", f"{path}/{created.json['id']}", json=_rule_body(path, doomed)
        ),
    )

    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == field
    assert [item[field] for item in workspace.call("GET", path).json["items"]] == [kept]


@RULES
def test_replacing_a_rule_of_an_agent_being_deleted_does_not_deadlock(workspace, path, field):
    """The deletion holds the agent, then its cascade takes the rule: a replace waits for the
    agent before it locks the rule, and answers 404 once the rule went with its agent."""
    agent_id = create_agent(workspace)["id"]
    created = workspace.call("POST", path, json=_rule_body(path, agent_id))
    assert created.status_code == 201, created.text
    deleting = get_sessionmaker()()
    deleting.execute(
        select(AiAgent.id).where(AiAgent.id == uuid.UUID(agent_id)).with_for_update()
    ).one()
    failures: list = []

    def delete_the_agent():
        try:
            agents.delete_agent(deleting, admin_ctx(workspace), uuid.UUID(agent_id))
            deleting.flush()
        except Exception as exc:  # reported by the test
            failures.append(exc)
            deleting.rollback()

    body = _rule_body(path, agent_id) | ({"channel": "email"} if field == "ai_agent_id" else {})
    resp = race(
        deleting,
        lambda: workspace.call("PUT", f"{path}/{created.json['id']}", json=body),
        then=delete_the_agent,
    )

    assert failures == []
    assert resp.status_code == 404, resp.text
    with session_scope() as session:
        assert session.get(AiAgent, uuid.UUID(agent_id)) is None

"""An AI agent deleted while a reply of its is being settled.

Settling locks the reply and its conversation, then writes the agent's usage of the day,
whose foreign key check takes the agent row FOR KEY SHARE. The deletion releases the
agent's conversations before deleting it: had it locked the agent first, each would wait
for the other (a deadlock, one of them aborted).
"""

from __future__ import annotations

import uuid

from shared.ai import generation, usage
from shared.db import get_sessionmaker
from shared.models.ai import AiAgent, AiReply
from tests.ai_config.conftest import AGENTS, create_agent, generating_reply
from tests.inbox_conversations.conftest import row
from tests.lock_races import race


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

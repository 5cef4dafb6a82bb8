"""An agent deleted while a manager assigns conversations to them: nothing stays assigned.

delete_agent unassigns the agent's unresolved conversations; an assignment committing
while the deletion runs must be refused or be unassigned by it.
"""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import select

from shared.db import session_scope
from shared.models import Conversation
from tests.inbox_conversations.conftest import add_conversation, tid


def _assigned_to(ws, agent_id: str) -> list[str]:
    with session_scope() as session:
        return [
            str(c)
            for c in session.scalars(
                select(Conversation.id).where(
                    Conversation.tenant_id == tid(ws),
                    Conversation.assignee_id == uuid.UUID(agent_id),
                    Conversation.status != "resolved",
                )
            )
        ]


def _race(ws, agent_id: str, free: list) -> list[int]:
    """Delete the agent while assigning ``free`` to them; the deletion's answers."""
    barrier, done, deleted = threading.Barrier(2), threading.Event(), []

    def delete():
        barrier.wait()
        deleted.append(ws.call("DELETE", f"/api/agents/{agent_id}").status_code)
        done.set()

    def assign():
        barrier.wait()
        for conversation in free:
            if done.is_set():
                break
            ws.call(
                "PATCH",
                f"/api/conversations/{conversation}/assignment",
                json={"assignee_id": agent_id},
            )

    threads = [threading.Thread(target=delete), threading.Thread(target=assign)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return deleted


def test_an_assignment_racing_the_agents_deletion_leaves_nothing_assigned_to_it(workspace):
    ws = workspace
    left: list[str] = []
    for _ in range(3):
        agent, _token = ws.create_agent()
        for _ in range(150):  # conversations the deletion has to unassign
            add_conversation(ws, assignee_id=uuid.UUID(agent["id"]))
        free = [add_conversation(ws) for _ in range(150)]
        assert _race(ws, agent["id"], free) == [204]
        left += _assigned_to(ws, agent["id"])
    assert left == [], f"{len(left)} open conversation(s) assigned to a deleted agent"

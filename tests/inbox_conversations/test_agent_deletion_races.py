"""An agent deleted while a manager assigns conversations to them: nothing stays assigned.

delete_agent unassigns the agent's unresolved conversations; an assignment committing
while the deletion runs must be refused or be unassigned by it.
"""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import select

from shared.context import Ctx
from shared.db import get_sessionmaker, session_scope
from shared.identity.agents import delete_agent, get_agent
from shared.models import Conversation
from tests.inbox_conversations.conftest import add_conversation, add_division, row, tid
from tests.lock_races import blocked_on_a_lock, race


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


def _queued_behind(holder, *calls) -> list:
    """Start each call in a thread, in order, each once the previous one waits on a lock;
    then commit ``holder`` (which holds the lock they queue on): the calls' answers."""
    answers: dict[int, int] = {}
    threads = []
    for n, call in enumerate(calls):
        waiting = blocked_on_a_lock()
        thread = threading.Thread(target=lambda n=n, call=call: answers.update({n: call()}))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 10
        while n not in answers and blocked_on_a_lock() <= waiting and time.monotonic() < deadline:
            time.sleep(0.02)
    holder.commit()
    holder.close()
    for thread in threads:
        thread.join(timeout=30)
    return [answers.get(n) for n in range(len(calls))]


def test_a_change_naming_the_agent_being_deleted_waits_for_it_without_a_deadlock(workspace):
    """The deletion locks the agent, then their conversations; a transfer of the agent's
    conversation to them in another division locked the conversation, then the agent:
    each waited for the other, and PostgreSQL aborted the transfer (a 409 "retry" for a
    request that can only fail). Assigning them their own conversation again is checked
    the same way."""
    ws = workspace
    division = add_division(ws, "Billing")
    for change in (
        lambda c, agent: ws.call(
            "PATCH", f"/api/conversations/{c}/assignment", json={"assignee_id": agent}
        ),
        lambda c, agent: ws.call(
            "POST",
            f"/api/conversations/{c}/transfer",
            json={"to_agent_id": agent, "to_division_id": division},
        ),
    ):
        agent, _token = ws.create_agent()
        conversation = add_conversation(ws, assignee_id=uuid.UUID(agent["id"]))
        # Something else holds the agent's row: the deletion queues on it, then the change.
        holder = get_sessionmaker()()
        get_agent(holder, Ctx.system(tid(ws)), uuid.UUID(agent["id"]), for_update=True)
        deleted, changed = _queued_behind(
            holder,
            lambda a=agent["id"]: ws.call("DELETE", f"/api/agents/{a}").status_code,
            lambda c=conversation, a=agent["id"], change=change: change(c, a),
        )
        assert deleted == 204
        assert changed.status_code in (200, 404, 422), changed.text
        assert _assigned_to(ws, agent["id"]) == []


def test_a_takeover_by_an_agent_being_deleted_leaves_nothing_assigned_to_them(workspace):
    """An agent taking a conversation over from its AI while their deletion ran: the
    deletion unassigned what they held, then the takeover committed, and the conversation
    (its AI paused) stayed assigned to an agent who no longer exists; nobody answered it."""
    ws = workspace
    agent, token = ws.create_agent()
    conversation = add_conversation(ws, ai_active=True)
    deleting = get_sessionmaker()()
    delete_agent(deleting, Ctx.system(tid(ws)), uuid.UUID(agent["id"]))
    deleting.flush()
    taken = race(
        deleting,
        lambda: ws.call("POST", f"/api/conversations/{conversation}/takeover", token=token),
    )
    assert taken.status_code == 403, taken.text
    assert _assigned_to(ws, agent["id"]) == []
    assert row(conversation).ai_active is True

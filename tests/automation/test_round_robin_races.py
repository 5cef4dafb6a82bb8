"""Round robin racing the deletion of the agent it picks: nothing stays assigned to them.

delete_agent locks the agent, soft-deletes them and unassigns their unresolved
conversations. A round-robin pick made while that deletion is uncommitted still sees
the agent live; the pick must wait for the deletion (share-locking the agent, as a
manual assignment does) and then take the next eligible agent, or nobody.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from shared.db import get_sessionmaker, session_scope
from shared.events import Actor, emit
from shared.inbox import divisions
from shared.models import AutomationRule, ConversationSla, DeadLetter, SlaPolicy
from tests.automation.conftest import (
    add_conversation,
    add_division,
    admin_ctx,
    conversation,
    create_rule,
    flushed_deletion,
    queue_rows,
    race_locked_deletion,
    runs,
    send_message,
    settled,
    tid,
    wait_settled,
    waiting_on_a_lock,
)
from tests.lock_races import blocked_on_a_lock, race
from tests.waiting import wait_until
from tests.workspaces import Workspace


def _online_agent(ws: Workspace) -> dict:
    agent, _ = ws.create_agent("agent")
    resp = ws.call("PATCH", f"/api/agents/{agent['id']}/status", json={"status": "online"})
    assert resp.status_code == 200, resp.text
    return agent


def _round_robin_while_deleting(ws: Workspace, doomed: dict) -> str:
    """A round-robin rule runs on a new conversation while ``doomed``'s deletion is
    flushed but uncommitted; the deletion commits once the run waits on a lock (or has
    finished). The conversation's id, the queue settled."""
    create_rule(ws, actions=[{"type": "assign_round_robin", "params": {}}])
    conv_id = add_conversation(ws)
    deleting = flushed_deletion(ws, doomed["id"])

    trigger = _message_then_wait(ws, conv_id)
    assert race(deleting, trigger) is True
    wait_settled(ws)
    assert ws.call("GET", f"/api/agents/{doomed['id']}").status_code == 404
    with session_scope() as session:
        dead = select(func.count()).where(DeadLetter.tenant_id == tid(ws))
        assert session.scalar(dead) == 0
    assert [r.attempts for r in queue_rows(ws)] == [1]
    return conv_id


def _message_then_wait(ws, conv_id, waiting=waiting_on_a_lock) -> Callable[[], bool]:
    """``race()``'s call: the customer's message that triggers the rule, then the wait
    until its run has run or is ``waiting`` on a lock."""

    def trigger() -> bool:
        send_message(ws, conv_id, "I want a refund")
        done = lambda: waiting() or (settled(ws) and len(queue_rows(ws)) >= 1)  # noqa: E731
        return wait_until(done, "the run ran or waits", timeout=10.0)

    return trigger


def test_round_robin_racing_the_picked_agents_deletion_takes_the_next_agent(ws):
    busy = _online_agent(ws)
    doomed = _online_agent(ws)  # the least loaded: round robin's first choice
    add_conversation(ws, assignee_id=uuid.UUID(busy["id"]))
    conv_id = _round_robin_while_deleting(ws, doomed)
    assert str(conversation(conv_id).assignee_id) == busy["id"]
    [row] = queue_rows(ws)
    assert row.status == "done"
    [run] = runs(ws)
    assert run.status == "matched"
    assert run.action_results[0]["agent_id"] == busy["id"]


def test_round_robin_racing_the_only_agents_deletion_leaves_it_unassigned(ws):
    doomed = _online_agent(ws)
    conv_id = _round_robin_while_deleting(ws, doomed)
    assert conversation(conv_id).assignee_id is None
    [run] = runs(ws)
    assert run.status == "failed"
    assert "No online agent" in str(run.action_results[0])


@pytest.mark.parametrize("action", ["assign_round_robin", "assign_agent"])
def test_assigning_the_doomed_agents_own_conversation_to_them_does_not_deadlock(ws, action):
    """The deletion has locked the agent (its first step) when the run locks the
    conversation, assigned to that agent, and assigns it to them again (round robin
    picks them; or the rule names them); the deletion then unassigns that conversation.
    Neither waits for the other in a cycle: the run is done at its first attempt and the
    conversation ends unassigned."""
    doomed = _online_agent(ws)
    params = {"agent_id": doomed["id"]} if action == "assign_agent" else {}
    create_rule(ws, actions=[{"type": action, "params": params}])
    conv_id = add_conversation(ws, assignee_id=uuid.UUID(doomed["id"]), status="open")

    trigger = _message_then_wait(ws, conv_id)
    race_locked_deletion(ws, doomed["id"], trigger)
    wait_settled(ws)
    assert [(r.status, r.attempts) for r in queue_rows(ws)] == [("done", 1)]
    assert conversation(conv_id).assignee_id is None


def test_round_robin_racing_the_picked_agents_removal_from_the_division_takes_the_next(ws):
    """The rule's round robin is limited to a division; its least loaded member is being
    taken out of it (removal flushed, uncommitted) while the run picks. The pick waits
    for the removal and takes the division's other member, not the agent removed."""
    busy = _online_agent(ws)
    leaving = _online_agent(ws)  # the least loaded: round robin's first choice
    division_id = add_division(ws, "Sales", busy["id"], leaving["id"])
    add_conversation(ws, assignee_id=uuid.UUID(busy["id"]))
    params = {"division_id": division_id}
    create_rule(ws, actions=[{"type": "assign_round_robin", "params": params}])
    conv_id = add_conversation(ws)
    removing = get_sessionmaker()()
    divisions.remove_agents(
        removing, admin_ctx(ws), uuid.UUID(division_id), [uuid.UUID(leaving["id"])]
    )
    removing.flush()

    trigger = _message_then_wait(ws, conv_id)
    assert race(removing, trigger) is True
    wait_settled(ws)
    assert str(conversation(conv_id).assignee_id) == busy["id"]
    assert [(r.status, r.attempts) for r in queue_rows(ws)] == [("done", 1)]
    [run] = runs(ws)
    assert run.action_results[0]["agent_id"] == busy["id"]


def test_round_robin_racing_its_divisions_deletion_does_not_deadlock(ws):
    """The division's deletion is under way (paused on an SLA policy naming the division,
    which it updates) when a run holding a conversation of the division round-robins in
    it; the deletion then takes the division off its conversations. Neither waits for
    the other in a cycle: the deletion commits and the run is done at its first attempt.
    (The deletion used to drop the members first: the pick waited on their rows while
    holding the conversation the deletion was about to wait for.)"""
    agent = _online_agent(ws)
    division_id = add_division(ws, "Sales", agent["id"])
    _run_in_the_division_racing_its_deletion(ws, division_id, "assign_round_robin")


@pytest.mark.parametrize("action", ["assign_division", "handover_to_human"])
def test_moving_a_conversation_into_its_own_division_racing_its_deletion_does_not_deadlock(
    ws, action
):
    """As above, the run's action naming the division the conversation is already in.
    (The action share-locked that division while holding the conversation: it waited for
    the deletion, which waited for the conversation to release it; one was aborted.)"""
    division_id = add_division(ws, "Sales")
    _run_in_the_division_racing_its_deletion(ws, division_id, action)


def test_a_rule_writing_a_conversation_twice_racing_its_divisions_deletion_does_not_deadlock(
    ws,
):
    """As above, the run's actions writing the conversation twice (tags, then priority),
    the deletion paused on another rule naming the division. (PostgreSQL re-checks every
    foreign key of a row a transaction updates a second time: the second write
    share-locked the division for its key, which the deletion held FOR UPDATE while it
    waited for the conversation to release it; one was aborted.)"""
    division_id = add_division(ws, "Sales")
    actions = [
        {"type": "add_tags", "params": {"tags": ["refund"]}},
        {"type": "set_priority", "params": {"priority": "high"}},
    ]
    conv_id = _run_in_the_division_racing_its_deletion(
        ws, division_id, actions=actions, pause="rule"
    )
    [run] = runs(ws)
    assert run.status == "matched"
    assert conversation(conv_id).priority == "high"


def test_a_rule_starting_an_sla_clock_racing_its_divisions_deletion_does_not_deadlock(ws):
    """As above, the run's action (tags) giving the conversation, which had no clock, one
    under the SLA policy naming its division. (The clock's insert share-locked the policy
    for its foreign key check; the deletion, taking the division off that policy, held it
    FOR UPDATE while it waited for the conversation to release it; one was aborted.)
    The release then sees that clock: without its division the conversation matches no
    policy, so it loses the clock rather than keep one under a policy that no longer
    names it."""
    division_id = add_division(ws, "Sales")
    actions = [{"type": "add_tags", "params": {"tags": ["refund"]}}]
    conv_id = _run_in_the_division_racing_its_deletion(ws, division_id, actions=actions)
    [run] = runs(ws)
    assert run.status == "matched"
    assert conversation(conv_id).tags == ["refund"]
    with session_scope() as session:
        assert session.get(ConversationSla, uuid.UUID(conv_id)) is None


def _run_in_the_division_racing_its_deletion(
    ws,
    division_id: str,
    action: str | None = None,
    *,
    actions: list[dict] | None = None,
    pause: str = "sla_policy",
) -> str:
    """A rule's ``action`` (with the division as its parameter), or its ``actions``, runs
    on a conversation of the division while the division's deletion holds the division,
    paused on an SLA policy naming the division (which it updates), or with ``pause="rule"``
    on an inactive rule naming it (which it updates too); the deletion then releases the
    conversation. Asserts the deletion committed, the run was done at its first attempt
    and the conversation ended without a division; returns the conversation's id."""
    if pause == "rule":
        routing = {"type": "assign_division", "params": {"division_id": division_id}}
        paused_on = create_rule(ws, name="Route to Sales", is_active=False, actions=[routing])
        lock = select(AutomationRule.id).where(AutomationRule.id == uuid.UUID(paused_on["id"]))
    else:
        body = {"name": "Sales SLA", "first_response_minutes": 15, "division_ids": [division_id]}
        policy = ws.call("POST", "/api/sla-policies", json=body)
        assert policy.status_code == 201, policy.text
        lock = select(SlaPolicy.id).where(SlaPolicy.id == uuid.UUID(policy.json["id"]))
    if actions is None:
        actions = [{"type": action, "params": {"division_id": division_id}}]
    create_rule(ws, actions=actions)
    conv_id = add_conversation(ws, division_id=uuid.UUID(division_id))
    pausing = get_sessionmaker()()
    pausing.execute(lock.with_for_update())

    def delete() -> str:
        try:
            with session_scope() as session:
                divisions.delete_division(session, admin_ctx(ws), uuid.UUID(division_id))
            return "deleted"
        except Exception as exc:
            return repr(exc)

    trigger = _message_then_wait(ws, conv_id, lambda: blocked_on_a_lock() >= 2)
    assert race(pausing, delete, then=trigger) == "deleted"
    wait_settled(ws)
    assert [(r.status, r.attempts) for r in queue_rows(ws)] == [("done", 1)]
    assert conversation(conv_id).division_id is None
    return conv_id


def test_taking_over_from_the_ai_for_the_doomed_agent_does_not_deadlock(ws):
    """As above, the conversation assigned to the agent with its AI answering (handed
    back to the AI, its assignee kept) and the customer writing: the rule's assignment
    takes it over from the AI for the agent. (The run share-locked the agent while
    holding the conversation, which their deletion, holding the agent, waited for to
    unassign it: a deadlock, one of them aborted.)"""
    doomed = _online_agent(ws)
    create_rule(ws, actions=[{"type": "assign_agent", "params": {"agent_id": doomed["id"]}}])
    conv_id = add_conversation(
        ws, assignee_id=uuid.UUID(doomed["id"]), status="open", ai_active=True
    )

    def trigger() -> bool:
        data = {"conversation_id": conv_id, "body": "I want a refund", "direction": "inbound"}
        with session_scope() as session:
            emit(session, "message.created", data, tenant_id=tid(ws), actor=Actor("contact"))
        done = lambda: waiting_on_a_lock() or (settled(ws) and len(queue_rows(ws)) >= 1)  # noqa: E731
        return wait_until(done, "the run ran or waits", timeout=10.0)

    race_locked_deletion(ws, doomed["id"], trigger)
    wait_settled(ws)
    assert [(r.status, r.attempts) for r in queue_rows(ws)] == [("done", 1)]
    [run] = runs(ws)
    assert run.action_results[0]["result"] == "applied"
    taken = conversation(conv_id)
    assert (taken.assignee_id, taken.ai_active) == (None, False)


@pytest.mark.parametrize("action", ["assign_agent", "assign_round_robin"])
def test_assigning_a_conversation_away_and_back_to_the_doomed_agent_does_not_deadlock(ws, action):
    """As above, two rules on one event: the first assigns the agent's conversation to
    someone else, the second back to the agent (naming them, or round robin picking them:
    the least loaded). The agent is the conversation's assignee as the run locked it:
    their deletion waits for the run to unassign it, so the second rule must not wait
    for the deletion (it did: a deadlock, one of them aborted)."""
    doomed = _online_agent(ws)
    other = _online_agent(ws)
    for _ in range(2):  # the busier one: round robin picks the doomed agent
        add_conversation(ws, assignee_id=uuid.UUID(other["id"]), status="open")
    away = {"type": "assign_agent", "params": {"agent_id": other["id"]}}
    back = {
        "type": action,
        "params": {"agent_id": doomed["id"]} if action == "assign_agent" else {},
    }
    create_rule(ws, name="Away", priority=1, actions=[away])
    create_rule(ws, name="Back", priority=2, actions=[back])
    conv_id = add_conversation(ws, assignee_id=uuid.UUID(doomed["id"]), status="open")

    trigger = _message_then_wait(ws, conv_id)
    race_locked_deletion(ws, doomed["id"], trigger)
    wait_settled(ws)
    assert [(r.status, r.attempts) for r in queue_rows(ws)] == [("done", 1)]
    assert conversation(conv_id).assignee_id is None

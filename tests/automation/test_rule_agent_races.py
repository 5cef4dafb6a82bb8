"""An automation rule saved naming an agent while that agent is being deleted.

The deletion locks the agent, unassigns their conversations, takes them off the rules
naming them (``forget_referent``) and commits. A rule saved meanwhile, its agent read
unlocked, kept the dead id (no foreign key covers ``actions``): uneditable, failing at
every run. The save share-locks the agents its actions add, as it does divisions: it
waits for the deletion and answers 422, or the deletion waits for it and takes the agent
off it.
"""

from __future__ import annotations

import uuid

from shared.automation import rules
from shared.context import Ctx
from shared.db import get_sessionmaker, session_scope
from shared.identity import agents
from shared.models import AutomationRule
from tests.automation.conftest import (
    RULES,
    admin_ctx,
    create_rule,
    flushed_deletion,
    race_locked_deletion,
    rule_body,
    tid,
)
from tests.lock_races import race

TAG = {"type": "add_tags", "params": {"tags": ["refund"]}}


def _assigning_to(agent: str) -> dict:
    return {"type": "assign_agent", "params": {"agent_id": agent}}


def _rules(ws) -> list[AutomationRule]:
    with session_scope() as session:
        query = session.query(AutomationRule).filter(AutomationRule.tenant_id == tid(ws))
        return list(query.order_by(AutomationRule.created_at))


def _delete_now(ws, agent_id: str) -> str:
    """Delete the agent in a transaction of its own: "deleted", or the error's repr."""
    try:
        with session_scope() as session:
            agents.delete_agent(session, admin_ctx(ws), uuid.UUID(agent_id))
        return "deleted"
    except Exception as exc:  # reported by the test
        return repr(exc)


def _agent(ws) -> str:
    agent, _ = ws.create_agent("agent")
    return agent["id"]


def test_a_rule_created_naming_an_agent_being_deleted_is_refused(workspace):
    ws = workspace
    doomed = _agent(ws)
    body = rule_body(actions=[_assigning_to(doomed)])
    deleting = flushed_deletion(ws, doomed)
    resp = race(deleting, lambda: ws.call("POST", RULES, json=body))
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "actions[0].params.agent_id"
    assert _rules(ws) == []


def test_a_rule_changed_to_name_an_agent_being_deleted_is_refused(workspace):
    ws = workspace
    doomed = _agent(ws)
    rule = create_rule(ws, actions=[TAG])
    change = {"actions": [TAG, _assigning_to(doomed)]}
    deleting = flushed_deletion(ws, doomed)
    resp = race(deleting, lambda: ws.call("PATCH", f"{RULES}/{rule['id']}", json=change))
    assert resp.status_code == 422, resp.text
    [kept] = _rules(ws)
    assert (kept.actions, kept.is_active) == ([TAG], True)


def test_a_rule_naming_the_agent_changed_while_they_are_deleted_does_not_deadlock(workspace):
    """The deletion has locked the agent (its first step) when a change of a rule naming
    them already locks the rule; the deletion then takes the agent off the rules naming
    them. The change takes the agent as named, not locked (their deletion, holding them,
    waits for the rule): the change answers 200, the deletion commits after it and takes
    the agent off the rule."""
    ws = workspace
    doomed = _agent(ws)
    rule = create_rule(ws, actions=[TAG, _assigning_to(doomed)])
    answers: list = []

    def change() -> bool:
        path = f"{RULES}/{rule['id']}"
        answers.append(ws.call("PATCH", path, json={"name": "Renamed"}))
        return True

    race_locked_deletion(ws, doomed, change)
    assert answers[0].status_code == 200, answers[0].text
    [kept] = _rules(ws)
    assert (kept.name, kept.actions, kept.is_active) == ("Renamed", [TAG], False)


def test_an_agent_deleted_while_a_rule_naming_them_is_created_is_taken_off_it(workspace):
    """The creation came first (uncommitted): the deletion waits for it, then forgets the
    agent on it as on any rule naming them (its action goes, the rule switched off)."""
    ws = workspace
    doomed = _agent(ws)
    creating = get_sessionmaker()()
    body = rule_body(actions=[TAG, _assigning_to(doomed)])
    rules.create_rule(creating, Ctx.system(tid(ws)), body)
    creating.flush()

    assert race(creating, lambda: _delete_now(ws, doomed)) == "deleted"
    [rule] = _rules(ws)
    assert (rule.actions, rule.is_active) == ([TAG], False)

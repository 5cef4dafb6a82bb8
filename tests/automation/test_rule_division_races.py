"""An automation rule saved naming a division while that division is being deleted.

The deletion takes the division off the rules naming it (``forget_referent``), then
deletes it. A rule saved meanwhile, its division read unlocked, kept the dead id (no
foreign key covers ``actions``): uneditable, failing at every run. The save now
share-locks the divisions its actions add: it waits for the deletion and answers 422,
or the deletion waits for it and takes the division off it.
"""

from __future__ import annotations

from shared.automation import rules
from shared.context import Ctx
from shared.db import get_sessionmaker, session_scope
from shared.models import AutomationRule
from tests.automation.conftest import RULES, create_rule, rule_body, tid
from tests.inbox_conversations.conftest import add_division, delete_division_now, while_deleting
from tests.lock_races import race

TAG = {"type": "add_tags", "params": {"tags": ["refund"]}}


def _routing_to(division: str) -> dict:
    return {"type": "assign_division", "params": {"division_id": division}}


def _rules(ws) -> list[AutomationRule]:
    with session_scope() as session:
        query = session.query(AutomationRule).filter(AutomationRule.tenant_id == tid(ws))
        return list(query.order_by(AutomationRule.created_at))


def test_a_rule_created_naming_a_division_being_deleted_is_refused(workspace):
    ws = workspace
    doomed = add_division(ws, "Doomed")
    body = rule_body(actions=[_routing_to(doomed)])
    resp = while_deleting(ws, doomed, lambda: ws.call("POST", RULES, json=body))
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "actions[0].params.division_id"
    assert _rules(ws) == []


def test_a_rule_changed_to_name_a_division_being_deleted_is_refused(workspace):
    ws = workspace
    doomed = add_division(ws, "Doomed")
    rule = create_rule(ws, actions=[TAG])
    path = f"{RULES}/{rule['id']}"
    change = {"actions": [TAG, _routing_to(doomed)]}
    resp = while_deleting(ws, doomed, lambda: ws.call("PATCH", path, json=change))
    assert resp.status_code == 422, resp.text
    [kept] = _rules(ws)
    assert (kept.actions, kept.is_active) == ([TAG], True)


def test_a_division_deleted_while_a_rule_naming_it_is_created_is_taken_off_it(workspace):
    """The creation came first (uncommitted): the deletion waits for it, then forgets the
    division on it as on any rule naming it (its action goes, the rule switched off)."""
    ws = workspace
    doomed = add_division(ws, "Doomed")
    creating = get_sessionmaker()()
    body = rule_body(actions=[TAG, _routing_to(doomed)])
    rules.create_rule(creating, Ctx.system(tid(ws)), body)
    creating.flush()

    assert race(creating, lambda: delete_division_now(ws, doomed)) == "deleted"
    [rule] = _rules(ws)
    assert (rule.actions, rule.is_active) == ([TAG], False)

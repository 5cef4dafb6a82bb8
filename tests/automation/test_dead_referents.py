"""A deleted agent, division, quick reply or webhook endpoint leaves the rules naming it.

Kept, its id made the rule uneditable (every PATCH re-validates the whole rule and
answered 422 for the dead id) and failed at every run. As for a division
(``test_rules_api``): the action that needs it goes, an optional param naming it is
dropped, the rule is switched off and its version goes up, logged; another tenant's
rules are never touched.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from sqlalchemy import update

from shared.automation import actions as action_catalogue
from shared.automation.rules import rules_version
from shared.db import session_scope
from shared.models import AutomationRule
from tests.admin.conftest import root  # noqa: F401  (fixture)
from tests.automation.conftest import RULES, create_rule
from tests.webhooks.conftest import receiver  # noqa: F401  (fixture)
from tests.webhooks.test_api import create as create_webhook
from tests.workspaces import Workspace

TAG = {"type": "add_tags", "params": {"tags": ["kept"]}}


class Referent(NamedTuple):
    """A kind of row an action names: how to make one, its endpoint, the action naming it."""

    make: Callable[[Workspace, Any], str]
    collection: str
    action: str
    param: str

    def naming(self, ref_id: str) -> dict[str, Any]:
        return {"type": self.action, "params": {self.param: ref_id}}


def _agent(ws: Workspace, _receiver: Any) -> str:
    agent, _ = ws.create_agent()
    return agent["id"]


def _quick_reply(ws: Workspace, _receiver: Any) -> str:
    body = {"shortcut": uuid.uuid4().hex[:8], "title": "Hi", "content": "Hi!", "scope": "shared"}
    resp = ws.call("POST", "/api/quick-replies", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


def _webhook(ws: Workspace, hooks: Any) -> str:
    return create_webhook(ws, hooks.url(f"/hook/{uuid.uuid4().hex[:12]}"))["id"]


def _division(ws: Workspace, _receiver: Any) -> str:
    resp = ws.call("POST", "/api/divisions", json={"name": uuid.uuid4().hex[:8]})
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


REFERENTS = {
    "agents": Referent(_agent, "/api/agents", "assign_agent", "agent_id"),
    "quick_replies": Referent(
        _quick_reply, "/api/quick-replies", "send_quick_reply", "quick_reply_id"
    ),
    "webhook_endpoints": Referent(
        _webhook, "/api/outgoing-webhooks", "send_webhook", "endpoint_id"
    ),
    "divisions": Referent(_division, "/api/divisions", "assign_division", "division_id"),
}


def test_every_kind_of_row_an_action_can_name_is_covered_here():
    """A new kind in the action catalogue needs its delete path to forget it, and a case."""
    named = {p["refers_to"] for a in action_catalogue.catalogue() for p in a["params"]}
    assert named - {None} == set(REFERENTS)


def _rules(ws: Workspace) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in ws.call("GET", RULES, params={"limit": 100}).json["items"]}


def _logged_rule_updates(ws: Workspace) -> list[str]:
    params = {"entity_type": "automation_rule", "action": "automation_rule.updated"}
    resp = ws.call("GET", "/api/activity-logs", params=params)
    assert resp.status_code == 200, resp.text
    return sorted(item["entity_id"] for item in resp.json["items"])


def _name_in_another_tenant(other: Workspace, ref_id: str, ref: Referent) -> dict[str, Any]:
    """Another tenant's rule naming the id (the API refuses that: written to the row)."""
    rule = create_rule(other, name="other tenant")
    with session_scope() as session:
        session.execute(
            update(AutomationRule)
            .where(AutomationRule.id == uuid.UUID(rule["id"]))
            .values(actions=[ref.naming(ref_id)])
        )
    return other.call("GET", f"{RULES}/{rule['id']}").json


@pytest.mark.parametrize("kind", sorted(REFERENTS))
def test_deleting_a_thing_a_rule_names_takes_it_off_the_rule_which_stays_editable(
    workspace,
    other_workspace,
    receiver,  # noqa: F811
    kind,
):
    ws, ref = workspace, REFERENTS[kind]
    doomed, kept = ref.make(ws, receiver), ref.make(ws, receiver)
    naming = create_rule(ws, name="naming", actions=[ref.naming(doomed), TAG])
    elsewhere = create_rule(ws, name="elsewhere", actions=[ref.naming(kept)])
    mentioning = create_rule(
        ws, name="mentions", actions=[{"type": "add_note", "params": {"body": f"was {doomed}"}}]
    )
    foreign = _name_in_another_tenant(other_workspace, doomed, ref)

    assert ws.call("DELETE", f"{ref.collection}/{doomed}").status_code == 204

    after = _rules(ws)
    assert after[naming["id"]]["actions"] == [TAG]
    assert after[naming["id"]]["is_active"] is False
    assert after[naming["id"]]["version"] == naming["version"] + 1
    assert after[elsewhere["id"]] == elsewhere
    assert after[mentioning["id"]] == mentioning
    assert _logged_rule_updates(ws) == [naming["id"]]
    assert other_workspace.call("GET", f"{RULES}/{foreign['id']}").json == foreign

    renamed = ws.call("PATCH", f"{RULES}/{naming['id']}", json={"name": "fix me"})
    assert renamed.status_code == 200, renamed.text
    back_on = ws.call("PATCH", f"{RULES}/{naming['id']}", json={"is_active": True})
    assert back_on.status_code == 200, back_on.text
    refused = ws.call("PATCH", f"{RULES}/{elsewhere['id']}", json={"actions": [ref.naming(doomed)]})
    assert refused.status_code == 422
    assert refused.json["error"]["code"] == "validation_error"
    assert refused.json["error"]["details"][0]["field"] == f"actions[0].params.{ref.param}"


def test_a_rule_naming_nothing_deleted_keeps_its_version_and_the_rules_version_stays(workspace):
    """Deleting an agent no rule names changes no rule, nor the tenant's rules version."""
    ws = workspace
    agent, _ = ws.create_agent()
    rule = create_rule(ws, actions=[TAG])
    with session_scope() as session:
        version = rules_version(session, uuid.UUID(ws.tenant["id"]))

    assert ws.call("DELETE", f"/api/agents/{agent['id']}").status_code == 204

    assert _rules(ws)[rule["id"]] == rule
    with session_scope() as session:
        assert rules_version(session, uuid.UUID(ws.tenant["id"])) == version


def test_a_suspended_agent_stays_on_the_rules_assigning_to_them(workspace, root):  # noqa: F811
    """Suspension is undone by activation, and assigning to a suspended agent is valid (a
    rule naming one is saved, and runs): the rule is left as it is, editable."""
    ws = workspace
    agent, _ = ws.create_agent()
    assigning = create_rule(ws, actions=[REFERENTS["agents"].naming(agent["id"])])
    users = f"/api/admin/tenants/{ws.tenant['id']}/users/{agent['id']}"

    assert root.call("POST", f"{users}/suspend").status_code == 200

    assert _rules(ws)[assigning["id"]] == assigning
    renamed = ws.call("PATCH", f"{RULES}/{assigning['id']}", json={"name": "still assigning"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json["actions"] == assigning["actions"] and renamed.json["is_active"]

"""The rules API: create, read, change, toggle, delete; every refusal names its path."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import ActivityLog, AutomationRule
from tests.automation.conftest import RULES, add_division, create_rule, rule_body, tid


def fields(resp) -> list[str]:
    return [d["field"] for d in resp.json["error"]["details"]]


def test_a_rule_is_created_read_listed_changed_toggled_and_deleted(workspace):
    rule = create_rule(workspace, priority=5)
    assert rule["version"] == 1 and rule["is_active"] is True and rule["priority"] == 5
    assert rule["created_by"] == workspace.admin["id"]
    got = workspace.call("GET", f"{RULES}/{rule['id']}")
    assert got.status_code == 200 and got.json == rule

    listed = workspace.call("GET", RULES, params={"trigger_event_type": "message.created"})
    assert [r["id"] for r in listed.json["items"]] == [rule["id"]]
    assert workspace.call("GET", RULES, params={"is_active": "false"}).json["items"] == []

    patched = workspace.call("PATCH", f"{RULES}/{rule['id']}", json={"name": "Refunds"})
    assert patched.status_code == 200, patched.text
    assert patched.json["name"] == "Refunds" and patched.json["version"] == 2
    assert patched.json["conditions"] == rule["conditions"]

    toggled = workspace.call("POST", f"{RULES}/{rule['id']}/toggle")
    assert toggled.status_code == 200 and toggled.json["is_active"] is False
    assert workspace.call("POST", f"{RULES}/{rule['id']}/toggle").json["is_active"] is True

    assert workspace.call("DELETE", f"{RULES}/{rule['id']}").status_code == 204
    assert workspace.call("GET", f"{RULES}/{rule['id']}").status_code == 404
    with session_scope() as session:
        actions = set(
            session.scalars(
                select(ActivityLog.action).where(ActivityLog.entity_id == uuid.UUID(rule["id"]))
            )
        )
    assert {"automation_rule.created", "automation_rule.updated"} <= actions
    assert {"automation_rule.toggled", "automation_rule.deleted"} <= actions


def test_pages_follow_the_cursor(workspace):
    made = [create_rule(workspace, name=f"r{i}")["id"] for i in range(3)]
    first = workspace.call("GET", RULES, params={"limit": 2}).json
    second = workspace.call("GET", RULES, params={"limit": 2, "cursor": first["next_cursor"]}).json
    assert second["next_cursor"] is None
    assert [r["id"] for r in first["items"] + second["items"]] == made[::-1]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            {
                "conditions": {
                    "match": "all",
                    "conditions": [
                        {"attribute": "conversation.nope", "operator": "equal_to", "value": 1}
                    ],
                }
            },
            "conditions.conditions[0].attribute",
        ),
        (
            {
                "conditions": {
                    "match": "all",
                    "conditions": [
                        {
                            "attribute": "conversation.unread_count",
                            "operator": "greater_than",
                            "value": "many",
                        }
                    ],
                }
            },
            "conditions.conditions[0].value",
        ),
        (  # JSON keeps every digit: a float comparison of it overflowed (a 500)
            {
                "conditions": {
                    "match": "all",
                    "conditions": [
                        {
                            "attribute": "contact.custom_attributes.plan",
                            "operator": "equal_to",
                            "value": 10**400,
                        }
                    ],
                }
            },
            "conditions.conditions[0].value",
        ),
        (  # year 10000 in UTC: stored, then unreadable by every read of the conversation
            {"actions": [{"type": "snooze", "params": {"until": "9999-12-31T23:00:00-14:00"}}]},
            "actions[0].params.until",
        ),
        ({"trigger_event_types": ["agent.created"]}, "trigger_event_types[0]"),
        ({"trigger_event_types": ["no.such"]}, "trigger_event_types[0]"),
        (
            {
                "actions": [
                    {"type": "add_tags", "params": {"tags": ["x"]}},
                    {"type": "teleport", "params": {}},
                ]
            },
            "actions[1].type",
        ),
    ],
)
def test_a_rule_that_cannot_be_evaluated_is_a_422_at_the_bad_path(workspace, change, path):
    resp = workspace.call("POST", RULES, json=rule_body(**change))
    assert resp.status_code == 422, resp.text
    assert path in fields(resp)
    with session_scope() as session:
        count = session.scalar(
            select(func.count()).where(AutomationRule.tenant_id == tid(workspace))
        )
    assert count == 0


def test_actions_naming_another_tenants_agent_or_division_are_refused(workspace, other_workspace):
    foreign_division = add_division(other_workspace, "Theirs")
    actions = [
        {"type": "assign_agent", "params": {"agent_id": other_workspace.admin["id"]}},
        {"type": "assign_division", "params": {"division_id": foreign_division}},
        {"type": "assign_agent", "params": {"agent_id": workspace.admin["id"]}},
    ]
    reply = other_workspace.call(
        "POST",
        "/api/quick-replies",
        json={"shortcut": "hi", "title": "Hi", "content": "Hello", "scope": "shared"},
    )
    assert reply.status_code == 201, reply.text
    actions.insert(2, {"type": "send_quick_reply", "params": {"quick_reply_id": reply.json["id"]}})
    resp = workspace.call("POST", RULES, json=rule_body(actions=actions))
    assert resp.status_code == 422, resp.text
    assert fields(resp) == [
        "actions[0].params.agent_id",
        "actions[1].params.division_id",
        "actions[2].params.quick_reply_id",
    ]
    actions.pop(2)
    # Its own agent and division pass.
    mine = add_division(workspace, "Mine")
    ok = [actions[2], {"type": "assign_division", "params": {"division_id": mine}}]
    assert workspace.call("POST", RULES, json=rule_body(actions=ok)).status_code == 201


def test_a_patch_is_validated_whole_and_changes_nothing_when_refused(workspace):
    rule = create_rule(workspace)
    bad = {"actions": [{"type": "set_status", "params": {"status": "exploded"}}]}
    resp = workspace.call("PATCH", f"{RULES}/{rule['id']}", json=bad)
    assert resp.status_code == 422 and fields(resp)[0].startswith("actions[0].params")
    assert workspace.call("GET", f"{RULES}/{rule['id']}").json["version"] == 1
    nulled = workspace.call("PATCH", f"{RULES}/{rule['id']}", json={"name": None})
    assert nulled.status_code == 422


def test_the_rule_limit_is_a_422_rule_limit(workspace, override):
    override(automation_max_rules_per_tenant=2)
    create_rule(workspace)
    create_rule(workspace)
    resp = workspace.call("POST", RULES, json=rule_body())
    assert resp.status_code == 422 and resp.json["error"]["code"] == "rule_limit"


def test_another_tenants_rule_answers_404_everywhere(workspace, other_workspace):
    theirs = create_rule(other_workspace)
    base = f"{RULES}/{theirs['id']}"
    for method, path, body in [
        ("GET", base, None),
        ("PATCH", base, {"name": "mine now"}),
        ("DELETE", base, None),
        ("POST", f"{base}/toggle", None),
        ("POST", f"{base}/dry-run", {"payload": {}}),
        ("GET", f"{base}/runs", None),
        ("GET", f"{base}/events", None),
    ]:
        resp = workspace.call(method, path, json=body)
        assert resp.status_code == 404, (method, path, resp.text)
    assert workspace.call("GET", RULES).json["items"] == []
    assert other_workspace.call("GET", base).json["name"] == theirs["name"]


def test_agents_cannot_manage_rules_and_supervisors_only_read(workspace):
    rule = create_rule(workspace)
    _, agent_token = workspace.create_agent("agent")
    _, supervisor_token = workspace.create_agent("supervisor")
    assert workspace.call("GET", RULES, token=agent_token).status_code == 403
    assert workspace.call("GET", RULES, token=supervisor_token).status_code == 200
    resp = workspace.call("POST", RULES, json=rule_body(), token=supervisor_token)
    assert resp.status_code == 403
    resp = workspace.call("POST", f"{RULES}/{rule['id']}/toggle", token=supervisor_token)
    assert resp.status_code == 403


def test_deleting_a_division_takes_it_off_the_rules_naming_it_and_they_stay_editable(workspace):
    """As SLA policies do: the deleted division leaves the rules' actions (an action that
    needs it goes, an optional one loses it), and a rule changed so is switched off, not
    left to run otherwise than written. Saving it back then works; a dead id a change
    itself brings is still refused."""
    ws = workspace
    doomed = ws.call("POST", "/api/divisions", json={"name": "Doomed"}).json["id"]
    kept = ws.call("POST", "/api/divisions", json={"name": "Kept"}).json["id"]
    tag = {"type": "add_tags", "params": {"tags": ["routed"]}}
    routed = create_rule(
        ws,
        name="route",
        actions=[{"type": "assign_division", "params": {"division_id": doomed}}, tag],
    )
    spread = create_rule(
        ws,
        name="spread",
        actions=[{"type": "assign_round_robin", "params": {"division_id": doomed}}],
    )
    elsewhere = create_rule(
        ws,
        name="elsewhere",
        actions=[{"type": "assign_division", "params": {"division_id": kept}}],
    )

    assert ws.call("DELETE", f"/api/divisions/{doomed}").status_code == 204

    after = {r["id"]: r for r in ws.call("GET", RULES).json["items"]}
    assert after[routed["id"]]["actions"] == [tag]
    assert after[routed["id"]]["is_active"] is False
    assert after[routed["id"]]["version"] == routed["version"] + 1
    assert after[spread["id"]]["actions"] == [{"type": "assign_round_robin", "params": {}}]
    assert after[spread["id"]]["is_active"] is False
    assert after[elsewhere["id"]] == elsewhere
    with session_scope() as session:
        logged = session.scalars(
            select(ActivityLog.entity_id).where(
                ActivityLog.tenant_id == tid(ws), ActivityLog.action == "automation_rule.updated"
            )
        ).all()
    assert sorted(map(str, logged)) == sorted([routed["id"], spread["id"]])

    renamed = ws.call("PATCH", f"{RULES}/{routed['id']}", json={"name": "route (fix me)"})
    assert renamed.status_code == 200, renamed.text
    back_on = ws.call("PATCH", f"{RULES}/{spread['id']}", json={"is_active": True})
    assert back_on.status_code == 200, back_on.text
    dead = [{"type": "assign_division", "params": {"division_id": doomed}}]
    refused = ws.call("PATCH", f"{RULES}/{elsewhere['id']}", json={"actions": dead})
    assert refused.status_code == 422
    assert refused.json["error"]["details"][0]["field"] == "actions[0].params.division_id"

"""Assignments, handoff rules and orchestration rules: shapes per kind, ownership, tenants."""

from __future__ import annotations

import uuid

import pytest

from shared.ai import handoff_rules, orchestration
from tests.ai_config.conftest import AGENTS, create_agent, fields

ASSIGNMENTS = "/api/ai-agent-assignments"
ORCHESTRATION = "/api/ai-orchestration-rules"


def account(ws, channel: str = "whatsapp") -> str:
    resp = ws.call(
        "POST",
        "/api/integration-accounts",
        json={"channel": channel, "name": "Line", "external_id": str(uuid.uuid4().int)[:15]},
    )
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


def division(ws) -> str:
    resp = ws.call("POST", "/api/divisions", json={"name": f"d-{uuid.uuid4().hex[:6]}"})
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


# ---------------------------------------------------------------- assignments


def test_an_assignment_is_created_listed_replaced_and_deleted(workspace):
    agent = create_agent(workspace)
    line, team = account(workspace), division(workspace)
    body = {"ai_agent_id": agent["id"], "integration_account_id": line, "division_id": team}
    made = workspace.call("POST", ASSIGNMENTS, json=body)
    assert made.status_code == 201, made.text
    assert made.json["mode"] == "always" and made.json["channel"] is None
    listed = workspace.call("GET", ASSIGNMENTS, params={"ai_agent_id": agent["id"]}).json
    assert [a["id"] for a in listed["items"]] == [made.json["id"]]
    path = f"{ASSIGNMENTS}/{made.json['id']}"
    put = workspace.call(
        "PUT",
        path,
        json={"ai_agent_id": agent["id"], "channel": "email", "mode": "outside_working_hours"},
    )
    assert put.status_code == 200, put.text
    assert put.json["integration_account_id"] is None and put.json["channel"] == "email"
    assert put.json["mode"] == "outside_working_hours"
    assert workspace.call("DELETE", path).status_code == 204
    assert workspace.call("DELETE", path).status_code == 404


def test_an_assignment_names_a_target_of_this_tenant(workspace, other_workspace):
    agent = create_agent(workspace)
    theirs = create_agent(other_workspace)
    nothing = workspace.call("POST", ASSIGNMENTS, json={"ai_agent_id": agent["id"]})
    assert nothing.status_code == 422
    assert set(fields(nothing)) == {"integration_account_id", "channel"}
    cases = [
        ({"ai_agent_id": theirs["id"], "channel": "email"}, "ai_agent_id"),
        (
            {"ai_agent_id": agent["id"], "integration_account_id": account(other_workspace)},
            "integration_account_id",
        ),
        (
            {
                "ai_agent_id": agent["id"],
                "channel": "email",
                "division_id": division(other_workspace),
            },
            "division_id",
        ),
        (
            {
                "ai_agent_id": agent["id"],
                "integration_account_id": account(workspace),
                "channel": "email",
            },
            "channel",
        ),
        ({"ai_agent_id": agent["id"], "channel": "fax"}, "channel"),
        ({"ai_agent_id": agent["id"], "channel": "email", "mode": "sometimes"}, "mode"),
    ]
    for body, field in cases:
        resp = workspace.call("POST", ASSIGNMENTS, json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert fields(resp) == [field], body


def test_the_same_target_twice_is_a_conflict(workspace):
    first, second = create_agent(workspace), create_agent(workspace)
    body = {"ai_agent_id": first["id"], "channel": "email"}
    assert workspace.call("POST", ASSIGNMENTS, json=body).status_code == 201
    again = workspace.call("POST", ASSIGNMENTS, json=body | {"ai_agent_id": second["id"]})
    assert again.status_code == 409
    team = workspace.call("POST", ASSIGNMENTS, json=body | {"division_id": division(workspace)})
    assert team.status_code == 201


def test_an_account_named_with_or_without_its_channel_is_the_same_target(workspace):
    """The channel an account assignment may add is the account's own: it targets the same."""
    first, second = create_agent(workspace), create_agent(workspace)
    line = account(workspace)
    made = workspace.call(
        "POST", ASSIGNMENTS, json={"ai_agent_id": first["id"], "integration_account_id": line}
    )
    assert made.status_code == 201, made.text
    body = {"ai_agent_id": second["id"], "integration_account_id": line, "channel": "whatsapp"}
    again = workspace.call("POST", ASSIGNMENTS, json=body)
    assert again.status_code == 409, again.text
    whole_channel = workspace.call(
        "POST", ASSIGNMENTS, json={"ai_agent_id": second["id"], "channel": "whatsapp"}
    )
    assert whole_channel.status_code == 201, whole_channel.text
    put = workspace.call(
        "PUT", f"{ASSIGNMENTS}/{made.json['id']}", json=body | {"ai_agent_id": first["id"]}
    )
    assert put.status_code == 200, put.text


def test_assignments_of_another_tenant_are_invisible(workspace, other_workspace):
    theirs = create_agent(other_workspace)
    made = other_workspace.call(
        "POST", ASSIGNMENTS, json={"ai_agent_id": theirs["id"], "channel": "email"}
    )
    path = f"{ASSIGNMENTS}/{made.json['id']}"
    mine = create_agent(workspace)
    assert workspace.call("GET", ASSIGNMENTS).json["items"] == []
    put = workspace.call("PUT", path, json={"ai_agent_id": mine["id"], "channel": "email"})
    assert put.status_code == 404
    assert workspace.call("DELETE", path).status_code == 404


# ---------------------------------------------------------------- handoff rules


def test_handoff_rules_live_under_their_agent(workspace):
    agent, other = create_agent(workspace), create_agent(workspace)
    rules = f"{AGENTS}/{agent['id']}/handoff-rules"
    made = workspace.call(
        "POST",
        rules,
        json={"kind": "max_turns", "max_turns": 6, "position": 2, "message": "One moment"},
    )
    assert made.status_code == 201, made.text
    first = workspace.call(
        "POST", rules, json={"kind": "keyword", "keywords": ["refund", "lawyer"], "position": 1}
    ).json
    assert [r["id"] for r in workspace.call("GET", rules).json] == [first["id"], made.json["id"]]
    path = f"{rules}/{made.json['id']}"
    put = workspace.call("PUT", path, json={"kind": "low_confidence", "threshold": 0.4})
    assert put.status_code == 200, put.text
    assert put.json["max_turns"] is None and put.json["threshold"] == 0.4
    # Another agent's path to the same rule: 404, and the rule is untouched.
    foreign = f"{AGENTS}/{other['id']}/handoff-rules/{made.json['id']}"
    assert workspace.call("PUT", foreign, json={"kind": "model_error"}).status_code == 404
    assert workspace.call("DELETE", foreign).status_code == 404
    assert workspace.call("DELETE", path).status_code == 204
    assert [r["id"] for r in workspace.call("GET", rules).json] == [first["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "keyword"}, "keywords"),
        ({"kind": "max_turns"}, "max_turns"),
        ({"kind": "keyword", "keywords": ["x"], "max_turns": 3}, "max_turns"),
        ({"kind": "model_error", "threshold": 0.2}, "threshold"),
        ({"kind": "usage_limit", "keywords": ["x"]}, "keywords"),
        ({"kind": "low_confidence", "threshold": 2}, "threshold"),
        ({"kind": "vibes"}, "kind"),
        ({"kind": "model_error", "division_id": str(uuid.uuid4())}, "division_id"),
    ],
)
def test_handoff_rules_take_the_fields_of_their_kind(workspace, body, field):
    agent = create_agent(workspace)
    resp = workspace.call("POST", f"{AGENTS}/{agent['id']}/handoff-rules", json=body)
    assert resp.status_code == 422, resp.text
    assert fields(resp) == [field]


def test_an_agent_has_a_bounded_number_of_handoff_rules(workspace, monkeypatch):
    """Every reply reads all of its agent's rules, and their list has no pages."""
    monkeypatch.setattr(handoff_rules, "MAX_RULES", 3)
    agent = create_agent(workspace)
    rules = f"{AGENTS}/{agent['id']}/handoff-rules"
    for _ in range(3):
        assert workspace.call("POST", rules, json={"kind": "model_error"}).status_code == 201
    refused = workspace.call("POST", rules, json={"kind": "model_error"})
    assert refused.status_code == 422, refused.text
    assert refused.json["error"]["code"] == "rule_limit" and fields(refused) == ["body"]
    assert len(workspace.call("GET", rules).json) == 3
    # Another agent's rules count for that agent only.
    other = f"{AGENTS}/{create_agent(workspace)['id']}/handoff-rules"
    assert workspace.call("POST", other, json={"kind": "model_error"}).status_code == 201


def test_handoff_rules_of_another_tenant_are_404(workspace, other_workspace):
    theirs = create_agent(other_workspace)
    rules = f"{AGENTS}/{theirs['id']}/handoff-rules"
    rule = other_workspace.call("POST", rules, json={"kind": "model_error"}).json
    assert workspace.call("GET", rules).status_code == 404
    assert workspace.call("POST", rules, json={"kind": "model_error"}).status_code == 404
    assert workspace.call("DELETE", f"{rules}/{rule['id']}").status_code == 404


# ---------------------------------------------------------------- orchestration rules


def test_orchestration_rules_are_created_listed_replaced_and_deleted(workspace):
    sales, support = create_agent(workspace), create_agent(workspace)
    made = workspace.call(
        "POST",
        ORCHESTRATION,
        json={
            "name": "Buyers",
            "match_type": "intent",
            "intent": "purchase",
            "keywords": ["I want to buy", "how much is"],
            "target_ai_agent_id": sales["id"],
            "priority": 10,
        },
    )
    assert made.status_code == 201, made.text
    listed = workspace.call("GET", ORCHESTRATION, params={"target_ai_agent_id": sales["id"]}).json
    assert [r["id"] for r in listed["items"]] == [made.json["id"]]
    path = f"{ORCHESTRATION}/{made.json['id']}"
    put = workspace.call(
        "PUT",
        path,
        json={
            "name": "Email",
            "match_type": "channel",
            "channel": "email",
            "target_ai_agent_id": support["id"],
        },
    )
    assert put.status_code == 200, put.text
    assert put.json["intent"] is None and put.json["keywords"] == [] and put.json["priority"] == 100
    assert workspace.call("DELETE", path).status_code == 204
    assert workspace.call("GET", ORCHESTRATION).json["items"] == []


def test_a_workspace_has_a_bounded_number_of_orchestration_rules(
    workspace, other_workspace, monkeypatch
):
    """Every inbound message of a workspace with rules reads all of its active ones."""
    monkeypatch.setattr(orchestration, "MAX_RULES", 2)
    target = create_agent(workspace)["id"]
    body = {"name": "r", "match_type": "keyword", "keywords": ["x"], "target_ai_agent_id": target}
    for _ in range(2):
        assert workspace.call("POST", ORCHESTRATION, json=body).status_code == 201
    refused = workspace.call("POST", ORCHESTRATION, json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json["error"]["code"] == "rule_limit" and fields(refused) == ["body"]
    # Another workspace's rules count for that workspace only.
    theirs = body | {"target_ai_agent_id": create_agent(other_workspace)["id"]}
    assert other_workspace.call("POST", ORCHESTRATION, json=theirs).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"match_type": "intent", "keywords": ["buy"]}, "intent"),
        ({"match_type": "intent", "intent": "buy"}, "keywords"),
        ({"match_type": "channel"}, "channel"),
        ({"match_type": "keyword"}, "keywords"),
        ({"match_type": "keyword", "keywords": ["x"], "channel": "email"}, "channel"),
        ({"match_type": "channel", "channel": "email", "intent": "x"}, "intent"),
        ({"match_type": "telepathy"}, "match_type"),
    ],
)
def test_orchestration_rules_take_the_fields_of_their_match(workspace, body, field):
    agent = create_agent(workspace)
    resp = workspace.call(
        "POST", ORCHESTRATION, json={"name": "R", "target_ai_agent_id": agent["id"]} | body
    )
    assert resp.status_code == 422, resp.text
    assert fields(resp) == [field]


def test_orchestration_targets_and_rules_are_per_tenant(workspace, other_workspace):
    theirs = create_agent(other_workspace)
    body = {
        "name": "R",
        "match_type": "keyword",
        "keywords": ["x"],
        "target_ai_agent_id": theirs["id"],
    }
    resp = workspace.call("POST", ORCHESTRATION, json=body)
    assert resp.status_code == 422 and fields(resp) == ["target_ai_agent_id"]
    rule = other_workspace.call("POST", ORCHESTRATION, json=body).json
    mine = create_agent(workspace)
    path = f"{ORCHESTRATION}/{rule['id']}"
    assert (
        workspace.call("PUT", path, json=body | {"target_ai_agent_id": mine["id"]}).status_code
        == 404
    )
    assert workspace.call("DELETE", path).status_code == 404
    assert workspace.call("GET", ORCHESTRATION).json["items"] == []


def test_only_admins_write_rules(workspace):
    agent = create_agent(workspace)
    _sup, supervisor = workspace.create_agent("supervisor")
    body = {"ai_agent_id": agent["id"], "channel": "email"}
    assert workspace.call("POST", ASSIGNMENTS, json=body, token=supervisor).status_code == 403
    assert workspace.call("GET", ASSIGNMENTS, token=supervisor).status_code == 200
    rules = f"{AGENTS}/{agent['id']}/handoff-rules"
    assert (
        workspace.call("POST", rules, json={"kind": "model_error"}, token=supervisor).status_code
        == 403
    )
    assert workspace.call("GET", rules, token=supervisor).status_code == 200
    orch = {
        "name": "R",
        "match_type": "keyword",
        "keywords": ["x"],
        "target_ai_agent_id": agent["id"],
    }
    assert workspace.call("POST", ORCHESTRATION, json=orch, token=supervisor).status_code == 403

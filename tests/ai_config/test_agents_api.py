"""AI agents over HTTP: CRUD, the write-only key, base_url checks, roles and tenants."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from api.schemas.ai_agents import AiAgentBody
from shared import crypto
from shared.ai import agents
from shared.config import get_settings
from shared.db import get_sessionmaker, session_scope
from shared.models import ActivityLog, AiAgent, AiHandoffRule
from tests.ai_config.conftest import AGENTS, create_agent, fields, tid
from tests.automation.conftest import admin_ctx
from tests.lock_races import race

SECRET = "sk-test-" + "x" * 24


def test_an_agent_is_created_read_listed_replaced_toggled_and_deleted(workspace):
    agent = create_agent(
        workspace,
        name="Ava",
        provider="openai",
        model="gpt-4o-mini",
        base_url="http://127.0.0.1:11434/v1/",
        language="en-US",
        guardrails=["no medical advice"],
        prompt_cost_per_1k="0.00015",
        daily_reply_limit=500,
    )
    assert agent["provider"] == "openai" and agent["base_url"] == "http://127.0.0.1:11434/v1"
    assert agent["temperature"] == 0.3 and agent["max_tokens"] == 512 and agent["is_active"]
    assert agent["prompt_cost_per_1k"] == "0.000150" and agent["has_api_key"] is False
    got = workspace.call("GET", f"{AGENTS}/{agent['id']}")
    assert got.status_code == 200 and got.json == agent
    assert [a["id"] for a in workspace.call("GET", AGENTS).json["items"]] == [agent["id"]]
    assert workspace.call("GET", AGENTS, params={"q": "nobody"}).json["items"] == []

    put = workspace.call("PUT", f"{AGENTS}/{agent['id']}", json={"name": "Ava 2"})
    assert put.status_code == 200, put.text
    # Full replace: what was left out is back to its default.
    assert put.json["name"] == "Ava 2" and put.json["provider"] == "offline"
    assert put.json["guardrails"] == [] and put.json["daily_reply_limit"] is None

    off = workspace.call("PUT", f"{AGENTS}/{agent['id']}/active", json={"is_active": False})
    assert off.status_code == 200 and off.json["is_active"] is False
    assert workspace.call("GET", AGENTS, params={"is_active": "true"}).json["items"] == []

    assert workspace.call("DELETE", f"{AGENTS}/{agent['id']}").status_code == 204
    assert workspace.call("GET", f"{AGENTS}/{agent['id']}").status_code == 404
    assert workspace.call("DELETE", f"{AGENTS}/{agent['id']}").status_code == 404
    with session_scope() as session:
        actions = set(
            session.scalars(
                select(ActivityLog.action).where(ActivityLog.entity_id == uuid.UUID(agent["id"]))
            )
        )
    assert actions == {
        "ai_agent.created",
        "ai_agent.updated",
        "ai_agent.deactivated",
        "ai_agent.deleted",
    }


def test_the_api_key_is_write_only_and_encrypted_at_rest(workspace):
    agent = create_agent(workspace, provider="openai", api_key=SECRET)
    assert agent["has_api_key"] is True and SECRET not in str(agent)
    path = f"{AGENTS}/{agent['id']}"
    # Left out of a replace, the key stays; null removes it; a string replaces it.
    kept = workspace.call("PUT", path, json={"name": agent["name"], "provider": "openai"})
    assert kept.json["has_api_key"] is True
    with session_scope() as session:
        row = session.get(AiAgent, uuid.UUID(agent["id"]))
        assert SECRET not in row.api_key_encrypted
        assert crypto.decrypt(row.api_key_encrypted) == SECRET
    replaced = workspace.call("PUT", path, json={"name": agent["name"], "api_key": "sk-new"})
    assert replaced.json["has_api_key"] is True
    removed = workspace.call("PUT", path, json={"name": agent["name"], "api_key": None})
    assert removed.json["has_api_key"] is False
    with session_scope() as session:
        logged = session.scalars(
            select(ActivityLog).where(ActivityLog.tenant_id == tid(workspace))
        ).all()
    assert logged and all(SECRET not in str((r.before, r.after)) for r in logged)
    assert all("sk-new" not in str((r.before, r.after)) for r in logged)


@pytest.fixture
def production_like_base_urls(monkeypatch):
    """AI_ALLOW_PRIVATE_BASE_URL off, as production has it by default."""
    monkeypatch.setenv("AI_ALLOW_PRIVATE_BASE_URL", "false")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("AI_ALLOW_PRIVATE_BASE_URL")
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest", "https://10.0.0.7/v1", "https://localhost/v1"]
)
def test_private_base_urls_are_refused_unless_allowed(workspace, production_like_base_urls, url):
    resp = workspace.call("POST", AGENTS, json={"name": "Leaky", "base_url": url})
    assert resp.status_code == 422, resp.text
    assert fields(resp) == ["base_url"]
    ok = workspace.call(
        "POST", AGENTS, json={"name": "Hosted", "base_url": "https://api.openai.com/v1"}
    )
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/v1", "http://user:pw@127.0.0.1:11434/v1", "http://0177.0.0.1/v1", "nope"],
)
def test_even_an_allowed_local_base_url_must_be_a_plain_http_url(workspace, url):
    resp = workspace.call("POST", AGENTS, json={"name": "Odd", "base_url": url})
    assert resp.status_code == 422, resp.text
    assert fields(resp) == ["base_url"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "A", "provider": "anthropic"}, "provider"),
        ({"name": "A", "temperature": 3}, "temperature"),
        ({"name": "A", "max_tokens": 0}, "max_tokens"),
        ({"name": "A", "confidence_threshold": 1.5}, "confidence_threshold"),
        ({"name": "A", "language": "english please"}, "language"),
        ({"name": "A", "prompt_cost_per_1k": "-1"}, "prompt_cost_per_1k"),
        ({"name": "A", "daily_reply_limit": 0}, "daily_reply_limit"),
        ({"name": "A", "guardrails": [""]}, "guardrails[0]"),
        ({"name": "A", "api_key": ""}, "api_key"),
        ({"name": "A", "surprise": 1}, "surprise"),
    ],
)
def test_bad_fields_are_422_naming_the_field(workspace, body, field):
    resp = workspace.call("POST", AGENTS, json=body)
    assert resp.status_code == 422, resp.text
    assert field in fields(resp)


def test_names_are_unique_per_tenant_case_insensitively(workspace, other_workspace):
    agent = create_agent(workspace, name="Ava")
    clash = workspace.call("POST", AGENTS, json={"name": "ava"})
    assert clash.status_code == 409 and fields(clash) == ["name"]
    other = create_agent(workspace, name="Bob")
    renamed = workspace.call("PUT", f"{AGENTS}/{other['id']}", json={"name": "AVA"})
    assert renamed.status_code == 409
    create_agent(other_workspace, name="Ava")  # another tenant may
    assert workspace.call("GET", f"{AGENTS}/{agent['id']}").json["name"] == "Ava"


def test_deleting_an_agent_takes_its_rules_with_it(workspace):
    agent = create_agent(workspace)
    rule = workspace.call(
        "POST",
        f"{AGENTS}/{agent['id']}/handoff-rules",
        json={"kind": "keyword", "keywords": ["human"]},
    )
    assert rule.status_code == 201, rule.text
    assert workspace.call("DELETE", f"{AGENTS}/{agent['id']}").status_code == 204
    with session_scope() as session:
        assert session.get(AiHandoffRule, uuid.UUID(rule.json["id"])) is None


def test_roles_supervisors_review_agents_do_not_and_only_admins_write(workspace):
    agent = create_agent(workspace)
    _sup, supervisor = workspace.create_agent("supervisor")
    _agt, plain_agent = workspace.create_agent("agent")
    path = f"{AGENTS}/{agent['id']}"
    assert workspace.call("GET", path, token=supervisor).status_code == 200
    assert workspace.call("GET", AGENTS, token=supervisor).status_code == 200
    for token in (supervisor, plain_agent):
        assert workspace.call("POST", AGENTS, json={"name": "X"}, token=token).status_code == 403
        assert workspace.call("PUT", path, json={"name": "X"}, token=token).status_code == 403
        put_active = workspace.call("PUT", f"{path}/active", json={"is_active": False}, token=token)
        assert put_active.status_code == 403
        assert workspace.call("DELETE", path, token=token).status_code == 403
    assert workspace.call("GET", path, token=plain_agent).status_code == 403
    assert workspace.call("GET", path).json == agent


def test_another_tenants_agent_is_404_everywhere(workspace, other_workspace):
    theirs = create_agent(other_workspace)
    path = f"{AGENTS}/{theirs['id']}"
    assert workspace.call("GET", path).status_code == 404
    assert workspace.call("PUT", path, json={"name": "Mine"}).status_code == 404
    assert workspace.call("PUT", f"{path}/active", json={"is_active": False}).status_code == 404
    assert workspace.call("DELETE", path).status_code == 404
    assert workspace.call("GET", AGENTS).json["items"] == []
    assert other_workspace.call("GET", path).json == theirs


def test_a_workspace_has_a_bounded_number_of_agents(workspace, other_workspace, monkeypatch):
    """GET /api/ai-agents/usage answers every agent in one list: their number is bounded."""
    monkeypatch.setattr(agents, "MAX_AGENTS", 2)
    first, _second = create_agent(workspace), create_agent(workspace)
    refused = workspace.call("POST", AGENTS, json={"name": "Third"})
    assert refused.status_code == 422, refused.text
    assert refused.json["error"]["code"] == "agent_limit" and fields(refused) == ["body"]
    assert len(workspace.call("GET", f"{AGENTS}/usage").json["agents"]) == 2
    create_agent(other_workspace)  # counted per workspace
    assert workspace.call("DELETE", f"{AGENTS}/{first['id']}").status_code == 204
    create_agent(workspace, name="Third")  # room again


def test_two_creates_at_once_cannot_both_pass_the_agent_limit(workspace, monkeypatch):
    """The second create waits for the first and counts its agent."""
    monkeypatch.setattr(agents, "MAX_AGENTS", 2)
    create_agent(workspace)
    creating = get_sessionmaker()()
    body = AiAgentBody(name="Held").model_dump(exclude={"api_key"})
    agents.create_agent(creating, admin_ctx(workspace), body)

    resp = race(creating, lambda: workspace.call("POST", AGENTS, json={"name": "Racing"}))

    assert resp.status_code == 422, resp.text
    with session_scope() as session:
        count = session.query(AiAgent).filter(AiAgent.tenant_id == tid(workspace)).count()
    assert count == 2

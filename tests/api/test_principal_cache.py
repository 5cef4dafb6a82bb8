"""Cached principals never outlive a change: here, and in another API process at once.

A second application runs in a subprocess (its own cache, same database and Redis);
the changes are made through this process's app or its sessions.
"""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import update

from shared.db import session_scope
from shared.models import Tenant
from tests.api.second_process import serving


@pytest.fixture(scope="module")
def other_process(app):
    with serving() as process:
        yield process


def test_logout_refuses_the_token_here_and_in_another_process_at_once(workspace, other_process):
    assert other_process.status("/api/agents", workspace.token) == 200
    assert workspace.call("GET", "/api/agents").status_code == 200

    assert workspace.call("POST", "/api/auth/logout").status_code in (200, 204)

    assert workspace.call("GET", "/api/agents").status_code == 401
    assert other_process.status("/api/agents", workspace.token) == 401


def test_a_demotion_applies_at_once_in_another_process(workspace, other_process):
    agent, token = workspace.create_agent(role="admin")
    assert other_process.status("/api/activity-logs", token) == 200

    demoted = workspace.call("PATCH", f"/api/agents/{agent['id']}", json={"role": "agent"})
    assert demoted.status_code == 200, demoted.text

    assert other_process.status("/api/activity-logs", token) == 403
    assert workspace.call("GET", "/api/activity-logs", token=token).status_code == 403


def test_a_deleted_agent_is_refused_at_once_in_another_process(workspace, other_process):
    agent, token = workspace.create_agent()
    assert other_process.status("/api/agents", token) == 200

    assert workspace.call("DELETE", f"/api/agents/{agent['id']}").status_code == 204

    assert other_process.status("/api/agents", token) == 401


def test_a_suspended_tenant_is_refused_at_once_in_another_process(workspace, other_process):
    assert other_process.status("/api/agents", workspace.token) == 200
    assert workspace.call("GET", "/api/agents").status_code == 200

    with session_scope() as session:
        session.execute(
            update(Tenant).where(Tenant.id == workspace.tenant["id"]).values(status="suspended")
        )

    assert other_process.status("/api/agents", workspace.token) == 403
    assert workspace.call("GET", "/api/agents").status_code == 403


def test_unrelated_writes_keep_the_cache_warm(workspace):
    """Going online is not an auth change: it must not cost every process its cache."""
    from shared.identity import auth_cache

    before = auth_cache.current_epoch()
    status = workspace.call(
        "PATCH", f"/api/agents/{workspace.admin['id']}/status", json={"status": "online"}
    )
    assert status.status_code == 200, status.text
    assert auth_cache.current_epoch() == before


def test_a_cached_token_is_refused_once_it_expires(workspace):
    """The cache skips the signature check on a hit, never the expiry check."""
    import jwt

    from shared.config import get_settings

    now = time.time()
    claims = jwt.decode(workspace.token, options={"verify_signature": False})
    short = jwt.encode(
        claims | {"iat": now, "exp": int(now) + 2, "jti": str(uuid.uuid4())},
        get_settings().secret_key,
        algorithm="HS256",
    )
    assert workspace.call("GET", "/api/agents", token=short).status_code == 200
    time.sleep(max(0.0, int(now) + 2 - time.time()) + 0.2)
    assert workspace.call("GET", "/api/agents", token=short).status_code == 401


def test_a_forged_token_is_never_taken_from_the_cache(workspace):
    assert workspace.call("GET", "/api/agents").status_code == 200
    head, payload, signature = workspace.token.split(".")
    forged = ".".join((head, payload, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")))
    assert workspace.call("GET", "/api/agents", token=forged).status_code == 401


def test_an_api_key_in_use_keeps_the_cache_warm(workspace):
    """An API key's use stamps its ``last_used_at`` (at most once a minute): a write the
    cache ignores, or every integration's first call of each minute would cost every
    process its cached principals."""
    from shared.identity import auth_cache

    key = workspace.call("POST", "/api/api-keys", json={"name": "integration"}).json["key"]
    before = auth_cache.current_epoch()
    used = workspace.client.simulate_get("/api/agents", headers={"X-API-Key": key})
    assert used.status_code == 200, used.text
    listed = workspace.call("GET", "/api/api-keys").json["items"]
    assert [k["last_used_at"] for k in listed if k["name"] == "integration"] != [None]
    assert auth_cache.current_epoch() == before

"""The agents list served from the per-process page cache: the same answers, never stale.

Two more API processes run in subprocesses (same database and Redis): one with its
own cache, to prove a write shows there at once, and one with the cache turned off,
whose answers are the uncached reference. A third has no reachable Redis.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlencode

import psycopg
import pytest
from sqlalchemy import update

from shared.config import get_settings
from shared.db import session_scope
from shared.epoch_cache import TTL_SECONDS
from shared.identity.agents_list_cache import PAGES
from shared.models import Tenant
from shared.redis_client import get_redis
from tests.api.second_process import serving


@pytest.fixture(scope="module")
def other_process(app):
    with serving() as process:
        yield process


@pytest.fixture(scope="module")
def uncached_process(app):
    with serving(AGENTS_LIST_CACHE="false") as process:
        yield process


@pytest.fixture(scope="module")
def redisless_process(app):
    with serving(REDIS_URL="redis://127.0.0.1:1/0") as process:
        yield process


def path(**query) -> str:
    return "/api/agents" + (f"?{urlencode(query)}" if query else "")


def add_agent(ws, **fields) -> dict:
    body = {"email": f"a-{uuid.uuid4().hex[:8]}@example.com", "full_name": "Ada", "role": "agent"}
    resp = ws.call("POST", "/api/agents", json=body | fields)
    assert resp.status_code == 201, resp.text
    return resp.json


def headers_but_request_id(resp) -> dict:
    return {k.lower(): v for k, v in resp.headers.items() if k.lower() != "x-request-id"}


def test_a_cached_page_is_the_uncached_answer_byte_for_byte(workspace, uncached_process):
    ws = workspace
    for i in range(3):
        add_agent(ws, full_name=f"Pager {i}")
    for query in ({}, {"limit": 2}, {"status": "offline", "limit": 100}, {"q": "pager"}):
        first = ws.call("GET", path(**query))
        hits = PAGES.hits
        second = ws.call("GET", path(**query))

        assert PAGES.hits == hits + 1, "the second answer was not served from the cache"
        assert (first.status_code, second.status_code) == (200, 200)
        assert second.content == first.content
        assert headers_but_request_id(second) == headers_but_request_id(first)
        assert uncached_process.get(path(**query), ws.token) == (200, second.content)


def test_filters_and_cursors_are_cached_apart_and_stay_right(workspace, uncached_process):
    ws = workspace
    night = ws.call("POST", "/api/roles", json={"name": "Night", "permissions": []}).json
    made = [
        add_agent(ws, full_name=f"Filter {i}", role="Night" if i % 2 else "agent") for i in range(5)
    ]
    ws.call("PATCH", f"/api/agents/{made[0]['id']}/status", json={"status": "online"})

    def walk() -> list[bytes]:
        pages, cursor = [], None
        while True:
            query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            resp = ws.call("GET", path(**query))
            assert resp.status_code == 200
            pages.append(resp.content)
            cursor = resp.json["next_cursor"]
            if cursor is None:
                return pages

    first_walk, second_walk = walk(), walk()
    assert second_walk == first_walk
    listed = [item["id"] for page in first_walk for item in json.loads(page)["items"]]
    assert len(listed) == len(set(listed)) == 6  # the admin and the five
    cursor = json.loads(first_walk[0])["next_cursor"]
    assert uncached_process.get(path(limit=2, cursor=cursor), ws.token) == (200, first_walk[1])

    expected = {
        "status": ({"status": "online"}, {made[0]["id"]}),
        "role": ({"role_id": night["id"]}, {made[1]["id"], made[3]["id"]}),
        "search": ({"q": "filter 4"}, {made[4]["id"]}),
    }
    for query, ids in expected.values():
        for _ in range(2):
            resp = ws.call("GET", path(**query))
            assert {item["id"] for item in resp.json["items"]} == ids, query
        assert uncached_process.get(path(**query), ws.token) == (200, resp.content)


# --- writes show at once -----------------------------------------------------------------


def _create(ws, agent):
    created = add_agent(ws, full_name="Brand New")
    return lambda items: created["id"] in {item["id"] for item in items}


def _rename(ws, agent):
    ws.call("PATCH", f"/api/agents/{agent['id']}", json={"full_name": "Renamed Agent"})
    return lambda items: any(item["full_name"] == "Renamed Agent" for item in items)


def _go_online(ws, agent):
    ws.call("PATCH", f"/api/agents/{agent['id']}/status", json={"status": "online"})
    return lambda items: {item["id"]: item["status"] for item in items}[agent["id"]] == "online"


def _delete(ws, agent):
    assert ws.call("DELETE", f"/api/agents/{agent['id']}").status_code == 204
    return lambda items: agent["id"] not in {item["id"] for item in items}


def _rename_their_role(ws, agent):
    ws.call("PATCH", f"/api/roles/{agent['role']['id']}", json={"name": "Night owls"})
    return lambda items: {i["id"]: i["role"]["name"] for i in items}[agent["id"]] == "Night owls"


def _log_in(ws, agent):
    login = ws.client.simulate_post(
        "/api/auth/login", json={"email": agent["email"], "password": "correct horse battery"}
    )
    assert login.status_code == 200, login.text
    return lambda items: {i["id"]: i["last_login_at"] for i in items}[agent["id"]] is not None


@pytest.mark.parametrize(
    "change",
    [_create, _rename, _go_online, _delete, _rename_their_role, _log_in],
    ids=["create", "update", "status", "delete", "role rename", "login"],
)
def test_a_write_shows_at_once_here_and_in_another_process(workspace, other_process, change):
    ws = workspace
    ws.call("POST", "/api/roles", json={"name": "Night", "permissions": []})
    agent = add_agent(ws, role="Night", password="correct horse battery")
    for _ in range(2):  # cached in both processes
        before = ws.call("GET", "/api/agents").json["items"]
        other_process.get("/api/agents", ws.token)
    warmed = time.monotonic()

    shows = change(ws, agent)

    assert not shows(before)
    here = ws.call("GET", "/api/agents")
    status, there = other_process.get("/api/agents", ws.token)
    assert time.monotonic() - warmed < TTL_SECONDS, "too slow to tell a change from an expiry"
    assert here.status_code == status == 200
    assert shows(here.json["items"])
    assert shows(json.loads(there)["items"])
    assert there == here.content


def test_another_process_serves_its_cached_page_until_told(workspace, other_process):
    """The control for the test above: a change no hook sees (SQL from another program)
    stays unseen in a process that cached the page, for at most the TTL."""
    ws = workspace
    for _ in range(2):
        other_process.get("/api/agents", ws.token)
    dsn = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE users SET full_name = 'Behind your back' WHERE id = %s", (ws.admin["id"],)
        )

    _, stale = other_process.get("/api/agents", ws.token)
    assert json.loads(stale)["items"][0]["full_name"] == "Grace Admin"
    time.sleep(TTL_SECONDS + 0.1)
    _, fresh = other_process.get("/api/agents", ws.token)
    assert json.loads(fresh)["items"][0]["full_name"] == "Behind your back"


def test_another_tenants_writes_keep_this_tenants_pages(workspace, other_workspace):
    ws, other = workspace, other_workspace
    page = ws.call("GET", "/api/agents").content
    epochs = get_redis().mget(PAGES.epoch_keys(ws.tenant["id"]))

    theirs = add_agent(other)
    other.call("PATCH", f"/api/agents/{theirs['id']}/status", json={"status": "online"})
    hits = PAGES.hits
    again = ws.call("GET", "/api/agents")

    assert PAGES.hits == hits + 1 and again.content == page
    assert get_redis().mget(PAGES.epoch_keys(ws.tenant["id"])) == epochs

    ws.call("PATCH", f"/api/agents/{ws.admin['id']}/status", json={"status": "online"})
    hits = PAGES.hits
    mine = ws.call("GET", "/api/agents")
    assert PAGES.hits == hits and mine.json["items"][0]["status"] == "online"


def test_without_redis_answers_stay_right(workspace, redisless_process):
    ws = workspace
    for _ in range(2):
        status, body = redisless_process.get("/api/agents", ws.token)
        assert (status, body) == (200, ws.call("GET", "/api/agents").content)

    ws.call("PATCH", f"/api/agents/{ws.admin['id']}/status", json={"status": "online"})

    status, body = redisless_process.get("/api/agents", ws.token)
    assert status == 200 and json.loads(body)["items"][0]["status"] == "online"


# --- who may see a cached page -------------------------------------------------------------


def test_a_cached_page_is_never_another_tenants(workspace, other_workspace, other_process):
    for _ in range(2):
        theirs = other_workspace.call("GET", path(limit=50)).json["items"]
        other_process.get(path(limit=50), other_workspace.token)
    mine = workspace.call("GET", path(limit=50)).json["items"]
    _, there = other_process.get(path(limit=50), workspace.token)

    assert [item["id"] for item in mine] == [workspace.admin["id"]]
    assert json.loads(there)["items"] == mine
    assert {item["id"] for item in theirs} == {other_workspace.admin["id"]}


def test_credentials_are_checked_before_a_cached_page(workspace):
    ws = workspace
    for _ in range(2):
        assert ws.call("GET", "/api/agents").status_code == 200
    agent, token = ws.create_agent(role="admin")
    key = ws.call("POST", "/api/api-keys", token=token, json={"name": "k"}).json["key"]
    assert ws.client.simulate_get("/api/agents", headers={"X-API-Key": key}).status_code == 200

    assert ws.client.simulate_get("/api/agents").status_code == 401
    forged = ws.token[:-2] + ("BB" if ws.token.endswith("AA") else "AA")
    assert ws.call("GET", "/api/agents", token=forged).status_code == 401
    assert ws.call("DELETE", f"/api/agents/{agent['id']}").status_code == 204
    assert ws.client.simulate_get("/api/agents", headers={"X-API-Key": key}).status_code == 401
    assert ws.call("GET", "/api/agents", token=token).status_code == 401

    with session_scope() as session:
        session.execute(
            update(Tenant).where(Tenant.id == ws.tenant["id"]).values(status="suspended")
        )
    assert ws.call("GET", "/api/agents").status_code == 403

"""Divisions through HTTP: CRUD, membership, permissions, tenancy and deletion effects."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from shared.context import Ctx
from shared.db import get_sessionmaker, session_scope
from shared.identity import agents
from shared.inbox import divisions
from shared.models import DivisionMember
from shared.realtime import access
from tests.inbox_team.conftest import actions, conversation_division, make_conversation
from tests.lock_races import race

BASE = "/api/divisions"


def members_in_db(division_id: str) -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count()).where(DivisionMember.division_id == uuid.UUID(division_id))
        )


def test_division_lifecycle(workspace):
    ws = workspace
    created = ws.call("POST", BASE, json={"name": " Sales ", "description": "Closers"})
    assert created.status_code == 201, created.text
    division = created.json
    assert division["name"] == "Sales" and division["agents"] == []
    assert division["agent_count"] == 0

    dup = ws.call("POST", BASE, json={"name": "SALES"})
    assert dup.status_code == 409
    assert dup.json["error"]["details"] == [
        {"field": "name", "message": "already used in this workspace"}
    ]
    support = ws.call("POST", BASE, json={"name": "Support"}).json
    page = ws.call("GET", BASE, params={"limit": 1}).json
    assert [d["id"] for d in page["items"]] == [support["id"]]
    rest = ws.call("GET", BASE, params={"cursor": page["next_cursor"]}).json
    assert rest["items"] == [{k: v for k, v in division.items() if k != "agents"}]

    assert ws.call("GET", f"{BASE}/{division['id']}").json == division
    renamed = ws.call(
        "PATCH", f"{BASE}/{division['id']}", json={"name": "Sales EU", "description": ""}
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json["name"] == "Sales EU" and renamed.json["description"] == ""
    clash = ws.call("PATCH", f"{BASE}/{division['id']}", json={"name": "support"})
    assert clash.status_code == 409
    # Changing only the case of its own name is allowed.
    assert (
        ws.call("PATCH", f"{BASE}/{division['id']}", json={"name": "SALES EU"}).status_code == 200
    )

    assert ws.call("DELETE", f"{BASE}/{division['id']}").status_code == 204
    assert ws.call("GET", f"{BASE}/{division['id']}").status_code == 404
    assert ws.call("DELETE", f"{BASE}/{division['id']}").status_code == 404
    logged = [a.action for a in actions(ws, "division")]
    assert logged.count("division.created") == 2
    assert logged.count("division.updated") == 2 and logged.count("division.deleted") == 1


def test_membership_is_idempotent_and_counts_live_agents(workspace):
    ws = workspace
    a, _ = ws.create_agent(full_name="Ann")
    b, _ = ws.create_agent(full_name="Bob")
    division = ws.call("POST", BASE, json={"name": "Support"}).json
    path = f"{BASE}/{division['id']}/agents"

    added = ws.call("POST", path, json={"agent_ids": [a["id"], b["id"], a["id"]]})
    assert added.status_code == 200, added.text
    assert [m["full_name"] for m in added.json["agents"]] == ["Ann", "Bob"]
    assert added.json["agent_count"] == 2
    again = ws.call("POST", path, json={"agent_ids": [b["id"]]})
    assert again.status_code == 200 and again.json == added.json
    assert members_in_db(division["id"]) == 2

    page = ws.call("GET", path, params={"limit": 1}).json
    assert page["items"][0] == ws.call("GET", f"/api/agents/{b['id']}").json
    more = ws.call("GET", path, params={"cursor": page["next_cursor"]}).json
    assert [m["id"] for m in more["items"]] == [a["id"]] and more["next_cursor"] is None

    assert ws.call("DELETE", f"/api/agents/{b['id']}").status_code == 204
    detail = ws.call("GET", f"{BASE}/{division['id']}").json
    assert detail["agent_count"] == 1 and [m["id"] for m in detail["agents"]] == [a["id"]]
    assert ws.call("GET", BASE).json["items"][0]["agent_count"] == 1
    assert [m["id"] for m in ws.call("GET", path).json["items"]] == [a["id"]]

    removed = ws.call("DELETE", path, json={"agent_ids": [a["id"], str(uuid.uuid4())]})
    assert removed.status_code == 204
    assert ws.call("DELETE", path, json={"agent_ids": [a["id"]]}).status_code == 204
    assert ws.call("GET", f"{BASE}/{division['id']}").json["agents"] == []
    logged = [a.action for a in actions(ws, "division")]
    assert logged.count("division.agents_added") == 1
    assert logged.count("division.agents_removed") == 1


def test_bad_agent_ids_are_refused_as_a_whole(workspace, other_workspace):
    ws = workspace
    live, _ = ws.create_agent()
    gone, _ = ws.create_agent()
    ws.call("DELETE", f"/api/agents/{gone['id']}")
    division = ws.call("POST", BASE, json={"name": "Ops"}).json
    path = f"{BASE}/{division['id']}/agents"
    ids = [live["id"], other_workspace.admin["id"], str(uuid.uuid4()), gone["id"]]
    resp = ws.call("POST", path, json={"agent_ids": ids})
    assert resp.status_code == 422, resp.text
    assert [d["field"] for d in resp.json["error"]["details"]] == [
        "agent_ids[1]",
        "agent_ids[2]",
        "agent_ids[3]",
    ]
    assert members_in_db(division["id"]) == 0
    for body in (
        {"agent_ids": []},
        {"agent_ids": ["not-a-uuid"]},
        {"agent_ids": [str(uuid.uuid4())] * 501},
        {"agent_ids": live["id"]},
        {},
    ):
        for method in ("POST", "DELETE"):
            bad = ws.call(method, path, json=body)
            assert bad.status_code == 422, (method, body, bad.text)
    for body in (
        {"name": ""},
        {"name": "x" * 101},
        {"name": None},
        {"name": "nul\x00"},
        {"name": "n", "color": "red"},
    ):
        assert ws.call("POST", BASE, json=body).status_code == 422, body
        assert ws.call("PATCH", f"{BASE}/{division['id']}", json=body).status_code == 422, body
    assert ws.call("GET", BASE, params={"limit": 500}).status_code == 400


def test_only_agents_manage_changes_divisions(workspace):
    ws = workspace
    agent, token = ws.create_agent()
    _, supervisor_token = ws.create_agent(role="supervisor")
    division = ws.call("POST", BASE, json={"name": "Sales"}).json
    path = f"{BASE}/{division['id']}"
    body = {"agent_ids": [agent["id"]]}
    for t in (token, supervisor_token):
        for method, target, payload in (
            ("POST", BASE, {"name": "Mine"}),
            ("PATCH", path, {"name": "Mine"}),
            ("DELETE", path, None),
            ("POST", f"{path}/agents", body),
            ("DELETE", f"{path}/agents", body),
        ):
            resp = ws.call(method, target, token=t, json=payload)
            assert resp.status_code == 403, (method, target, resp.text)
            assert resp.json["error"]["code"] == "forbidden"
        assert ws.call("GET", BASE, token=t).json["items"][0]["id"] == division["id"]
        assert ws.call("GET", path, token=t).status_code == 200
        assert ws.call("GET", f"{path}/agents", token=t).json["items"] == []


def test_other_tenants_divisions_are_404(workspace, other_workspace):
    theirs = other_workspace.call("POST", BASE, json={"name": "Theirs"}).json
    path = f"{BASE}/{theirs['id']}"
    mine = [workspace.admin["id"]]
    for method, target, payload in (
        ("GET", path, None),
        ("PATCH", path, {"name": "Pwned"}),
        ("DELETE", path, None),
        ("GET", f"{path}/agents", None),
        ("POST", f"{path}/agents", {"agent_ids": mine}),
        ("DELETE", f"{path}/agents", {"agent_ids": [other_workspace.admin["id"]]}),
    ):
        resp = workspace.call(method, target, json=payload)
        assert resp.status_code == 404, (method, target, resp.text)
    assert workspace.call("GET", BASE).json["items"] == []
    # The same name is free in another workspace.
    assert workspace.call("POST", BASE, json={"name": "theirs"}).status_code == 201
    assert other_workspace.call("GET", path).json["name"] == "Theirs"


def test_deleting_a_division_keeps_its_conversations(workspace):
    ws = workspace
    agent, _ = ws.create_agent()
    division = ws.call("POST", BASE, json={"name": "Doomed"}).json
    ws.call("POST", f"{BASE}/{division['id']}/agents", json={"agent_ids": [agent["id"]]})
    conversation = make_conversation(ws, division_id=division["id"])
    assert conversation_division(conversation) == uuid.UUID(division["id"])
    assert members_in_db(division["id"]) == 1

    assert ws.call("DELETE", f"{BASE}/{division['id']}").status_code == 204
    assert conversation_division(conversation) is None
    assert members_in_db(division["id"]) == 0
    assert ws.call("GET", f"/api/agents/{agent['id']}").status_code == 200
    deleted = [a for a in actions(ws, "division") if a.action == "division.deleted"]
    assert deleted[0].before["name"] == "Doomed" and deleted[0].before["agent_count"] == 1


def test_deleting_a_division_moves_the_realtime_access_epoch(workspace):
    """The stream re-reads a tenant's agents' divisions when its access epoch moves;
    deleting a division drops memberships as removing a member does, and must move it too
    (it did not: the foreign key's cascade was invisible to the write tracker)."""
    ws = workspace
    agent, _ = ws.create_agent()
    tenant_id = uuid.UUID(ws.tenant["id"])
    division = ws.call("POST", BASE, json={"name": "Doomed"}).json
    ws.call("POST", f"{BASE}/{division['id']}/agents", json={"agent_ids": [agent["id"]]})

    before = access.epoch_tags([tenant_id])[tenant_id]
    assert ws.call("DELETE", f"{BASE}/{division['id']}").status_code == 204

    assert access.epoch_tags([tenant_id])[tenant_id] != before


def test_deleting_a_division_shows_in_its_conversations_updated_since(workspace):
    """A client syncing with ``updated_since`` must see that a conversation lost its
    division (the foreign key's SET NULL changed the row without touching updated_at)."""
    ws = workspace
    division = ws.call("POST", BASE, json={"name": "Doomed"}).json
    conversation = make_conversation(ws, division_id=division["id"])
    with session_scope() as session:
        mark = session.scalar(select(func.now()))
    since = {"updated_since": mark.isoformat()}
    assert ws.call("GET", "/api/conversations", params=since).json["items"] == []

    assert ws.call("DELETE", f"{BASE}/{division['id']}").status_code == 204
    synced = ws.call("GET", "/api/conversations", params=since).json["items"]
    assert [(c["id"], c["division_id"]) for c in synced] == [(conversation, None)]


def test_deleting_a_division_takes_the_sla_clock_of_its_policy(workspace):
    """A conversation that left the division no longer matches a policy for that division:
    its clock goes, as when a transfer moves it out (no breach for a policy it left)."""
    ws = workspace
    division = ws.call("POST", BASE, json={"name": "Escalations"}).json
    policy = ws.call(
        "POST",
        "/api/sla-policies",
        json={"name": "Escalated", "first_response_minutes": 15, "division_ids": [division["id"]]},
    )
    assert policy.status_code == 201, policy.text
    conversation = make_conversation(ws)
    moved = ws.call(
        "POST",
        f"/api/conversations/{conversation}/transfer",
        json={"to_division_id": division["id"]},
    )
    assert moved.status_code == 200, moved.text
    assert ws.call("GET", f"/api/conversations/{conversation}/sla").json["policy"] is not None

    assert ws.call("DELETE", f"{BASE}/{division['id']}").status_code == 204
    assert ws.call("GET", f"/api/conversations/{conversation}/sla").json["policy"] is None


def test_deleting_a_division_takes_it_off_the_sla_policies_naming_it(workspace):
    """The policies forget the deleted division; one left with none is switched off, not
    widened to every conversation (an empty list matches anything)."""
    ws = workspace
    doomed = ws.call("POST", BASE, json={"name": "Doomed"}).json["id"]
    kept = ws.call("POST", BASE, json={"name": "Kept"}).json["id"]

    def policy(name: str, division_ids: list[str]) -> dict:
        body = {"name": name, "first_response_minutes": 15, "division_ids": division_ids}
        resp = ws.call("POST", "/api/sla-policies", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json

    both = policy("Both", [doomed, kept])
    only = policy("Only doomed", [doomed])
    assert ws.call("DELETE", f"{BASE}/{doomed}").status_code == 204

    listed = {p["id"]: p for p in ws.call("GET", "/api/sla-policies").json["items"]}
    assert listed[both["id"]]["division_ids"] == [kept]
    assert listed[both["id"]]["is_active"] is True
    assert listed[only["id"]]["division_ids"] == []
    assert listed[only["id"]]["is_active"] is False
    # Saved back as read: no unknown division to refuse.
    resave = {"division_ids": listed[both["id"]]["division_ids"], "priority": 2}
    resp = ws.call("PATCH", f"/api/sla-policies/{both['id']}", json=resave)
    assert resp.status_code == 200, resp.text


def test_an_agent_created_into_a_division_being_deleted_keeps_no_membership_of_it(workspace):
    """Pins why agents._divisions needs no lock: memberships have a foreign key (ON DELETE
    CASCADE). The agent's creation, first and uncommitted, holds the division only for its
    key; the deletion's DELETE waits for it and the cascade drops the new membership. The
    agent stays, in no division; both commit."""
    ws = workspace
    doomed = ws.call("POST", BASE, json={"name": "Doomed"}).json["id"]
    ctx = Ctx.system(uuid.UUID(ws.tenant["id"]))
    creating = get_sessionmaker()()
    agent = agents.create_agent(
        creating,
        ctx,
        email="new.agent@example.com",
        full_name="New Agent",
        role="agent",
        password="correct horse battery",
        division_ids=[uuid.UUID(doomed)],
    )
    creating.flush()
    agent_id = agent.id

    def delete() -> str:
        try:
            with session_scope() as session:
                divisions.delete_division(session, ctx, uuid.UUID(doomed))
            return "deleted"
        except Exception as exc:  # reported by the test
            return repr(exc)

    assert race(creating, delete) == "deleted"
    assert members_in_db(doomed) == 0
    assert ws.call("GET", f"/api/agents/{agent_id}").status_code == 200


def test_a_name_is_taken_or_free_whatever_order_the_two_came_in(workspace, other_workspace):
    """The duplicate check lower-cased the new name in Python, the unique index in
    PostgreSQL: they disagree on some letters (final sigma, the digraph \u01c5), so
    "\u03c3\u03b1\u03c2" then "\u03a3\u0391\u03a3" was a 409 and the other order two
    divisions. The check now asks PostgreSQL, like the index: one answer either way."""
    for pair in (("\u03c3\u03b1\u03c2", "\u03a3\u0391\u03a3"), ("\u01c5a", "\u01c6a")):
        outcomes = []
        for ws, (first, second) in ((workspace, pair), (other_workspace, pair[::-1])):
            for name in (f"{first} c", f"{first} r"):
                assert ws.call("POST", BASE, json={"name": name}).status_code == 201
            created = ws.call("POST", BASE, json={"name": f"{second} c"})
            other = ws.call("POST", BASE, json={"name": "Other"}).json
            renamed = ws.call("PATCH", f"{BASE}/{other['id']}", json={"name": f"{second} r"})
            ws.call("DELETE", f"{BASE}/{other['id']}")
            outcomes.append((created.status_code, renamed.status_code))
        assert outcomes[0] == outcomes[1], (pair, outcomes)

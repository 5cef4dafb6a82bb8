"""Conversations through HTTP: list filters, visibility, assignment, status, read, tags."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, update

from shared.db import session_scope
from shared.models import User
from tests.cursors import crafted
from tests.inbox_conversations.conftest import (
    add_conversation,
    add_division,
    ago,
    events,
    row,
    set_columns,
)

LIST = "/api/conversations"


def ids(resp) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [item["id"] for item in resp.json["items"]]


def test_list_filters(workspace):
    ws = workspace
    agent, _ = ws.create_agent()
    division = add_division(ws, "Sales")
    account = uuid.uuid4()
    mine = add_conversation(ws, name="Zed Mine", assignee_id=ws.admin["id"], tags=["vip"])
    theirs = add_conversation(
        ws, channel="email", name="Olga", email="olga@example.org", assignee_id=agent["id"]
    )
    nobody = add_conversation(
        ws, name="Nora", phone="+14155550123", status="pending", division_id=division
    )
    unread = add_conversation(ws, name="Uma", inbound_count=3, integration_account_id=account)
    contact_id = row(mine).contact_id
    second = add_conversation(ws, contact_id=contact_id, status="resolved")

    everything = ids(ws.call("GET", LIST))
    # Newest first.
    assert everything == [second, unread, nobody, theirs, mine]
    cases = {
        "status=pending": [nobody],
        "status=resolved": [second],
        "channel=email": [theirs],
        "assignee_id=me": [mine],
        f"assignee_id={agent['id']}": [theirs],
        "assignee_id=none": [second, unread, nobody],
        f"division_id={division}": [nobody],
        "tag=VIP": [mine],
        f"contact_id={contact_id}": [second, mine],
        f"integration_account_id={account}": [unread],
        "q=olga@EXAMPLE": [theirs],
        "q=4155550": [nobody],
        "q=zed": [second, mine],
        "unread=true": [unread],
        "status=open&assignee_id=me": [mine],
    }
    for query, expected in cases.items():
        assert ids(ws.call("GET", LIST, query_string=query)) == expected, query
    set_columns(mine, updated_at=ago(days=2))
    recent = ids(ws.call("GET", LIST, params={"updated_since": ago(days=1).isoformat()}))
    assert mine not in recent and len(recent) == 4

    item = ws.call("GET", LIST, query_string="unread=true").json["items"][0]
    assert item["unread_count"] == 3
    assert item["contact"]["name"] == "Uma" and item["contact"]["channel"] == "whatsapp"
    assert "inbound_count" not in item


def test_search_written_as_a_phone_number_finds_the_contact(workspace):
    # Contacts store phones compact (+14155550177); the inbox search is pasted as written.
    ws = workspace
    wanted = add_conversation(ws, name="Pat", phone="+14155550177")
    add_conversation(ws, name="Other", phone="+442071838750")
    for written in ("+1 (415) 555-0177", "415.555.0177", "555 0177"):
        assert ids(ws.call("GET", LIST, params={"q": written})) == [wanted], written


def test_list_cursor_paging_and_bad_queries(workspace):
    ws = workspace
    created = [add_conversation(ws) for _ in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = ws.call("GET", LIST, params=params).json
        assert len(page["items"]) <= 2
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created[::-1]
    for query in (
        "assignee_id=someone",
        "status=closed",
        "channel=fax",
        "limit=0",
        "cursor=!!",
        "cursor=" + crafted('["2024-01-01T00:00:00+00:00", 5]'),  # an id that is a number
        "cursor=" + crafted(f'[1, "{uuid.uuid4()}"]'),  # a time that is a number
        "unread=maybe",
        "updated_since=yesterday",
        "tag=<b>",
        "colour=red",
    ):
        resp = ws.call("GET", LIST, query_string=query)
        assert resp.status_code == 400, (query, resp.text)
        assert resp.json["error"]["code"] == "bad_request"


def test_get_one_matches_the_list_item_and_hides_other_tenants(workspace, other_workspace):
    ws = workspace
    conversation = add_conversation(ws, inbound_count=2, tags=["a"])
    listed = ws.call("GET", LIST).json["items"][0]
    single = ws.call("GET", f"{LIST}/{conversation}")
    assert single.status_code == 200 and single.json == listed
    assert single.json["unread_count"] == 2
    foreign = add_conversation(other_workspace)
    assert ws.call("GET", f"{LIST}/{foreign}").status_code == 404
    assert ws.call("GET", f"{LIST}/{uuid.uuid4()}").status_code == 404
    assert ws.call("GET", f"{LIST}/not-a-uuid").status_code == 404
    assert foreign not in ids(ws.call("GET", LIST))


def test_visibility_without_conversations_manage(workspace):
    ws = workspace
    agent, token = ws.create_agent()
    _, loner_token = ws.create_agent()
    peer, _ = ws.create_agent()
    support = add_division(ws, "Support", agent["id"])
    sales = add_division(ws, "Sales")
    own = add_conversation(ws, assignee_id=agent["id"])
    queue = add_conversation(ws, division_id=support)
    other_queue = add_conversation(ws, division_id=sales)
    peers = add_conversation(ws, assignee_id=peer["id"])
    no_division = add_conversation(ws)

    assert set(ids(ws.call("GET", LIST, token=token))) == {own, queue}
    # In no division: every unassigned conversation, never another agent's.
    assert set(ids(ws.call("GET", LIST, token=loner_token))) == {queue, other_queue, no_division}
    for hidden in (peers, other_queue, no_division):
        assert ws.call("GET", f"{LIST}/{hidden}", token=token).status_code == 404
        resp = ws.call("PATCH", f"{LIST}/{hidden}/status", token=token, json={"status": "pending"})
        assert resp.status_code == 404
    assert (
        ws.call("GET", LIST, token=token, query_string=f"assignee_id={peer['id']}").json["items"]
        == []
    )
    assert len(ids(ws.call("GET", LIST))) == 5


def test_assignment_rules(workspace, other_workspace):
    ws = workspace
    agent, token = ws.create_agent()
    peer, peer_token = ws.create_agent()
    conversation = add_conversation(ws)
    path = f"{LIST}/{conversation}/assignment"

    claim = ws.call("PATCH", path, token=token, json={"assignee_id": agent["id"]})
    assert claim.status_code == 200 and claim.json["assignee_id"] == agent["id"]
    # Now it is the agent's: the peer cannot see it, the agent cannot hand it on alone.
    assert (
        ws.call("PATCH", path, token=peer_token, json={"assignee_id": peer["id"]}).status_code
        == 404
    )
    handoff = ws.call("PATCH", path, token=token, json={"assignee_id": peer["id"]})
    assert handoff.status_code == 403 and handoff.json["error"]["code"] == "forbidden"
    assert ws.call("PATCH", path, token=token, json={"assignee_id": None}).status_code == 403
    other = add_conversation(ws)
    resp = ws.call(
        "PATCH", f"{LIST}/{other}/assignment", token=token, json={"assignee_id": peer["id"]}
    )
    assert resp.status_code == 403

    by_admin = ws.call("PATCH", path, json={"assignee_id": peer["id"]})
    assert by_admin.status_code == 200 and by_admin.json["assignee_id"] == peer["id"]
    unchanged = ws.call("PATCH", path, json={"assignee_id": peer["id"]})
    assert unchanged.status_code == 200
    assert ws.call("PATCH", path, json={"assignee_id": None}).json["assignee_id"] is None

    assigned = [e.data for e in events(ws, "conversation.assigned")]
    assert [(e["assignee_id"], e["previous_assignee_id"]) for e in assigned] == [
        (agent["id"], None),
        (peer["id"], agent["id"]),
    ]
    [unassigned] = events(ws, "conversation.unassigned")
    assert unassigned.data["previous_assignee_id"] == peer["id"]
    assert unassigned.data["id"] == conversation

    foreign_agent = other_workspace.admin["id"]
    bad = ws.call("PATCH", path, json={"assignee_id": foreign_agent})
    assert bad.status_code == 422
    assert bad.json["error"]["details"] == [
        {"field": "assignee_id", "message": "no such agent in this workspace"}
    ]
    assert ws.call("PATCH", path, json={}).status_code == 422
    assert ws.call("PATCH", path, json={"assignee_id": "x"}).status_code == 422
    foreign = add_conversation(other_workspace)
    resp = ws.call("PATCH", f"{LIST}/{foreign}/assignment", json={"assignee_id": ws.admin["id"]})
    assert resp.status_code == 404


LEGAL = [
    ("open", "pending"),
    ("open", "snoozed"),
    ("open", "resolved"),
    ("pending", "open"),
    ("pending", "snoozed"),
    ("pending", "resolved"),
    ("snoozed", "open"),
    ("snoozed", "pending"),
    ("snoozed", "resolved"),
    ("resolved", "open"),
]
ILLEGAL = [("resolved", "pending"), ("resolved", "snoozed")]


def _start_in(ws, status: str) -> str:
    extra = {"snoozed_until": ago(hours=-1)} if status == "snoozed" else {}
    if status == "resolved":
        extra = {"resolved_at": ago(hours=1), "resolution_reason": "resolved"}
    return add_conversation(ws, status=status, **extra)


@pytest.mark.parametrize(("start", "to"), LEGAL)
def test_legal_transitions(workspace, start, to):
    ws = workspace
    conversation = _start_in(ws, start)
    body = {"status": to}
    if to == "snoozed":
        body["snoozed_until"] = ago(hours=-2).isoformat()
    resp = ws.call("PATCH", f"{LIST}/{conversation}/status", json=body)
    assert resp.status_code == 200, resp.text
    data = resp.json
    assert data["status"] == to
    assert (data["snoozed_until"] is not None) == (to == "snoozed")
    assert (data["resolved_at"] is not None) == (to == "resolved")
    assert data["resolution_reason"] == ("resolved" if to == "resolved" else None)
    [event] = events(ws, "conversation.status_changed")
    assert event.data["previous_status"] == start and event.data["status"] == to
    assert event.actor_type == "user"


@pytest.mark.parametrize(("start", "to"), ILLEGAL)
def test_illegal_transitions_answer_409_naming_both(workspace, start, to):
    ws = workspace
    conversation = _start_in(ws, start)
    body = {"status": to} | (
        {"snoozed_until": ago(hours=-2).isoformat()} if to == "snoozed" else {}
    )
    resp = ws.call("PATCH", f"{LIST}/{conversation}/status", json=body)
    assert resp.status_code == 409
    assert start in resp.json["error"]["message"] and to in resp.json["error"]["message"]
    assert row(conversation).status == start
    assert events(ws, "conversation.status_changed") == []


def test_status_input_rules(workspace, other_workspace):
    ws = workspace
    conversation = add_conversation(ws)
    path = f"{LIST}/{conversation}/status"
    for body, field in (
        ({"status": "closed"}, "status"),
        ({"status": "snoozed"}, "snoozed_until"),
        ({"status": "snoozed", "snoozed_until": ago(minutes=1).isoformat()}, "snoozed_until"),
        ({"status": "pending", "snoozed_until": ago(hours=-1).isoformat()}, "snoozed_until"),
        ({"status": "snoozed", "snoozed_until": "2030-01-01T00:00:00"}, "snoozed_until"),
    ):
        resp = ws.call("PATCH", path, json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["error"]["details"][0]["field"] == field
    # Same status: no change, no event.
    assert ws.call("PATCH", path, json={"status": "open"}).status_code == 200
    assert events(ws, "conversation.status_changed") == []
    # Resolve then reopen: resolved_at and the reason are cleared again.
    assert ws.call("PATCH", path, json={"status": "resolved"}).json["resolved_at"]
    reopened = ws.call("PATCH", path, json={"status": "open"}).json
    assert reopened["resolved_at"] is None and reopened["resolution_reason"] is None
    foreign = add_conversation(other_workspace)
    assert (
        ws.call("PATCH", f"{LIST}/{foreign}/status", json={"status": "pending"}).status_code == 404
    )


def test_read_state_per_agent(workspace, other_workspace):
    ws = workspace
    agent, token = ws.create_agent()
    conversation = add_conversation(ws, inbound_count=4)
    assert ws.call("GET", f"{LIST}/{conversation}", token=token).json["unread_count"] == 4
    read = ws.call("POST", f"{LIST}/{conversation}/read", token=token)
    assert read.status_code == 200, read.text
    assert read.json["unread_count"] == 0 and read.json["read_inbound_count"] == 4
    assert ws.call("GET", f"{LIST}/{conversation}", token=token).json["unread_count"] == 0
    # Per agent: the admin has still read nothing.
    assert ws.call("GET", f"{LIST}/{conversation}").json["unread_count"] == 4
    assert ids(ws.call("GET", LIST, token=token, query_string="unread=true")) == []
    set_columns(conversation, inbound_count=6)
    assert ws.call("GET", f"{LIST}/{conversation}", token=token).json["unread_count"] == 2
    ws.call("POST", f"{LIST}/{conversation}/read", token=token)
    ws.call("POST", f"{LIST}/{conversation}/read", token=token)  # nothing new: no event
    reads = events(ws, "conversation.read")
    assert [(e.data["reader_id"], e.data["read_inbound_count"]) for e in reads] == [
        (agent["id"], 4),
        (agent["id"], 6),
    ]
    foreign = add_conversation(other_workspace)
    assert ws.call("POST", f"{LIST}/{foreign}/read").status_code == 404
    hidden = add_conversation(ws, assignee_id=ws.admin["id"])
    assert ws.call("POST", f"{LIST}/{hidden}/read", token=token).status_code == 404


def test_tags(workspace, other_workspace):
    ws = workspace
    conversation = add_conversation(ws, tags=["old"])
    path = f"{LIST}/{conversation}/tags"
    replaced = ws.call("PATCH", path, json={"tags": ["  VIP ", "Billing  Issue", "vip"]})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json["tags"] == ["vip", "billing issue"]
    edited = ws.call("PATCH", path, json={"add": ["Urgent", "vip"], "remove": ["billing issue"]})
    assert edited.json["tags"] == ["vip", "urgent"]
    assert ws.call("PATCH", path, json={"add": ["vip"]}).status_code == 200  # no change
    updates = events(ws, "conversation.tags_updated")
    assert [(e.data["added"], e.data["removed"]) for e in updates] == [
        (["vip", "billing issue"], ["old"]),
        (["urgent"], ["billing issue"]),
    ]

    for body, field in (
        ({"add": ["ok", "<script>"]}, "add[1]"),
        ({"tags": [""]}, "tags[0]"),
        ({"tags": ["x" * 65]}, "tags[0]"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"tags": ["a"], "add": ["b"]}, "body"),
        ({}, "body"),
        ({"colour": ["red"]}, "colour"),
    ):
        resp = ws.call("PATCH", path, json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["error"]["details"][0]["field"] == field, resp.json
    set_columns(conversation, tags=[f"t{i}" for i in range(20)])
    full = ws.call("PATCH", path, json={"add": ["one-more"]})
    assert full.status_code == 422
    assert full.json["error"]["details"] == [
        {"field": "add", "message": "at most 20 tags per conversation"}
    ]
    foreign = add_conversation(other_workspace)
    assert ws.call("PATCH", f"{LIST}/{foreign}/tags", json={"add": ["x"]}).status_code == 404


def test_every_change_writes_an_activity_row(workspace):
    ws = workspace
    conversation = add_conversation(ws, inbound_count=1)
    ws.call("PATCH", f"{LIST}/{conversation}/assignment", json={"assignee_id": ws.admin["id"]})
    ws.call("PATCH", f"{LIST}/{conversation}/status", json={"status": "pending"})
    ws.call("PATCH", f"{LIST}/{conversation}/tags", json={"add": ["x"]})
    ws.call("POST", f"{LIST}/{conversation}/read")
    logs = ws.call("GET", "/api/activity-logs", params={"entity_id": conversation}).json["items"]
    assert {log["action"] for log in logs} == {
        "conversation.assigned",
        "conversation.status_changed",
        "conversation.tags_updated",
        "conversation.read",
    }
    status = next(log for log in logs if log["action"] == "conversation.status_changed")
    assert status["before"]["status"] == "open" and status["after"]["status"] == "pending"


def test_a_suspended_agent_takes_no_new_conversations(workspace):
    ws = workspace
    agent, _ = ws.create_agent()
    with session_scope() as session:
        session.execute(
            update(User).where(User.id == uuid.UUID(agent["id"])).values(suspended_at=func.now())
        )
    conversation = add_conversation(ws)

    for method, path, body, field in (
        ("PATCH", f"{LIST}/{conversation}/assignment", {"assignee_id": agent["id"]}, "assignee_id"),
        ("POST", f"{LIST}/{conversation}/transfer", {"to_agent_id": agent["id"]}, "to_agent_id"),
    ):
        refused = ws.call(method, path, json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json["error"]["details"] == [
            {"field": field, "message": "the agent is suspended"}
        ]
    assert row(conversation).assignee_id is None

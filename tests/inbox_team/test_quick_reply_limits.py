"""Caps on quick replies: the list's search scans every visible reply, so their number is
bounded (shared per workspace, personal per agent), on create and on import, under a lock."""

from __future__ import annotations

import uuid

from shared.context import Ctx
from shared.db import get_sessionmaker
from shared.events import Actor
from shared.inbox import quick_replies
from tests.lock_races import race

BASE = "/api/quick-replies"
CSV = {"Content-Type": "text/csv"}


def post(ws, shortcut, token=None, scope="personal"):
    body = {"shortcut": shortcut, "title": "T", "content": "C", "scope": scope}
    return ws.call("POST", BASE, token=token, json=body)


def upload(ws, rows: str):
    body = ("shortcut,title,content\r\n" + rows).encode()
    return ws.call("POST", f"{BASE}/import", body=body, headers=CSV)


def shared(ws) -> dict[str, str]:
    items = ws.call("GET", BASE, params={"scope": "shared"}).json["items"]
    return {r["shortcut"]: r["content"] for r in items}


def test_the_defaults_are_what_one_full_import_and_the_scan_allow():
    assert quick_replies.MAX_SHARED == 5000 and quick_replies.MAX_PERSONAL == 500


def test_a_workspace_has_a_bounded_number_of_shared_replies(
    workspace, other_workspace, monkeypatch
):
    monkeypatch.setattr(quick_replies, "MAX_SHARED", 2)
    ws = workspace
    for shortcut in ("a", "b"):
        assert post(ws, shortcut, scope="shared").status_code == 201
    refused = post(ws, "c", scope="shared")
    assert refused.status_code == 422, refused.text
    error = refused.json["error"]
    assert error["code"] == "quick_reply_limit" and "at most 2 shared" in error["message"]
    assert error["details"] == [{"field": "body", "message": "at most 2 shared quick replies"}]
    assert set(shared(ws)) == {"a", "b"}
    # Personal replies and another workspace's shared ones count apart.
    assert post(ws, "mine").status_code == 201
    assert post(other_workspace, "c", scope="shared").status_code == 201
    # A freed place can be taken again.
    first = ws.call("GET", BASE, params={"scope": "shared"}).json["items"][0]
    assert ws.call("DELETE", f"{BASE}/{first['id']}").status_code == 204
    assert post(ws, "c", scope="shared").status_code == 201


def test_an_import_passing_the_cap_is_refused_whole(workspace, monkeypatch):
    monkeypatch.setattr(quick_replies, "MAX_SHARED", 3)
    ws = workspace
    assert upload(ws, "a,T,old\r\nb,T,old\r\n").status_code == 200
    # One update and two new replies would make four.
    refused = upload(ws, "a,T,new\r\nc,T,new\r\nd,T,new\r\n")
    assert refused.status_code == 422, refused.text
    error = refused.json["error"]
    assert error["code"] == "quick_reply_limit" and "at most 3 shared" in error["message"]
    assert error["details"] == [
        {"field": "file", "message": "2 new replies with 2 existing pass the limit of 3"}
    ]
    assert shared(ws) == {"a": "old", "b": "old"}  # nothing written, not even the update
    # Rows updating existing replies take no new place.
    fits = upload(ws, "a,T,new\r\nb,T,new\r\nc,T,new\r\n")
    assert fits.json == {"created": 1, "updated": 2, "unchanged": 0}


def test_an_agent_has_a_bounded_number_of_personal_replies(workspace, monkeypatch):
    monkeypatch.setattr(quick_replies, "MAX_PERSONAL", 2)
    ws = workspace
    _, token = ws.create_agent()
    _, peer_token = ws.create_agent()
    for shortcut in ("a", "b"):
        assert post(ws, shortcut, token).status_code == 201
    refused = post(ws, "c", token)
    assert refused.status_code == 422, refused.text
    error = refused.json["error"]
    assert error["code"] == "quick_reply_limit" and "at most 2 personal" in error["message"]
    assert error["details"] == [{"field": "body", "message": "at most 2 personal quick replies"}]
    # Each agent has their own allowance, and shared replies count apart.
    assert post(ws, "c", peer_token).status_code == 201
    assert post(ws, "c", scope="shared").status_code == 201


def test_two_personal_creates_at_once_do_not_both_pass_the_count(workspace, monkeypatch):
    monkeypatch.setattr(quick_replies, "MAX_PERSONAL", 1)
    ws = workspace
    agent, token = ws.create_agent()
    user_id = uuid.UUID(agent["id"])
    ctx = Ctx(uuid.UUID(ws.tenant["id"]), Actor("user", user_id), user_id=user_id)
    creating = get_sessionmaker()()
    quick_replies.create_quick_reply(creating, ctx, shortcut="first", title="T", content="C")
    answered = race(creating, lambda: post(ws, "second", token))
    assert answered.status_code == 422, answered.text
    assert answered.json["error"]["code"] == "quick_reply_limit"
    mine = ws.call("GET", BASE, token=token).json["items"]
    assert [r["shortcut"] for r in mine] == ["first"]


def test_two_shared_creates_at_once_do_not_both_pass_the_count(workspace, monkeypatch):
    monkeypatch.setattr(quick_replies, "MAX_SHARED", 1)
    ws = workspace
    ctx = Ctx.system(uuid.UUID(ws.tenant["id"]))
    creating = get_sessionmaker()()
    quick_replies.create_quick_reply(
        creating, ctx, shortcut="first", title="T", content="C", scope="shared"
    )
    answered = race(creating, lambda: post(ws, "second", scope="shared"))
    assert answered.status_code == 422, answered.text
    assert set(shared(ws)) == {"first"}

"""Quick replies through HTTP: scopes, ownership, favorites, usage, listing."""

from __future__ import annotations

import uuid

from tests.cursors import crafted
from tests.inbox_team.conftest import actions

BASE = "/api/quick-replies"


def create(ws, token=None, **fields):
    body = {"shortcut": "hello", "title": "Hello", "content": "Hi there!"} | fields
    resp = ws.call("POST", BASE, token=token, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json


def listed(ws, token=None, **params) -> list[dict]:
    resp = ws.call("GET", BASE, token=token, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json["items"]


def test_personal_reply_lifecycle(workspace):
    ws = workspace
    agent, token = ws.create_agent()
    reply = create(ws, token, shortcut=" Hello-World_1 ", title=" Greeting ")
    assert reply["shortcut"] == "hello-world_1" and reply["title"] == "Greeting"
    assert reply["scope"] == "personal" and reply["owner_id"] == agent["id"]
    assert reply["is_favorite"] is False and reply["my_usage_count"] == 0
    assert reply["usage_count"] == 0 and reply["last_used_at"] is None
    assert listed(ws, token) == [reply]

    updated = ws.call("PATCH", f"{BASE}/{reply['id']}", token=token, json={"content": "Hey!"})
    assert updated.status_code == 200, updated.text
    assert updated.json["content"] == "Hey!" and updated.json["title"] == "Greeting"
    assert ws.call("DELETE", f"{BASE}/{reply['id']}", token=token).status_code == 204
    assert listed(ws, token) == []
    assert ws.call("DELETE", f"{BASE}/{reply['id']}", token=token).status_code == 404
    logged = [a.action for a in actions(ws, "quick_reply")]
    assert logged == ["quick_reply.created", "quick_reply.updated", "quick_reply.deleted"]


def test_shared_replies_need_quick_replies_manage(workspace):
    ws = workspace
    _, agent_token = ws.create_agent()
    _, supervisor_token = ws.create_agent(role="supervisor")
    denied = ws.call(
        "POST",
        BASE,
        token=agent_token,
        json={"shortcut": "s", "title": "t", "content": "c", "scope": "shared"},
    )
    assert denied.status_code == 403 and denied.json["error"]["code"] == "forbidden"
    shared = create(ws, supervisor_token, shortcut="prices", scope="shared")
    assert shared["owner_id"] is None
    assert [r["id"] for r in listed(ws, agent_token)] == [shared["id"]]

    path = f"{BASE}/{shared['id']}"
    assert ws.call("PATCH", path, token=agent_token, json={"title": "x"}).status_code == 403
    assert ws.call("DELETE", path, token=agent_token).status_code == 403
    # Using and favoriting a shared reply is for everyone.
    assert ws.call("POST", f"{path}/usage", token=agent_token).status_code == 200
    assert ws.call("POST", f"{path}/favorite", token=agent_token).status_code == 200
    renamed = ws.call("PATCH", path, token=supervisor_token, json={"title": "Prices 2025"})
    assert renamed.status_code == 200 and renamed.json["title"] == "Prices 2025"
    assert ws.call("DELETE", path, token=supervisor_token).status_code == 204


def test_another_agents_personal_reply_is_invisible(workspace):
    ws = workspace
    _, owner_token = ws.create_agent()
    _, peer_token = ws.create_agent()
    reply = create(ws, owner_token)
    path = f"{BASE}/{reply['id']}"
    for token in (peer_token, None):  # not even an admin sees it
        assert listed(ws, token) == []
        for method, suffix, body in (
            ("PATCH", "", {"title": "mine now"}),
            ("DELETE", "", None),
            ("POST", "/usage", None),
            ("POST", "/favorite", None),
            ("DELETE", "/favorite", None),
        ):
            resp = ws.call(method, path + suffix, token=token, json=body)
            assert resp.status_code == 404, (method, suffix, resp.text)
    assert listed(ws, owner_token)[0]["title"] == "Hello"


def test_other_tenants_replies_are_404(workspace, other_workspace):
    theirs = create(other_workspace, shortcut="theirs", scope="shared")
    path = f"{BASE}/{theirs['id']}"
    for method, suffix, body in (
        ("PATCH", "", {"title": "pwned"}),
        ("DELETE", "", None),
        ("POST", "/usage", None),
        ("POST", "/favorite", None),
        ("DELETE", "/favorite", None),
    ):
        resp = workspace.call(method, path + suffix, json=body)
        assert resp.status_code == 404, (method, suffix, resp.text)
    assert listed(workspace) == []
    assert listed(other_workspace)[0]["title"] == "Hello"


def test_shortcuts_are_checked_and_unique_per_scope(workspace):
    ws = workspace
    agent, token = ws.create_agent()
    _, peer_token = ws.create_agent()
    create(ws, shortcut="Hello", scope="shared")
    dup = ws.call(
        "POST",
        BASE,
        json={"shortcut": "HELLO", "title": "t", "content": "c", "scope": "shared"},
    )
    assert dup.status_code == 409, dup.text
    assert dup.json["error"]["details"] == [
        {"field": "shortcut", "message": "already used in this scope"}
    ]
    # The same shortcut is free in each agent's personal scope, once.
    mine = create(ws, token, shortcut="hello")
    create(ws, peer_token, shortcut="hello")
    assert (
        ws.call(
            "POST", BASE, token=token, json={"shortcut": "hello", "title": "t", "content": "c"}
        ).status_code
        == 409
    )
    other = create(ws, token, shortcut="other")
    clash = ws.call("PATCH", f"{BASE}/{other['id']}", token=token, json={"shortcut": "HELLO"})
    assert clash.status_code == 409
    assert clash.json["error"]["details"][0]["field"] == "shortcut"
    assert mine["owner_id"] == agent["id"]


def test_bad_quick_reply_input(workspace):
    ws = workspace
    good = {"shortcut": "ok", "title": "t", "content": "c"}
    for changes, field in (
        ({"shortcut": "two words"}, "shortcut"),
        ({"shortcut": ""}, "shortcut"),
        ({"shortcut": "x" * 65}, "shortcut"),
        ({"shortcut": "émoji"}, "shortcut"),
        ({"title": "  "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"content": "x" * 4097}, "content"),
        ({"content": "a\x00b"}, "content"),
        ({"scope": "team"}, "scope"),
        ({"owner_id": str(uuid.uuid4())}, "owner_id"),
    ):
        resp = ws.call("POST", BASE, json=good | changes)
        assert resp.status_code == 422, (changes, resp.text)
        assert resp.json["error"]["details"][0]["field"] == field
    missing = ws.call("POST", BASE, json={"shortcut": "ok"})
    assert {d["field"] for d in missing.json["error"]["details"]} == {"title", "content"}
    reply = create(ws)
    for changes in ({"title": None}, {"shortcut": "a b"}, {"scope": "shared"}, {"content": ""}):
        resp = ws.call("PATCH", f"{BASE}/{reply['id']}", json=changes)
        assert resp.status_code == 422, (changes, resp.text)
    for params in ({"scope": "team"}, {"sort": "newest"}, {"favorites": "maybe"}, {"limit": 0}):
        assert ws.call("GET", BASE, params=params).status_code == 400, params


def test_usage_is_counted_per_agent_and_in_total(workspace):
    ws = workspace
    _, a_token = ws.create_agent()
    _, b_token = ws.create_agent()
    reply = create(ws, shortcut="thanks", scope="shared")
    path = f"{BASE}/{reply['id']}/usage"
    ws.call("POST", path, token=a_token)
    used = ws.call("POST", path, token=a_token)
    assert used.status_code == 200, used.text
    assert used.json["usage_count"] == 2 and used.json["my_usage_count"] == 2
    assert used.json["last_used_at"] is not None and used.json["my_last_used_at"] is not None
    by_b = ws.call("POST", path, token=b_token).json
    assert by_b["usage_count"] == 3 and by_b["my_usage_count"] == 1
    assert listed(ws)[0]["usage_count"] == 3 and listed(ws)[0]["my_usage_count"] == 0
    assert [a.action for a in actions(ws, "quick_reply")].count("quick_reply.used") == 3


def test_favorites_are_per_agent_and_idempotent(workspace):
    ws = workspace
    _, a_token = ws.create_agent()
    _, b_token = ws.create_agent()
    liked = create(ws, shortcut="liked", scope="shared")
    create(ws, shortcut="plain", scope="shared")
    path = f"{BASE}/{liked['id']}/favorite"
    for _ in range(2):
        resp = ws.call("POST", path, token=a_token)
        assert resp.status_code == 200 and resp.json["is_favorite"] is True
    assert [r["id"] for r in listed(ws, a_token, favorites="true")] == [liked["id"]]
    assert listed(ws, b_token, favorites="true") == []
    assert [r["is_favorite"] for r in listed(ws, b_token)] == [False, False]
    for _ in range(2):
        assert ws.call("DELETE", path, token=a_token).status_code == 204
    assert listed(ws, a_token, favorites="true") == []
    # Removing a favorite that never was one is a no-op too.
    assert ws.call("DELETE", path, token=b_token).status_code == 204
    logged = [a.action for a in actions(ws, "quick_reply")]
    assert logged.count("quick_reply.favorited") == 1
    assert logged.count("quick_reply.unfavorited") == 1


def test_list_filters_sorts_and_pages(workspace):
    ws = workspace
    _, token = ws.create_agent()
    alpha = create(ws, shortcut="alpha", title="Opening hours", content="9 to 5", scope="shared")
    beta = create(ws, shortcut="beta", title="Refunds", content="100% within 30 days")
    gamma = create(ws, token, shortcut="gamma", title="Mine", content="personal text")
    delta = create(ws, shortcut="delta", title="Shipping", content="2 days", scope="shared")
    ws.call("POST", f"{BASE}/{delta['id']}/usage")
    ws.call("POST", f"{BASE}/{delta['id']}/usage")
    ws.call("POST", f"{BASE}/{beta['id']}/usage")

    assert [r["shortcut"] for r in listed(ws)] == ["alpha", "beta", "delta"]
    assert [r["shortcut"] for r in listed(ws, token)] == ["alpha", "delta", "gamma"]
    assert [r["id"] for r in listed(ws, q="HOURS")] == [alpha["id"]]
    assert [r["id"] for r in listed(ws, q="100%")] == [beta["id"]]
    assert listed(ws, q="_") == []
    assert [r["id"] for r in listed(ws, token, scope="personal")] == [gamma["id"]]
    assert [r["shortcut"] for r in listed(ws, sort="most_used")] == ["delta", "beta", "alpha"]

    for sort, expected in (("shortcut", ["alpha", "beta", "delta"]), ("most_used", None)):
        seen, cursor = [], None
        while True:
            params = {"limit": 1, "sort": sort} | ({"cursor": cursor} if cursor else {})
            page = ws.call("GET", BASE, params=params).json
            seen += [r["shortcut"] for r in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == (expected or ["delta", "beta", "alpha"])

    first = ws.call("GET", BASE, params={"limit": 1}).json["next_cursor"]
    crossed = ws.call("GET", BASE, params={"cursor": first, "sort": "most_used"})
    assert crossed.status_code == 400
    assert ws.call("GET", BASE, params={"cursor": "garbage"}).status_code == 400
    row_id = str(uuid.uuid4())
    for sort, raw in (
        ("most_used", f'["most_used", 1e400, "a", "{row_id}"]'),  # int() overflows
        ("most_used", '["most_used", 1, "a", 5]'),  # an id that is a number
        ("most_used", f'["most_used", true, "a", "{row_id}"]'),
        ("shortcut", '["shortcut", "a", 5]'),
        # text PostgreSQL cannot hold, and a count no bigint holds: still not cursors
        ("shortcut", f'["shortcut", "a\\u0000", "{row_id}"]'),
        ("most_used", f'["most_used", 1, "a\\u0000", "{row_id}"]'),
        ("most_used", f'["most_used", {10**40}, "a", "{row_id}"]'),
    ):
        resp = ws.call("GET", BASE, params={"sort": sort, "cursor": crafted(raw)})
        assert resp.status_code == 400, (raw, resp.text)


def test_a_cursor_shortcut_holding_half_an_emoji_is_400(workspace):
    """A crafted cursor's shortcut with a lone UTF-16 surrogate is no text the driver can
    send: the page query failed to encode it, a 500 instead of the bad cursor's 400."""
    row_id = str(uuid.uuid4())
    for sort, raw in (
        ("shortcut", f'["shortcut", "a\\ud800", "{row_id}"]'),
        ("most_used", f'["most_used", 1, "\\udfff", "{row_id}"]'),
    ):
        resp = workspace.call("GET", BASE, params={"sort": sort, "cursor": crafted(raw)})
        assert resp.status_code == 400, (raw, resp.text)
        assert resp.json["error"]["details"] == [{"field": "cursor", "message": "not a cursor"}]

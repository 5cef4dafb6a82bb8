"""Message search through HTTP: ranking, highlights, filters, paging and visibility."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import text

from shared.db import session_scope
from shared.inbox import search
from shared.models import Message
from tests.cursors import crafted

SEARCH = "/api/messages/search"


def _search(ws, token=None, **params):
    resp = ws.call("GET", SEARCH, params=params, token=token)
    assert resp.status_code == 200, resp.text
    return resp.json


def test_ranking_snippets_and_refs(workspace, inbox):
    contact = inbox.contact(name="Rita Refund")
    conversation = inbox.conversation(contact)
    weak = inbox.message(conversation, "My parcel never arrived, please check the refund.")
    strong = inbox.message(conversation, "refund refund: I want a refund for order 123")
    inbox.message(conversation, "Nothing to see here")
    hits = _search(workspace, q="refund")["items"]
    assert [h["message"]["id"] for h in hits] == [str(strong), str(weak)]
    assert hits[0]["rank"] > hits[1]["rank"]
    assert "<mark>refund</mark>" in hits[0]["highlight"]
    assert hits[0]["conversation"]["id"] == str(conversation["id"])
    assert hits[0]["contact"] == {
        "id": str(contact["id"]),
        "name": "Rita Refund",
        "channel": "whatsapp",
        "phone": contact["phone"],
        "email": None,
        "avatar_url": None,
    }
    phrase = _search(workspace, q='"order 123"')["items"]
    assert [h["message"]["id"] for h in phrase] == [str(strong)]
    excluded = _search(workspace, q="refund -parcel")["items"]
    assert [h["message"]["id"] for h in excluded] == [str(strong)]


def test_highlights_are_html_escaped(workspace, inbox):
    conversation = inbox.conversation()
    inbox.message(conversation, "hacker says 5 > 3 & 2 < 4 \x02 payload")
    hit = _search(workspace, q="hacker")["items"][0]
    assert "&amp;" in hit["highlight"] and "&gt;" in hit["highlight"]
    assert "&" not in hit["highlight"].replace("&amp;", "").replace("&gt;", "").replace("&lt;", "")
    assert "<mark>hacker</mark>" in hit["highlight"] and "\x02" not in hit["highlight"]


def test_filters(workspace, inbox):
    wa = inbox.conversation()
    mail = inbox.conversation(inbox.contact(channel="email"))
    old = inbox.message(wa, "invoice from last year")
    with session_scope() as session:
        session.get_one(Message, old).created_at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    new = inbox.message(
        wa, "invoice please", direction="outbound", sender_type="user", status="sent"
    )
    mailed = inbox.message(mail, "invoice attached")

    def ids(**params):
        return {h["message"]["id"] for h in _search(workspace, q="invoice", **params)["items"]}

    assert ids() == {str(old), str(new), str(mailed)}
    assert ids(channel="email") == {str(mailed)}
    assert ids(conversation_id=str(wa["id"])) == {str(old), str(new)}
    assert ids(sender_type="user") == {str(new)}
    assert ids(to="2021-01-01T00:00:00Z") == {str(old)}
    assert ids(**{"from": "2021-01-01T00:00:00Z"}) == {str(new), str(mailed)}


def test_paging_with_an_opaque_cursor(workspace, inbox):
    conversation = inbox.conversation()
    expected = {str(inbox.message(conversation, f"paging word {i}")) for i in range(5)}
    seen, cursor = [], None
    while True:
        params = {"q": "paging", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = _search(workspace, **params)
        seen += [h["message"]["id"] for h in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and set(seen) == expected
    first_cursor = _search(workspace, q="paging", limit=2)["next_cursor"]
    reused = workspace.call("GET", SEARCH, params={"q": "other", "cursor": first_cursor})
    assert reused.status_code == 400
    # The same search's cursor with an offset that is not a number (JSON true is one in
    # Python, and reached the database as OFFSET true).
    offset, fingerprint = json.loads(base64.urlsafe_b64decode(first_cursor + "=="))
    assert offset == 2
    for bad in ("true", "2.0", '"2"'):
        cursor = crafted(f'[{bad}, "{fingerprint}"]')
        resp = workspace.call("GET", SEARCH, params={"q": "paging", "cursor": cursor})
        assert resp.status_code == 400, (bad, resp.text)


def test_bad_queries_are_400(workspace):
    for params in (
        {},
        {"q": ""},
        {"q": "x" * 201},
        {"q": "a", "channel": "telegram"},
        {"q": "a", "from": "yesterday"},
        {"q": "a", "from": "2024-01-01T00:00:00"},
        {"q": "a", "conversation_id": "nope"},
        {"q": "a", "sender_type": "robot"},
        {"q": "a", "cursor": "!!"},
        {"q": "a", "limit": 500},
    ):
        resp = workspace.call("GET", SEARCH, params=params)
        assert resp.status_code == 400, (params, resp.text)
    inverted = workspace.call(
        "GET",
        SEARCH,
        params={"q": "a", "from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"},
    )
    assert inverted.status_code == 422
    assert _search(workspace, q="!!!")["items"] == []


def test_only_visible_conversations_and_own_tenant(workspace, inbox, other_workspace, other_inbox):
    agent, token = workspace.create_agent()
    _, peer_token = workspace.create_agent()
    division = inbox.division(agent["id"])
    mine = inbox.conversation(assignee_id=agent["id"])
    in_my_division = inbox.conversation(division_id=division)
    hidden = inbox.conversation(assignee_id=workspace.admin["id"])
    m1 = inbox.message(mine, "zebra one")
    m2 = inbox.message(in_my_division, "zebra two")
    inbox.message(hidden, "zebra three")
    theirs = other_inbox.conversation()
    other_inbox.message(theirs, "zebra four")

    agent_ids = {h["message"]["id"] for h in _search(workspace, token=token, q="zebra")["items"]}
    assert agent_ids == {str(m1), str(m2)}
    admin_hits = _search(workspace, q="zebra")["items"]
    assert len(admin_hits) == 3
    peer_ids = {
        h["message"]["id"] for h in _search(workspace, token=peer_token, q="zebra")["items"]
    }
    assert str(m1) not in peer_ids and str(m2) in peer_ids  # unassigned, peer has no division
    assert len(_search(other_workspace, q="zebra")["items"]) == 1
    for conversation_id in (hidden["id"], theirs["id"], uuid.uuid4()):
        resp = workspace.call(
            "GET",
            SEARCH,
            token=token,
            params={"q": "zebra", "conversation_id": str(conversation_id)},
        )
        assert resp.status_code == 404, resp.text
    assert (
        workspace.call(
            "GET", SEARCH, params={"q": "zebra", "conversation_id": str(theirs["id"])}
        ).status_code
        == 404
    )


def _file_under(tenant_id, conversation, body: str) -> uuid.UUID:
    """A message of ``tenant_id`` written under ``conversation`` whatever its tenant, newest
    of all (a broken invariant: only a bug could write one)."""
    message_id = uuid.uuid4()
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO messages (id, tenant_id, conversation_id, channel, direction,"
                " sender_type, status, body, created_at, updated_at)"
                " VALUES (:id, :tenant, :conversation, :channel, 'inbound', 'contact',"
                " 'received', :body, now() + interval '1 hour', now())"
            ),
            {
                "id": message_id,
                "tenant": tenant_id,
                "conversation": conversation["id"],
                "channel": conversation["channel"],
                "body": body,
            },
        )
    return message_id


@pytest.mark.parametrize("matches", [1, 60], ids=["rare", "common"])
def test_a_manager_never_sees_a_message_under_another_tenants_conversation(
    workspace, inbox, other_inbox, matches
):
    """A manager's search probes no conversation's visibility (the whole tenant is visible):
    each hit's conversation is matched on the tenant instead, on both search paths."""
    mine = inbox.conversation()
    _bury(inbox, mine, matches, "quokka sighting")
    stray = _file_under(inbox.tenant_id, other_inbox.conversation(), "quokka sighting")
    ids = {h["message"]["id"] for h in _search(workspace, q="quokka", limit=100)["items"]}
    assert len(ids) == matches
    assert str(stray) not in ids


def _bury(inbox, conversation, count: int, body: str) -> None:
    """``count`` messages newer than every other in the tenant (one statement, not the ORM).

    Then ANALYZE, as autovacuum would after such a load (this suite's server runs without
    it): without statistics PostgreSQL took ``messages`` for a few rows and joined each
    page's hits to it by scanning the tenant's rows per hit, 0.4-0.9 s a search here.
    """
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO messages (id, tenant_id, conversation_id, channel, direction,"
                " sender_type, status, body, created_at, updated_at)"
                " SELECT gen_random_uuid(), :tenant, :conversation, :channel, 'inbound',"
                " 'contact', 'received', :body, now() + n * interval '1 ms', now()"
                " FROM generate_series(1, :count) AS n"
            ),
            {
                "tenant": inbox.tenant_id,
                "conversation": conversation["id"],
                "channel": conversation["channel"],
                "body": body,
                "count": count,
            },
        )
    with session_scope() as session:
        session.execute(text("ANALYZE messages"))


def _old(message_id) -> None:
    with session_scope() as session:
        session.get_one(Message, message_id).created_at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def test_a_rare_query_reaches_past_the_recent_window(workspace, inbox):
    agent, token = workspace.create_agent()
    mine = inbox.conversation(assignee_id=agent["id"])
    hidden = inbox.conversation(assignee_id=workspace.admin["id"])
    old = inbox.message(mine, "zanzibar parcel, and a filler word")
    old_hidden = inbox.message(hidden, "zanzibar again")
    _old(old)
    _old(old_hidden)
    _bury(inbox, mine, search.RECENT_WINDOW, "filler filler")

    # Rare in the window (no match there): the whole history, visibility applied.
    hits = _search(workspace, token=token, q="zanzibar")["items"]
    assert [h["message"]["id"] for h in hits] == [str(old)]
    assert "<mark>zanzibar</mark>" in hits[0]["highlight"]
    assert {h["message"]["id"] for h in _search(workspace, q="zanzibar")["items"]} == {
        str(old),
        str(old_hidden),
    }
    # Common in the window: its newest matches only, the old one is not ranked.
    common = _search(workspace, token=token, q="filler", limit=100)
    assert len(common["items"]) == 100 and common["next_cursor"] is not None
    assert str(old) not in {h["message"]["id"] for h in common["items"]}
    # A window reaching back in time (``to``) finds it again.
    dated = _search(workspace, token=token, q="filler", to="2021-01-01T00:00:00Z")["items"]
    assert [h["message"]["id"] for h in dated] == [str(old)]


def test_a_manager_ranks_the_windows_newest_matches_only(workspace, inbox):
    """Past the newest MAX_RESULTS matches, a better-ranked older match is not a candidate."""
    conversation = inbox.conversation()
    strong = inbox.message(conversation, "kiwi kiwi kiwi kiwi, the kiwi order")
    _bury(inbox, conversation, search.MAX_RESULTS, "a kiwi")
    _bury(inbox, conversation, search.RARE_BELOW, "nothing here")

    common = _search(workspace, q="kiwi", limit=100)
    assert len(common["items"]) == 100 and common["next_cursor"] is not None
    assert str(strong) not in {h["message"]["id"] for h in common["items"]}
    # One match fewer among the newest: the strong one is a candidate, and ranks first.
    with session_scope() as session:
        session.execute(
            text(
                "DELETE FROM messages WHERE id = (SELECT id FROM messages"
                " WHERE tenant_id = :t AND body = 'a kiwi' ORDER BY created_at LIMIT 1)"
            ),
            {"t": inbox.tenant_id},
        )
    assert _search(workspace, q="kiwi")["items"][0]["message"]["id"] == str(strong)


def test_common_or_rare_is_decided_before_visibility(workspace, inbox):
    """A word common in the window stays a recent search for an agent who sees none of it."""
    agent, token = workspace.create_agent()
    mine = inbox.conversation(assignee_id=agent["id"])
    hidden = inbox.conversation(assignee_id=workspace.admin["id"])
    old = inbox.message(mine, "walrus from long ago")
    _old(old)
    _bury(inbox, hidden, search.RECENT_WINDOW - search.RARE_BELOW, "filler")
    _bury(inbox, hidden, search.RARE_BELOW, "walrus seal")

    assert _search(workspace, token=token, q="walrus")["items"] == []
    assert len(_search(workspace, q="walrus", limit=100)["items"]) == search.RARE_BELOW
    rare = _search(workspace, token=token, q="walrus -seal")["items"]
    assert [h["message"]["id"] for h in rare] == [str(old)]


def _spread(inbox, conversation, count: int, body: str, hours: float) -> None:
    """``count`` messages ``hours`` apart, the newest ``hours`` ago (one statement)."""
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO messages (id, tenant_id, conversation_id, channel, direction,"
                " sender_type, status, body, created_at, updated_at)"
                " SELECT gen_random_uuid(), :tenant, :conversation, :channel, 'inbound',"
                " 'contact', 'received', :body, now() - n * :hours * interval '1 hour', now()"
                " FROM generate_series(1, :count) AS n"
            ),
            {
                "tenant": inbox.tenant_id,
                "conversation": conversation["id"],
                "channel": conversation["channel"],
                "body": body,
                "count": count,
                "hours": hours,
            },
        )


#: How a rare query is read: counted through the index before any scan (``probe``), or
#: after the window's scan, through the index (``index``) or in time rings (``rings``).
RARE_PLANS = ("probe", "index", "rings")


@pytest.fixture
def history_plan(monkeypatch):
    """Pin how a rare query is read (one of RARE_PLANS), whatever the statistics say."""

    def clear() -> None:
        search._KNOWN_COMMON.clear()
        search._rare_statement.cache_clear()
        search._history_statement.cache_clear()

    def use(plan: str) -> None:
        monkeypatch.setattr(search, "PROBE_MATCHES", 10**30 if plan == "probe" else -1)
        monkeypatch.setattr(search, "HISTORY_INDEX_SCALE", 10**30 if plan == "index" else -1)
        clear()

    yield use
    clear()


def test_a_word_rare_among_the_newest_ranks_its_newest_matches_in_history(
    workspace, inbox, history_plan
):
    """Drifted data: the newest messages miss the word, the history holds it often.

    Both history plans rank the same candidates, the newest MAX_RESULTS matches, across
    every time ring: a strong match older than them is not ranked.
    """
    conversation = inbox.conversation()
    other = inbox.conversation()
    strong = inbox.message(conversation, "walrus walrus walrus, seal and walrus")
    strong_old = inbox.message(conversation, "walrus walrus walrus walrus, an old seal")
    with session_scope() as session:
        session.get_one(Message, strong).created_at = dt.datetime.now(dt.UTC) - dt.timedelta(
            minutes=30
        )
        session.get_one(Message, strong_old).created_at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    # Matches every 3 hours back to ~4 months (every ring), another word in between.
    _spread(inbox, conversation, search.MAX_RESULTS - 1, "a walrus on the beach", 3)
    _spread(inbox, other, 300, "a seal on the rocks", 7)
    _bury(inbox, other, search.RECENT_WINDOW, "filler filler")

    pages = {}
    for plan in RARE_PLANS:
        history_plan(plan)
        first = _search(workspace, q="walrus", limit=50)
        assert first["items"][0]["message"]["id"] == str(strong)
        seen, cursor = [h["message"]["id"] for h in first["items"]], first["next_cursor"]
        while cursor:
            page = _search(workspace, q="walrus", limit=100, cursor=cursor)
            seen += [h["message"]["id"] for h in page["items"]]
            cursor = page["next_cursor"]
        assert len(seen) == len(set(seen)) == search.MAX_RESULTS
        assert str(strong_old) not in seen
        # The phrase's own matches are two: the old one is among its newest.
        phrase = _search(workspace, q='"walrus walrus" seal', limit=10)["items"]
        assert {h["message"]["id"] for h in phrase} == {str(strong), str(strong_old)}
        either = _search(workspace, q="seal or walrus", limit=20)["items"]
        pages[plan] = (seen, [h["message"]["id"] for h in either])
        unlike = _search(workspace, q="walrus -beach")["items"]
        assert {h["message"]["id"] for h in unlike} == {str(strong), str(strong_old)}
    assert pages["probe"] == pages["index"] == pages["rings"]


def test_a_rare_word_is_found_in_any_ring_and_before_them(workspace, inbox, history_plan):
    """Few matches, one per ring and one older than the last ring: all of them, both plans."""
    conversation = inbox.conversation()
    now = dt.datetime.now(dt.UTC)
    ages = [1, 5, 20, 100, 400, 1500, 3 * 24 * 365]
    ids = []
    for hours in ages:
        message = inbox.message(conversation, f"narwhal seen {hours} hours ago")
        with session_scope() as session:
            session.get_one(Message, message).created_at = now - dt.timedelta(hours=hours)
        ids.append(str(message))
    _bury(inbox, conversation, search.RECENT_WINDOW, "filler filler")
    for plan in RARE_PLANS:
        history_plan(plan)
        hits = _search(workspace, q="narwhal")["items"]
        assert [h["message"]["id"] for h in hits] == ids  # equal ranks: newest first
        assert _search(workspace, q="narwhal", to=(now - dt.timedelta(hours=50)).isoformat())[
            "items"
        ] == [h for h in hits if h["message"]["id"] in ids[3:]]
        assert _search(workspace, q="zzzunheard")["items"] == []

"""Page statements carry their LIMIT in the SQL text, so PostgreSQL can keep a generic plan.

A prepared statement whose LIMIT is a parameter is planned again at every execution:
the generic plan is costed as if 10 % of the rows were read, so the custom plans always
look cheaper (measured: 0.5-1 ms of planning for an inbox page that runs in 0.3 ms).
"""

from __future__ import annotations

from shared.db import _driver_statement
from shared.inbox.access import EVERYTHING
from shared.inbox.conversations import _list_statement
from shared.pagination import _with_limit
from tests.inbox_conversations.conftest import add_conversation


def test_an_inbox_page_statement_has_its_limit_in_the_text():
    statements = _list_statement(EVERYTHING, ("status",), "me", ())
    for after in (False, True):
        sql, literals, _ = _driver_statement(_with_limit(statements(after), 26))
        assert "LIMIT 26" in sql
        assert "limit" not in " ".join(literals)
    assert _with_limit(statements(False), 26) is _with_limit(statements(False), 26), "built once"


def test_an_inbox_page_is_cut_before_its_contacts_and_read_state_are_joined():
    """A next page's keyset bound has no value when PostgreSQL costs its generic plan; with
    the LIMIT above the joins that plan looked dearer than a custom one, which was then
    planned at every execution. Cut first, the joins cost the same either way."""
    statements = _list_statement(EVERYTHING, ("status",), "me", ())
    sql, _, _ = _driver_statement(_with_limit(statements(True), 26))
    before, _, joined = sql.partition(" LIMIT 26) AS page ")
    page = before.partition("FROM (SELECT ")[2]
    assert "FROM conversations" in page
    assert "contacts" not in page and "conversation_reads" not in page
    assert "JOIN contacts" in joined and "JOIN conversation_reads" in joined
    # A read-state filter needs the read join below the LIMIT.
    unread = _list_statement(EVERYTHING, (), None, ("unread",))
    sql, _, _ = _driver_statement(_with_limit(unread(True), 26))
    assert sql.rstrip().endswith("LIMIT 26")


def test_page_sizes_answer_that_many_rows_and_a_cursor(workspace):
    """Each size is its own statement: pages of 1, 2 and 5 walk the inbox without a gap."""
    made = {add_conversation(workspace) for _ in range(4)}
    pages, cursor = [], None
    for limit in (1, 2, 5):
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        resp = workspace.call("GET", "/api/conversations", params=params)
        assert resp.status_code == 200, resp.text
        pages.append([item["id"] for item in resp.json["items"]])
        cursor = resp.json["next_cursor"]
    assert [len(page) for page in pages] == [1, 2, 1]
    assert cursor is None
    assert {i for page in pages for i in page} == made

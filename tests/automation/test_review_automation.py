"""Review findings of the automation operations area, each a regression test."""

from __future__ import annotations

import pytest

EVENTS = "/api/automation/events"


@pytest.mark.parametrize("fingerprint", ["%00", "abc%00def"])
def test_a_fingerprint_holding_a_nul_lists_nothing_not_a_database_error(ws, fingerprint):
    """No fingerprint holds a NUL (they are hex digests): the database refused to compare
    one (a 422 the error net logs as a bug); nothing matches it."""
    resp = ws.call("GET", f"{EVENTS}/by-fingerprint/{fingerprint}")
    assert resp.status_code == 200, resp.text
    assert resp.json == {"items": [], "next_cursor": None}


def test_a_dry_run_renders_bounded_text_however_large_the_payload(ws):
    """A body of many placeholders of a large message rendered each whole: 50 actions of
    50 ``{{message.content}}`` over a 1 MB payload were 2.5 GB in one answer (and a run
    stored each rendered body). A rendered text stops at its bound."""
    from shared.automation.templating import MAX_RENDERED_LENGTH
    from tests.automation.conftest import RULES, add_conversation, create_rule

    rule = create_rule(ws)
    body = "{{message.content}}" * 50
    actions = [{"type": "send_message", "params": {"body": body}}] * 10
    payload = {"conversation_id": add_conversation(ws), "body": "refund " + "x" * 100_000}
    resp = ws.call(
        "POST",
        f"{RULES}/{rule['id']}/dry-run",
        json={"rule": {"actions": actions}, "payload": payload},
    )
    assert resp.status_code == 200, resp.text
    rendered = [a["params"]["body"] for a in resp.json["actions"]]
    assert len(rendered) == 10
    assert all(len(text) == MAX_RENDERED_LENGTH for text in rendered)
    assert rendered[0] == ("refund " + "x" * 100_000)[:MAX_RENDERED_LENGTH]
    assert len(resp.content) < 400_000

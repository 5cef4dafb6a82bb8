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

"""An agent created in a division being deleted is told the division is gone."""

from __future__ import annotations

import logging

from sqlalchemy import text

from shared.db import get_sessionmaker
from tests.lock_races import race
from tests.workspaces import PASSWORD


def test_an_agent_created_in_a_division_being_deleted_is_told_it_is_gone(workspace, caplog):
    """As for a role: the division was read unlocked, and the membership's foreign key
    failed once the deletion committed (the constraint net's bare 409)."""
    division = workspace.call("POST", "/api/divisions", json={"name": "Night"}).json
    holder = get_sessionmaker()()
    holder.execute(text("DELETE FROM divisions WHERE id = :id"), {"id": division["id"]})
    body = {"email": "late@example.com", "full_name": "Late", "role": "agent"}
    body |= {"password": PASSWORD, "division_ids": [division["id"]]}
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        resp = race(holder, lambda: workspace.call("POST", "/api/agents", json=body))
    assert resp.status_code == 422, resp.text
    assert [d["field"] for d in resp.json["error"]["details"]] == ["division_ids[0]"]
    assert not [r for r in caplog.records if "database refused" in r.getMessage()]

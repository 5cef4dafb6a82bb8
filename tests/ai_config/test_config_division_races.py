"""An AI assignment or hand-off rule saved naming a division while it is being deleted.

The save read the division unlocked, so a deletion not yet committed let it through to
the insert, whose foreign key check then waited for the deletion and failed: an
anonymous 409 "conflicts with existing data" (and an error in the log), where a
division that is gone answers 422 naming the field. The save now share-locks the
division it names: it waits for the deletion and answers that 422.
"""

from __future__ import annotations

from tests.ai_config.conftest import AGENTS, create_agent
from tests.ai_config.test_rules_api import ASSIGNMENTS, account
from tests.inbox_conversations.conftest import add_division, while_deleting


def _refused_naming_division(resp) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "division_id"


def test_a_handoff_rule_naming_a_division_being_deleted_is_refused(workspace):
    ws = workspace
    agent_id = create_agent(ws)["id"]
    doomed = add_division(ws, "Doomed")
    path = f"{AGENTS}/{agent_id}/handoff-rules"
    body = {"kind": "model_error", "division_id": doomed, "message": "A person takes over"}
    _refused_naming_division(while_deleting(ws, doomed, lambda: ws.call("POST", path, json=body)))
    assert ws.call("GET", path).json == []


def test_an_assignment_naming_a_division_being_deleted_is_refused(workspace):
    ws = workspace
    agent_id = create_agent(ws)["id"]
    doomed = add_division(ws, "Doomed")
    body = {"ai_agent_id": agent_id, "integration_account_id": account(ws), "division_id": doomed}
    _refused_naming_division(
        while_deleting(ws, doomed, lambda: ws.call("POST", ASSIGNMENTS, json=body))
    )

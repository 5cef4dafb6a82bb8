"""A conversation's change against a running SLA check: no deadlock.

A status, tag or division change (one, or in bulk) locks the conversation, then its SLA
clock; ``check_sla`` claims a clock, then inserts its breach (FOR KEY SHARE on the
conversation it references).
"""

from __future__ import annotations

import pytest

from tests.inbox_conversations.conftest import add_division
from tests.lock_races import SlaCheckHolding, clocked_conversation, race

CHANGES = {
    "pending": ("PATCH", "status", {"status": "pending"}),
    "snoozed": ("PATCH", "status", {"status": "snoozed", "snoozed_until": "2099-01-01T00:00:00Z"}),
    "resolved": ("PATCH", "status", {"status": "resolved"}),
    "tags": ("PATCH", "tags", {"add": ["vip"]}),
    "bulk": ("POST", "bulk", {"action": "set_status", "status": "pending"}),
    "transfer": ("POST", "transfer", {}),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_conversation_change_does_not_deadlock_with_a_running_sla_check(workspace, change):
    conversation = clocked_conversation(workspace, pause_on_pending=True)
    check = SlaCheckHolding(conversation)

    method, path, payload = CHANGES[change]
    if path == "transfer":
        payload = {"to_division_id": add_division(workspace, "Desk")}
    if path == "bulk":
        target, payload = "/api/conversations/bulk", payload | {"ids": [conversation]}
    else:
        target = f"/api/conversations/{conversation}/{path}"
    resp = race(
        check.holder, lambda: workspace.call(method, target, json=payload), then=check.breach
    )

    assert check.failures == []
    assert resp is not None and resp.status_code in (200, 201), resp and resp.text
    breaches = workspace.call("GET", f"/api/conversations/{conversation}/sla").json["breaches"]
    assert [b["kind"] for b in breaches] == ["first_response"]

"""A policy's change or deletion against a running SLA check: no deadlock.

The change locks the policy and queues the re-time of its clocks; ``check_sla`` claims a clock,
then inserts its breach (FOR KEY SHARE on the policy it references).
"""

from __future__ import annotations

import pytest

from tests.channels_api.conftest import ApiChannel
from tests.lock_races import SlaCheckHolding, race

POLICIES = "/api/sla-policies"
CHANGES = {
    "patch": ("PATCH", {"first_response_minutes": 20}, 200),
    "delete": ("DELETE", None, 204),
}
#: The breaches the check records after the change: the deletion no longer waits for
#: the clock (it leaves its clocks to check_sla), so the check finds the policy gone.
RECORDED = {"patch": ["first_response"], "delete": []}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_policy_change_does_not_deadlock_with_a_running_sla_check(workspace, change):
    api = ApiChannel(workspace, None)
    body = {"name": "Fast", "first_response_minutes": 30}
    created = workspace.call("POST", POLICIES, json=body)
    assert created.status_code == 201, created.text
    conversation = api.inbound("Hello")["conversation_id"]
    check = SlaCheckHolding(conversation)

    method, payload, status = CHANGES[change]
    target = f"{POLICIES}/{created.json['id']}"
    resp = race(
        check.holder, lambda: workspace.call(method, target, json=payload), then=check.breach
    )

    assert check.failures == []
    assert resp is not None and resp.status_code == status, resp and resp.text
    breaches = workspace.call("GET", f"/api/conversations/{conversation}/sla").json["breaches"]
    assert [b["kind"] for b in breaches] == RECORDED[change]

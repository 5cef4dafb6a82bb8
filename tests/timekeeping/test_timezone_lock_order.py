"""The tenant's own timezone change against a running SLA check: no deadlock.

The change locks the tenant, then re-times the SLA clocks; ``check_sla`` claims a clock,
then inserts its breach (FOR KEY SHARE on the tenant, as every tenant-owned insert).
"""

from __future__ import annotations

from tests.channels_api.conftest import ApiChannel
from tests.lock_races import SlaCheckHolding, race


def test_a_timezone_change_does_not_deadlock_with_a_running_sla_check(workspace):
    api = ApiChannel(workspace, None)
    body = {"name": "Fast", "first_response_minutes": 30, "business_hours_only": True}
    assert workspace.call("POST", "/api/sla-policies", json=body).status_code == 201
    conversation = api.inbound("Hello")["conversation_id"]
    check = SlaCheckHolding(conversation)

    resp = race(
        check.holder,
        lambda: workspace.call(
            "PUT", "/api/working-hours/timezone", json={"timezone": "Asia/Tokyo"}
        ),
        then=check.breach,
    )

    assert check.failures == []
    assert resp is not None and resp.status_code == 200, resp and resp.text
    assert workspace.call("GET", "/api/working-hours/timezone").json == {"timezone": "Asia/Tokyo"}

"""The tenant's own timezone change against a running SLA check: no deadlock.

The change locks the tenant, then re-times the SLA clocks; ``check_sla`` claims a clock,
then inserts its breach (FOR KEY SHARE on the tenant, as every tenant-owned insert).
"""

from __future__ import annotations

from tests.lock_races import SlaCheckHolding, clocked_conversation, race


def test_a_timezone_change_does_not_deadlock_with_a_running_sla_check(workspace):
    conversation = clocked_conversation(workspace, business_hours_only=True)
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

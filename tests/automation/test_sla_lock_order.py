"""A rule's run against a running SLA check: no deadlock.

A run locks its conversations, then its actions may move their SLA clocks (a status
change pauses one); ``check_sla`` claims a clock, then inserts its breach (FOR KEY SHARE
on the conversation it references), which the run's lock must not block.
"""

from __future__ import annotations

from tests.automation.conftest import conversation, create_rule, settled, wait_settled
from tests.automation.test_batch_deletion_races import _emit_messages
from tests.lock_races import SlaCheckHolding, blocked_on_a_lock, clocked_conversation
from tests.waiting import wait_until


def test_a_rule_moving_a_clock_does_not_deadlock_with_a_running_sla_check(ws):
    conversation_id = clocked_conversation(ws, pause_on_pending=True)
    wait_until(lambda: settled(ws), "the inbound message dispatched")
    create_rule(ws, actions=[{"type": "set_status", "params": {"status": "pending"}}])
    check = SlaCheckHolding(conversation_id)
    try:
        _emit_messages(ws, conversation_id)
        # The worker's run locked the conversation and waits for the clock held here.
        wait_until(lambda: blocked_on_a_lock() >= 1, "the run waiting for the clock")
        check.breach()
        check.holder.commit()
    finally:
        check.holder.close()

    assert check.failures == []
    [row] = wait_settled(ws)
    assert (row.status, row.attempts) == ("done", 1), row.error
    assert conversation(conversation_id).status == "pending"
    breaches = ws.call("GET", f"/api/conversations/{conversation_id}/sla").json["breaches"]
    assert [b["kind"] for b in breaches] == ["first_response"]

"""Inbound messages against the background work on their conversation: no deadlock.

A conversation's row is referenced by its messages, SLA clocks and breaches, so each
insert of one takes a FOR KEY SHARE lock on it. An ingest that held the conversation
FOR UPDATE (which conflicts with KEY SHARE) and then waited for the conversation's SLA
clock deadlocked with ``check_sla`` holding that clock and inserting its breach.
"""

from __future__ import annotations

from tests.channels_api.conftest import ApiChannel
from tests.lock_races import SlaCheckHolding, race


def test_an_inbound_message_does_not_deadlock_with_a_running_sla_check(workspace):
    api = ApiChannel(workspace, None)
    body = {"name": "Fast", "first_response_minutes": 30}
    assert workspace.call("POST", "/api/sla-policies", json=body).status_code == 201
    conversation = api.inbound("Hello")["conversation_id"]
    check = SlaCheckHolding(conversation)

    body = {"contact": {"source_id": "cust-1", "name": "Carla Customer"}, "content": "Still there?"}
    resp = race(check.holder, lambda: api.post(body), then=check.breach)

    assert check.failures == []
    assert resp is not None and resp.status_code == 201, resp and resp.text
    assert resp.json["conversation_id"] == conversation

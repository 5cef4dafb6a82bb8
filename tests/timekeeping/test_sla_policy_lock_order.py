"""A policy's change or deletion against a running SLA check: no deadlock.

The change locks the policy, then makes its clocks due; ``check_sla`` claims a clock,
then inserts its breach (FOR KEY SHARE on the policy it references).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from shared.db import get_sessionmaker
from shared.models import ConversationSla
from shared.timekeeping import sla
from tests.channels_api.conftest import ApiChannel
from tests.lock_races import race

POLICIES = "/api/sla-policies"
CHANGES = {
    "patch": ("PATCH", {"first_response_minutes": 20}, 200),
    "delete": ("DELETE", None, 204),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_policy_change_does_not_deadlock_with_a_running_sla_check(workspace, change):
    api = ApiChannel(workspace, None)
    body = {"name": "Fast", "first_response_minutes": 30}
    created = workspace.call("POST", POLICIES, json=body)
    assert created.status_code == 201, created.text
    conversation = api.inbound("Hello")["conversation_id"]
    holder = get_sessionmaker()()
    clock = holder.scalar(
        select(ConversationSla)
        .where(ConversationSla.conversation_id == uuid.UUID(conversation))
        .with_for_update()
    )
    assert clock is not None
    failures: list[str] = []

    def breach():
        # check_sla's second half: the claimed clock's breach row is inserted.
        try:
            sla.check_due(holder, now=clock.first_response_due_at + dt.timedelta(minutes=1))
        except DBAPIError as exc:
            failures.append(str(exc.orig))
            holder.rollback()

    method, payload, status = CHANGES[change]
    target = f"{POLICIES}/{created.json['id']}"
    resp = race(holder, lambda: workspace.call(method, target, json=payload), then=breach)

    assert failures == []
    assert resp is not None and resp.status_code == status, resp and resp.text
    breaches = workspace.call("GET", f"/api/conversations/{conversation}/sla").json["breaches"]
    assert [b["kind"] for b in breaches] == ["first_response"]

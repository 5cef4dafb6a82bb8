"""The tenant's own timezone change against a running SLA check: no deadlock.

The change locks the tenant, then re-times the SLA clocks; ``check_sla`` claims a clock,
then inserts its breach (FOR KEY SHARE on the tenant, as every tenant-owned insert).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from shared.db import get_sessionmaker
from shared.models import ConversationSla
from shared.timekeeping import sla
from tests.channels_api.conftest import ApiChannel
from tests.lock_races import race


def test_a_timezone_change_does_not_deadlock_with_a_running_sla_check(workspace):
    api = ApiChannel(workspace, None)
    body = {"name": "Fast", "first_response_minutes": 30, "business_hours_only": True}
    assert workspace.call("POST", "/api/sla-policies", json=body).status_code == 201
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

    resp = race(
        holder,
        lambda: workspace.call(
            "PUT", "/api/working-hours/timezone", json={"timezone": "Asia/Tokyo"}
        ),
        then=breach,
    )

    assert failures == []
    assert resp is not None and resp.status_code == 200, resp and resp.text
    assert workspace.call("GET", "/api/working-hours/timezone").json == {"timezone": "Asia/Tokyo"}

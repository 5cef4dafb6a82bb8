"""heartbeat_age() and scheduler_status(): what a health check reads."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, insert

from shared.db import session_scope
from shared.models import SchedulerHeartbeat
from shared.scheduler_status import HEARTBEAT_NAME, heartbeat_age, scheduler_status


def test_no_scheduler_ever_led(clean_heartbeat):
    with session_scope() as session:
        assert heartbeat_age(session) is None
        assert scheduler_status(session) is None


def test_age_and_leader_identity_come_from_the_last_beat(clean_heartbeat):
    with session_scope() as session:
        session.execute(
            insert(SchedulerHeartbeat).values(
                name=HEARTBEAT_NAME,
                instance_id="host-a:4242:abcd",
                hostname="host-a",
                pid=4242,
                leader_since=func.now() - dt.timedelta(minutes=1),
                beat_at=func.now() - dt.timedelta(seconds=3),
            )
        )
    with session_scope() as session:
        age = heartbeat_age(session)
        fresh = scheduler_status(session, stale_after=30)
        stale = scheduler_status(session, stale_after=1)

    assert 3 <= age < 4
    assert (fresh.instance_id, fresh.hostname, fresh.pid) == ("host-a:4242:abcd", "host-a", 4242)
    assert fresh.healthy and not stale.healthy
    assert fresh.leader_since < fresh.beat_at
    assert 3 <= fresh.age_seconds < 4

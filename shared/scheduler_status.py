"""Read the scheduler leader's heartbeat, for health checks and operators.

The leader upserts one ``scheduler_heartbeats`` row named :data:`HEARTBEAT_NAME`
every ``SCHEDULER_HEARTBEAT_SECONDS`` (see ``scheduler.leader``). Ages are
measured by the database clock, the one that wrote ``beat_at``, so a skewed
web host cannot report a live scheduler as dead.

Example::

    with session_scope() as session:
        state = scheduler_status(session)
        ok = state is not None and state.healthy
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.db import fetch_rows
from shared.models import SchedulerHeartbeat

#: The heartbeat row's name; one leadership, so one row.
HEARTBEAT_NAME = "scheduler"


@dataclass(frozen=True, slots=True)
class SchedulerStatus:
    """The last heartbeat and how old it is; ``healthy`` compares the age to the stale limit."""

    instance_id: str
    hostname: str
    pid: int
    leader_since: dt.datetime
    beat_at: dt.datetime
    age_seconds: float
    healthy: bool


def _age():
    # NOTE: clock_timestamp(), not now(): now() is frozen at the start of the
    # caller's transaction, which may be older than the beat being measured.
    return func.extract("epoch", func.clock_timestamp() - SchedulerHeartbeat.beat_at)


def heartbeat_age(session: Session) -> float | None:
    """Return seconds since the leader's last beat, or ``None`` if no scheduler ever led."""
    age = session.scalar(select(_age()).where(SchedulerHeartbeat.name == HEARTBEAT_NAME))
    return None if age is None else float(age)


#: Built once, so :func:`fetch_rows` compiles it once.
_STATUS = select(
    SchedulerHeartbeat.instance_id,
    SchedulerHeartbeat.hostname,
    SchedulerHeartbeat.pid,
    SchedulerHeartbeat.leader_since,
    SchedulerHeartbeat.beat_at,
    _age(),
).where(SchedulerHeartbeat.name == bindparam("name"))


def scheduler_status(
    session: Session, *, stale_after: float | None = None
) -> SchedulerStatus | None:
    """Return the leader's last heartbeat, or ``None`` if no scheduler ever led.

    ``stale_after`` defaults to ``SCHEDULER_HEARTBEAT_STALE_SECONDS``.

    PERF: a prebuilt statement on the driver's cursor: it is the health check's only
    PostgreSQL statement (an answer, even with no row, proves the database is up), and
    health is polled by every load balancer. Raises what the driver raises when the
    database cannot answer.
    """
    rows = fetch_rows(session.connection(), _STATUS, {"name": HEARTBEAT_NAME})
    if not rows:
        return None
    instance_id, hostname, pid, leader_since, beat_at, age = rows[0]
    limit = get_settings().scheduler_heartbeat_stale_seconds if stale_after is None else stale_after
    return SchedulerStatus(
        instance_id=instance_id,
        hostname=hostname,
        pid=pid,
        leader_since=leader_since,
        beat_at=beat_at,
        age_seconds=float(age),
        healthy=float(age) <= limit,
    )

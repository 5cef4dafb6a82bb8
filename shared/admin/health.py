"""The platform's health for super admins: dependencies, queues, workers, scheduler runs.

Reuses what the public health check and the operators' console read: PostgreSQL,
Redis, the broker's queue depths and the scheduler heartbeat
(:func:`shared.operations.health`), the live worker processes each worker publishes
(:mod:`shared.ops.processes`) and the last run of every scheduler job
(:mod:`shared.ops.scheduler_runs`). Redis down is reported, never raised.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from shared import operations
from shared.ops import processes, redis_access, scheduler_runs

log = logging.getLogger(__name__)


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat().replace("+00:00", "Z")


def _worker(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "identity": state.get("identity"),
        "hostname": state.get("hostname"),
        "pid": state.get("pid"),
        "started_at": _iso(state.get("started_at")),
        "last_beat_at": _iso(state.get("beat_at")),
        "threads": state.get("threads"),
        "busy": len(state.get("busy", [])),
        "queues": state.get("queues", []),
    }


def report(session, queue_names: Sequence[str]) -> dict[str, Any]:
    """One body: ``status`` (``ok``/``down``), ``checks``, ``workers``, ``scheduler_jobs``."""
    base = operations.health(session, queue_names)
    body = base.as_dict()
    client, namespace = redis_access.client(), redis_access.namespace()
    try:
        body["workers"] = [_worker(state) for state in processes.live_processes(client, namespace)]
        body["scheduler_jobs"] = scheduler_runs.job_runs(client, namespace)
    except RedisError:
        log.warning("worker heartbeats and scheduler runs unavailable (Redis down)", exc_info=True)
        body["workers"], body["scheduler_jobs"] = [], []
    return body

"""The last run and outcome of every scheduler job, kept in Redis for the console.

The leader records each run (:func:`record_run`, from ``scheduler.jobs.run``) and its
job table once it leads (:func:`record_jobs`). Recording is best effort: a Redis
outage must never stop a job, so errors are logged and swallowed here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Any

import redis

from shared.ops import keys, redis_access

log = logging.getLogger(__name__)

#: Longest result or error text kept per run.
MAX_TEXT = 500


def _iso(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat().replace("+00:00", "Z")


def record_jobs(jobs: Mapping[str, str]) -> None:
    """Remember the job table (name -> trigger), so jobs that never ran are listed too."""
    if not jobs:
        return
    try:
        key = keys.scheduler_jobs_key(redis_access.namespace())
        pipe = redis_access.client().pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping=dict(jobs))
        pipe.execute()
    except redis.RedisError:
        log.warning("scheduler job table could not be written to Redis", exc_info=True)


def record_run(
    name: str,
    *,
    started: float,
    finished: float,
    outcome: str,
    result: Any = None,
    error: str | None = None,
    next_run: float | None = None,
    instance_id: str | None = None,
) -> None:
    """Record a run of job ``name``: ``outcome`` is ``ok``, ``failed`` or ``skipped``."""
    document = {
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "duration_ms": round((finished - started) * 1000, 3),
        "outcome": outcome,
        "result": None if result is None else repr(result)[:MAX_TEXT],
        "error": error[-MAX_TEXT:] if error else None,
        "next_run_at": _iso(next_run) if next_run is not None else None,
        "instance_id": instance_id,
    }
    try:
        redis_access.client().hset(
            keys.scheduler_runs_key(redis_access.namespace()), name, json.dumps(document)
        )
    except redis.RedisError:
        log.warning("scheduler run of %s could not be recorded in Redis", name, exc_info=True)


def job_runs(client: redis.Redis, namespace: str) -> list[dict[str, Any]]:
    """Every known job with its trigger and last run (None before its first); raises
    :class:`redis.RedisError`."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.scheduler_jobs_key(namespace))
    pipe.hgetall(keys.scheduler_runs_key(namespace))
    jobs, runs = pipe.execute()
    names = sorted({raw.decode() for raw in jobs} | {raw.decode() for raw in runs})
    rows = []
    for name in names:
        trigger = jobs.get(name.encode())
        run = runs.get(name.encode())
        rows.append(
            {
                "job": name,
                "trigger": trigger.decode() if trigger else None,
                "last_run": json.loads(run) if run else None,
            }
        )
    return rows

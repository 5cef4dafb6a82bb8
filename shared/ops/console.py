"""One snapshot of every figure the console shows, for the page, the API and workers.top.

Example::

    with session_scope() as session:
        view = snapshot(session, workers.queues.ALL, tenant_id=None, minutes=60)
        view["summary"]["busy"], view["queues"][0]["latency_seconds"]

With ``tenant_id`` the snapshot is that tenant's slice: its messages' counts, running
messages, delayed messages, dead letters and outbox; queue depths stay platform-wide
(how busy the workers are says nothing about other tenants), while processes,
hostnames and the scheduler's job table are for platform operators only.
Raises :class:`shared.ops.redis_access.RedisDown` (503) when Redis cannot be read.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis
from sqlalchemy.orm import Session

from shared import dead_letters, worker_metrics
from shared.errors import Conflict
from shared.operations import broker_error_for, outbox_backlog
from shared.ops import delayed, processes, queues, redis_access, scheduler_runs, tenants
from shared.scheduler_status import scheduler_status

#: Minutes the console's dashboard and per-actor table cover by default.
DEFAULT_MINUTES = 60
#: Dead letters and delayed messages shown on the overview (the API pages through more).
LATEST = 20

#: Delayed messages read per queue for the overview, refreshed every few seconds by every
#: open page (GET /api/ops/delayed reads up to delayed.MAX_SCAN_PER_QUEUE).
OVERVIEW_SCAN_PER_QUEUE = 200

_SUMMED = ("enqueued", "processed", "failed", "retried", "dead_lettered")


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def snapshot(
    session: Session,
    queue_names: Sequence[str],
    *,
    tenant_id: uuid.UUID | None,
    minutes: int = DEFAULT_MINUTES,
) -> dict[str, Any]:
    """Return the console's figures now (see the module docstring)."""
    client, namespace = redis_access.client(), redis_access.namespace()
    operator = tenant_id is None
    try:
        metrics = worker_metrics.snapshot(client, namespace, minutes=minutes, tenant_id=tenant_id)
        live = processes.live_processes(client, namespace, tenant_id=tenant_id)
        queue_names = queues.known_queues(queue_names, live)
        queue_rows, broker_error = queues.overview(client, namespace, queue_names)
        flows = tenants.breakdown(client, namespace, minutes=minutes, tenant_id=tenant_id)
        jobs = scheduler_runs.job_runs(client, namespace) if operator else []
    except (redis.RedisError, worker_metrics.MetricsUnavailable) as exc:
        raise redis_access.RedisDown(exc) from exc
    try:
        waiting = delayed.list_delayed(
            queue_names, tenant_id=tenant_id, limit=LATEST, scan_limit=OVERVIEW_SCAN_PER_QUEUE
        )
    except Conflict:  # RabbitMQ: not listable
        waiting = None
    except redis.RedisError as exc:
        waiting, broker_error = None, broker_error or f"Redis broker unreachable: {exc}"
    if operator:
        tenants.name_tenants(session, flows)

    actors = []
    series: dict[str, dict[str, int]] = {}
    for actor, data in metrics["actors"].items():
        actors.append({"actor": actor, "queue": data["queue"], **data["totals"]})
        for point in data["series"]:
            bucket = series.setdefault(point["minute"], {"processed": 0, "failed": 0})
            bucket["processed"] += point["processed"]
            bucket["failed"] += point["failed"]
    busy = [
        {"process": state["identity"] if operator else None, **item}
        for state in live
        for item in state.get("busy", [])
    ]
    busy.sort(key=lambda item: -item["running_seconds"])
    dead = {
        "count": dead_letters.count_dead_letters(session, tenant_id=tenant_id),
        "latest": [
            dead_letters.dead_letter_view(row)
            for row in dead_letters.list_dead_letters(session, tenant_id=tenant_id, limit=LATEST)
        ],
    }
    outbox = outbox_backlog(session, tenant_id)
    status = scheduler_status(session)
    scheduler: dict[str, Any] = {
        "healthy": bool(status and status.healthy),
        "heartbeat_age_seconds": round(status.age_seconds, 2) if status else None,
    }
    if operator:
        scheduler["leader"] = (
            {
                "instance_id": status.instance_id,
                "hostname": status.hostname,
                "pid": status.pid,
                "leader_since": dead_letters.rfc3339(status.leader_since),
                "beat_at": dead_letters.rfc3339(status.beat_at),
            }
            if status
            else None
        )
        scheduler["jobs"] = jobs

    summary = {name: sum(row[name] for row in actors) for name in _SUMMED}
    summary.update(
        busy=len(busy),
        processes=len(live) if operator else None,
        threads=sum(state.get("threads", 0) for state in live) if operator else None,
        ready=sum(row["ready"] or 0 for row in queue_rows),
        delayed=sum(row["delayed"] or 0 for row in queue_rows),
        paused_queues=sum(1 for row in queue_rows if row["paused"]),
        max_latency_seconds=max((row["latency_seconds"] or 0.0 for row in queue_rows), default=0.0),
        dead_letters=dead["count"],
        outbox_pending=outbox["pending"],
        outbox_oldest_pending_age_seconds=outbox["oldest_pending_age_seconds"],
    )
    return {
        "generated_at": _iso_now(),
        "generated_at_unix": round(time.time(), 3),
        "scope": {"operator": operator, "tenant_id": str(tenant_id) if tenant_id else None},
        "window": metrics["window"],
        "summary": summary,
        "series": [{"minute": minute, **counts} for minute, counts in sorted(series.items())],
        "processes": live if operator else [],
        "busy": busy,
        "queues": queue_rows,
        "broker_error": broker_error_for(broker_error, tenant_id),
        "actors": actors,
        "tenants": flows,
        "delayed": waiting,
        "dead_letters": dead,
        "outbox": outbox,
        "scheduler": scheduler,
    }

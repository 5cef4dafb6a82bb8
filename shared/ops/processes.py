"""Worker processes and what each of their threads runs now (Sidekiq's "Busy" page).

A worker process (:class:`workers.presence.Presence`) publishes one JSON document
every :data:`~shared.ops.keys.BEAT_SECONDS`::

    {"identity": "host:4242:1a2b", "hostname": "host", "pid": 4242,
     "started_at": 1700000000.0, "beat_at": 1700000100.0, "threads": 8,
     "draining": false,
     "queues": ["events", ...], "paused": ["webhooks"],
     "busy": [{"thread": "Thread-7", "thread_id": 1403..., "message_id": "...",
               "queue": "events", "actor": "dispatch_event", "tenant_id": "...",
               "args": "('0b1c...',)", "started_at": 1700000099.5}],
     "delayed": {"webhooks|deliver_webhook": 3}}

``draining`` is true once the process was told to stop (SIGTERM) and finishes the jobs
it holds; it leaves the list when they are done. ``delayed`` counts the delayed
messages (retries waiting for their backoff, ``delay=`` sends) the process holds in
memory until their eta, per queue and actor.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any

import redis

from shared.ops import keys

#: Longest argument text shown for a running message (arguments can be large).
MAX_ARGS_CHARS = 200


def publish(
    pipe: redis.client.Pipeline, namespace: str, state: dict[str, Any], *, now: float
) -> None:
    """Queue the writes of one beat of ``state`` on ``pipe`` (the worker executes it)."""
    identity = state["identity"]
    pipe.set(
        keys.process_key(namespace, identity),
        json.dumps(state, default=str),
        ex=keys.PROCESS_TTL_SECONDS,
    )
    pipe.zadd(keys.processes_key(namespace), {identity: now})


def withdraw(client: redis.Redis, namespace: str, identity: str) -> None:
    """Remove a process that stops cleanly, so it leaves the console at once."""
    pipe = client.pipeline(transaction=False)
    pipe.delete(keys.process_key(namespace, identity))
    pipe.zrem(keys.processes_key(namespace), identity)
    pipe.execute()


def live_processes(
    client: redis.Redis, namespace: str, *, tenant_id: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """Return the live worker processes, by identity; raise :class:`redis.RedisError`.

    With ``tenant_id`` every process is listed (how many threads work is no
    secret), but its ``busy`` list only shows that tenant's messages and
    ``delayed`` is left empty (those counts are not per tenant).
    """
    now = time.time()
    index = keys.processes_key(namespace)
    identities = [
        raw.decode() for raw in client.zrangebyscore(index, now - keys.PROCESS_TTL_SECONDS, "+inf")
    ]
    client.zremrangebyscore(index, "-inf", now - keys.PROCESS_TTL_SECONDS)
    if not identities:
        return []
    documents = client.mget([keys.process_key(namespace, identity) for identity in identities])
    processes = []
    tenant = str(tenant_id) if tenant_id is not None else None
    for raw in documents:
        if raw is None:
            continue
        state = json.loads(raw)
        for item in state.get("busy", []):
            item["running_seconds"] = round(max(now - item["started_at"], 0.0), 3)
        if tenant is not None:
            state["busy"] = [item for item in state.get("busy", []) if item["tenant_id"] == tenant]
            state["delayed"] = {}
        processes.append(state)
    processes.sort(key=lambda state: state["identity"])
    return processes


def busy_by_actor(processes: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """Messages running now by ``(queue, actor)``, over every process."""
    counts: Counter[tuple[str, str]] = Counter()
    for state in processes:
        for item in state.get("busy", []):
            counts[(item["queue"], item["actor"])] += 1
    return counts


def delayed_by_actor(processes: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """Delayed messages held in worker memory by ``(queue, actor)``, over every process."""
    counts: Counter[tuple[str, str]] = Counter()
    for state in processes:
        for name, count in state.get("delayed", {}).items():
            queue, _, actor = name.partition("|")
            counts[(queue, actor)] += count
    return counts

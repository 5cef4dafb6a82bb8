"""Delayed messages: retries waiting out their backoff and ``delay=`` sends (Sidekiq's
"Retries" and "Scheduled" pages), listed, retried now or deleted.

Dramatiq's Redis broker keeps each delayed message in ``{queue}.DQ.msgs`` (a hash by
``redis_message_id``) until it is handed over to its queue at its eta; a worker fetches
it early and holds it in memory meanwhile. So removing the hash entry is not enough:
the id is also marked cancelled (:data:`shared.ops.keys.cancelled_key`) and every
worker skips a cancelled message when its eta comes (``workers.presence``). A retry
now sends a copy under a new message id, then cancels the original. Each retry or
delete first takes a short claim on the message (:func:`_claim`), so two at once act
once: the other answers 404.

A mark is read by the workers every beat, so a message deleted less than a second
before its eta may still run once. RabbitMQ cannot list a queue without consuming
it: there these operations answer 409.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import dramatiq
import redis
from dramatiq.common import dq_name, q_name

from shared import queue_stats
from shared.config import get_settings
from shared.errors import Conflict, NotFound
from shared.ops import keys, redis_access
from shared.ops.resend import Resend, Sender, clean_options
from shared.worker_metrics import tenant_id_from_options

log = logging.getLogger(__name__)

Kind = Literal["retry", "scheduled"]

#: Hash entries read per queue at most, so a huge backlog cannot stall the console.
MAX_SCAN_PER_QUEUE = 5000
#: How long a cancel mark outlives the message's eta.
CANCEL_MARGIN_SECONDS = 24 * 3600
#: How long one request's claim on a delayed message lasts at most (it sends, then cancels).
CLAIM_SECONDS = 60


def _broker() -> tuple[redis.Redis, str]:
    settings = get_settings()
    if settings.uses_rabbitmq:
        raise Conflict("Delayed messages can only be listed on the Redis broker")
    return queue_stats.redis_broker_client(settings), queue_stats.redis_broker_namespace(settings)


def _iso(ms: float | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def _last_line(text: str | None) -> str | None:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


def _view(queue: str, redis_id: str, message: dramatiq.Message) -> dict[str, Any]:
    options = message.options
    tenant = tenant_id_from_options(options)
    retries = options.get("retries", 0) or 0
    return {
        "id": redis_id,
        "queue": queue,
        "message_id": message.message_id,
        "actor": message.actor_name,
        "kind": "retry" if retries else "scheduled",
        "retries": retries,
        "tenant_id": str(tenant) if tenant else None,
        "args": repr(tuple(message.args))[:200],
        "eta": _iso(options.get("eta")),
        "enqueued_at": _iso(message.message_timestamp),
        "error": _last_line(options.get("traceback")),
    }


def list_delayed(
    queue_names: Sequence[str],
    *,
    tenant_id: uuid.UUID | None = None,
    kind: Kind | None = None,
    queue: str | None = None,
    limit: int = 100,
    scan_limit: int = MAX_SCAN_PER_QUEUE,
) -> dict[str, Any]:
    """Return ``{"items": [...soonest eta first], "truncated": bool}``.

    ``truncated`` is true when a queue held more than ``scan_limit`` delayed messages
    (only that many were read). Raises :class:`redis.RedisError`.
    """
    client, namespace = _broker()
    cancelled = _cancelled()
    wanted_tenant = str(tenant_id) if tenant_id is not None else None
    candidates: list[tuple[float, str, str, dramatiq.Message]] = []
    truncated = False
    names = queue_names if queue is None else [queue] if queue == q_name(queue) else []
    for name in names:
        seen = 0
        for raw_id, raw in client.hscan_iter(
            f"{namespace}:{dq_name(name)}.msgs", count=min(scan_limit + 1, 1000)
        ):
            seen += 1
            if seen > scan_limit:
                truncated = True
                break
            try:
                message = dramatiq.Message.decode(raw)
            except Exception:
                log.warning("delayed message %r on %s cannot be decoded", raw_id, name)
                continue
            options = message.options
            if message.message_id in cancelled:
                continue
            if kind is not None and (kind == "retry") != bool(options.get("retries")):
                continue
            if wanted_tenant is not None:
                tenant = tenant_id_from_options(options)
                if str(tenant) != wanted_tenant:
                    continue
            candidates.append((options.get("eta") or 0, raw_id.decode(), name, message))
    # PERF: views (dates, reprs) are built for the messages shown only.
    soonest = heapq.nsmallest(limit, candidates, key=lambda item: (item[0], item[1]))
    return {
        "items": [_view(name, redis_id, message) for _, redis_id, name, message in soonest],
        "truncated": truncated,
    }


def _cancelled() -> set[str]:
    """Message ids marked cancelled and not yet forgotten (in the console's Redis)."""
    key = keys.cancelled_key(redis_access.namespace())
    members = redis_access.client().zrangebyscore(key, time.time(), "+inf")
    return {member.decode() for member in members}


def _find(
    client: redis.Redis, namespace: str, queue: str, redis_id: str, tenant_id: uuid.UUID | None
) -> dramatiq.Message:
    # NOTE: dq_name() maps "q.XQ" and "q.DQ" to q's delay queue too; a copy sent to such
    # a name would land where no worker consumes it, so only the queue's own name finds it.
    raw = (
        client.hget(f"{namespace}:{dq_name(queue)}.msgs", redis_id)
        if queue == q_name(queue)
        else None
    )
    if raw is None:
        raise NotFound("No such delayed message (it may have run already)")
    message = dramatiq.Message.decode(raw)
    if tenant_id is not None and tenant_id_from_options(message.options) != tenant_id:
        raise NotFound("No such delayed message (it may have run already)")
    return message


def _claim(message: dramatiq.Message) -> None:
    """Take the one claim on ``message`` (404 when another request holds it).

    NOTE: the hash entry is read before it is deleted: without the claim, two retries
    at once both find it and both send a copy, and the job runs twice.
    """
    claimed = redis_access.client().set(
        keys.claim_key(redis_access.namespace(), message.message_id),
        "1",
        nx=True,
        ex=CLAIM_SECONDS,
    )
    if not claimed:
        raise NotFound("No such delayed message (it was retried or deleted already)")


def _release(message: dramatiq.Message) -> None:
    redis_access.client().delete(keys.claim_key(redis_access.namespace(), message.message_id))


def _cancel(client: redis.Redis, namespace: str, queue: str, redis_id: str, message) -> None:
    # NOTE: the mark first: a worker holding the message must skip it once its entry is gone.
    eta_seconds = (message.options.get("eta") or 0) / 1000
    forget_at = max(eta_seconds, time.time()) + CANCEL_MARGIN_SECONDS
    marks = redis_access.client().pipeline(transaction=False)
    marks.zadd(keys.cancelled_key(redis_access.namespace()), {message.message_id: forget_at})
    marks.zremrangebyscore(keys.cancelled_key(redis_access.namespace()), "-inf", time.time())
    marks.execute()
    pipe = client.pipeline(transaction=True)
    pipe.hdel(f"{namespace}:{dq_name(queue)}.msgs", redis_id)
    pipe.lrem(f"{namespace}:{dq_name(queue)}", 0, redis_id)
    pipe.execute()


def delete_delayed(queue: str, redis_id: str, *, tenant_id: uuid.UUID | None) -> dict[str, Any]:
    """Delete one delayed message for good; return what it was. 404 when gone."""
    client, namespace = _broker()
    message = _find(client, namespace, queue, redis_id, tenant_id)
    _claim(message)
    _cancel(client, namespace, queue, redis_id, message)
    return _view(queue, redis_id, message)


def retry_now(
    queue: str,
    redis_id: str,
    *,
    tenant_id: uuid.UUID | None,
    send: Sender,
) -> dict[str, Any]:
    """Send a copy of a delayed message to run now (a new message id), cancel the original."""
    client, namespace = _broker()
    message = _find(client, namespace, queue, redis_id, tenant_id)
    _claim(message)
    try:
        send(
            Resend(
                queue=queue,
                actor=message.actor_name,
                args=list(message.args),
                kwargs=dict(message.kwargs),
                options=clean_options(message.options, keep_retries=True),
            )
        )
    except BaseException:
        _release(message)  # nothing was sent: the original still runs at its eta
        raise
    _cancel(client, namespace, queue, redis_id, message)
    return _view(queue, redis_id, message)

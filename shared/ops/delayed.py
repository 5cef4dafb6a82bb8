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

An entry that is not a message the console can read (corrupt, or written by something
else: :func:`_decode`) is listed to the platform operator as ``kind`` ``undecodable``
with its raw size and the reason, never hidden and never failing the list. It can be
deleted (no worker can run it either: Dramatiq cannot decode it), not run now (409).
A tenant admin is not shown it: nothing in it proves whose it is.

A mark is read by the workers every beat, so a message deleted less than a second
before its eta may still run once. RabbitMQ cannot list a queue without consuming
it: there these operations answer 409.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import math
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


class Undecodable(Exception):
    """A delayed entry that is not a message the console can show or act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _time_problem(value: Any, name: str) -> str | None:
    """Why ``value`` (Unix milliseconds, or None) cannot be shown as a time, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"{name} is not a number"
    try:
        _iso(value)
    except (OverflowError, OSError, ValueError):
        return f"{name} is out of range"
    return None


def _shape_problem(message: dramatiq.Message) -> str | None:
    """What in a decoded message has a type Dramatiq's own messages never have, or None."""
    if not isinstance(message.options, dict):
        return "options is not an object"
    if not isinstance(message.kwargs, dict):
        return "kwargs is not an object"
    if not isinstance(message.actor_name, str) or not isinstance(message.queue_name, str):
        return "actor_name or queue_name is not a string"
    if not isinstance(message.message_id, str) or not message.message_id:
        return "message_id is not a string"
    options = message.options
    retries = options.get("retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)):
        return "retries is not an integer"
    if not isinstance(options.get("traceback") or "", str):
        return "traceback is not a string"
    return _time_problem(options.get("eta"), "eta") or _time_problem(
        message.message_timestamp, "message_timestamp"
    )


def _decode(raw: bytes) -> dramatiq.Message:
    """The message of a delayed entry; :class:`Undecodable` saying why when it is not one."""
    try:
        message = dramatiq.Message.decode(raw)
    except dramatiq.errors.DecodeError as exc:
        cause = exc.__cause__ or exc
        raise Undecodable(f"not a Dramatiq message ({type(cause).__name__})") from exc
    problem = _shape_problem(message)
    if problem is not None:
        raise Undecodable(problem)
    return message


def _view(queue: str, redis_id: str, message: dramatiq.Message, raw_size: int) -> dict[str, Any]:
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
        "raw_size": raw_size,
        "reason": None,
    }


def _undecodable_view(queue: str, redis_id: str, raw_size: int, reason: str) -> dict[str, Any]:
    return {
        "id": redis_id,
        "queue": queue,
        "message_id": None,
        "actor": None,
        "kind": "undecodable",
        "retries": None,
        "tenant_id": None,
        "args": None,
        "eta": None,
        "enqueued_at": None,
        "error": None,
        "raw_size": raw_size,
        "reason": reason,
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
    (only that many were read). Undecodable entries come first (they have no eta), to
    the platform operator only (``tenant_id`` None) and only without ``kind``.
    Raises :class:`redis.RedisError`.
    """
    client, namespace = _broker()
    cancelled = _cancelled()
    wanted_tenant = str(tenant_id) if tenant_id is not None else None
    candidates: list[tuple[float, str, str, dramatiq.Message | str, int]] = []
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
            redis_id = raw_id.decode(errors="replace")
            try:
                message = _decode(raw)
            except Undecodable as exc:
                log.warning("delayed message %r on %s cannot be decoded: %s", raw_id, name, exc)
                if tenant_id is None and kind is None:
                    candidates.append((0, redis_id, name, exc.reason, len(raw)))
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
            candidates.append((options.get("eta") or 0, redis_id, name, message, len(raw)))
    # PERF: views (dates, reprs) are built for the messages shown only.
    soonest = heapq.nsmallest(limit, candidates, key=lambda item: (item[0], item[1]))
    return {
        "items": [
            _undecodable_view(name, redis_id, size, found)
            if isinstance(found, str)
            else _view(name, redis_id, found, size)
            for _, redis_id, name, found, size in soonest
        ],
        "truncated": truncated,
    }


def _cancelled() -> set[str]:
    """Message ids marked cancelled and not yet forgotten (in the console's Redis)."""
    key = keys.cancelled_key(redis_access.namespace())
    members = redis_access.client().zrangebyscore(key, time.time(), "+inf")
    return {member.decode() for member in members}


def _find(
    client: redis.Redis, namespace: str, queue: str, redis_id: str, tenant_id: uuid.UUID | None
) -> tuple[dramatiq.Message | None, bytes, str | None]:
    """The entry's message, raw bytes and, when :class:`Undecodable` (the operator's only),
    None and why."""
    # NOTE: dq_name() maps "q.XQ" and "q.DQ" to q's delay queue too; a copy sent to such
    # a name would land where no worker consumes it, so only the queue's own name finds it.
    raw = (
        client.hget(f"{namespace}:{dq_name(queue)}.msgs", redis_id)
        if queue == q_name(queue)
        else None
    )
    if raw is None:
        raise NotFound("No such delayed message (it may have run already)")
    try:
        message, reason = _decode(raw), None
    except Undecodable as exc:
        message, reason = None, exc.reason
    if tenant_id is not None and (
        message is None or tenant_id_from_options(message.options) != tenant_id
    ):
        raise NotFound("No such delayed message (it may have run already)")
    return message, raw, reason


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


def _drop_undecodable(client: redis.Redis, namespace: str, queue: str, redis_id: str) -> None:
    """Remove an undecodable entry (404 when another request removed it first).

    No cancel mark: it has no message id, and no worker can run what it cannot decode.
    """
    pipe = client.pipeline(transaction=True)
    pipe.hdel(f"{namespace}:{dq_name(queue)}.msgs", redis_id)
    pipe.lrem(f"{namespace}:{dq_name(queue)}", 0, redis_id)
    removed, _ = pipe.execute()
    if not removed:
        raise NotFound("No such delayed message (it was deleted already)")


def delete_delayed(queue: str, redis_id: str, *, tenant_id: uuid.UUID | None) -> dict[str, Any]:
    """Delete one delayed message for good; return what it was. 404 when gone."""
    client, namespace = _broker()
    message, raw, reason = _find(client, namespace, queue, redis_id, tenant_id)
    if message is None:
        _drop_undecodable(client, namespace, queue, redis_id)
        return _undecodable_view(queue, redis_id, len(raw), reason)
    _claim(message)
    _cancel(client, namespace, queue, redis_id, message)
    return _view(queue, redis_id, message, len(raw))


def retry_now(
    queue: str,
    redis_id: str,
    *,
    tenant_id: uuid.UUID | None,
    send: Sender,
) -> dict[str, Any]:
    """Send a copy of a delayed message to run now (a new message id), cancel the original."""
    client, namespace = _broker()
    message, raw, _ = _find(client, namespace, queue, redis_id, tenant_id)
    if message is None:
        raise Conflict("This delayed message cannot be decoded, so it cannot be run; delete it")
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
    return _view(queue, redis_id, message, len(raw))

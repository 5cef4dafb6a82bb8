"""The operators' console API: ``/api/ops/...`` (the page at ``/ops`` reads the same figures).

Who sees what: the platform operator (``Authorization: Bearer <METRICS_TOKEN>``) sees
and acts on everything; a tenant's admins (``automation.manage``) see their tenant's
slice and act on their tenant's delayed messages and dead letters. Pausing a queue
affects every tenant, so it is the operator's alone.
"""

from __future__ import annotations

import uuid
from typing import Any

import falcon

from api.auth import authenticate
from api.endpoint import endpoint
from api.resources.operations import operator_token
from api.schemas.ops import DeadLetterQuery, DeadLetterRequeue, DelayedQuery, OverviewQuery
from shared import dead_letters
from shared.errors import Forbidden
from shared.ops import console, delayed, queues, redis_access
from workers import resend
from workers.actors import channels_outbound as _send_outbound  # noqa: F401  (enqueuer)
from workers.queues import ALL as QUEUES

TAGS = ("Operations",)
#: The permission a tenant user needs for the console: admins only.
PERMISSION = "automation.manage"
_AUTH = (
    " The operator token (METRICS_TOKEN) acts on the whole platform; tenant users holding"
    " `automation.manage` on their own tenant."
)


def ops_scope(req: falcon.Request) -> uuid.UUID | None:
    """None for the platform operator, else the calling tenant admin's tenant (401/403)."""
    if operator_token(req):
        return None
    ctx = authenticate(req)
    ctx.require(PERMISSION)
    return ctx.tenant_id


def _operator_only(req: falcon.Request) -> None:
    if ops_scope(req) is not None:
        raise Forbidden("Pausing a queue affects every tenant: only the platform operator may")


class OverviewResource:
    @endpoint(
        "Operators' console: every figure",
        public=True,
        query=OverviewQuery,
        response=dict[str, Any],
        errors=(401, 403, 503),
        description="Processed and failed per minute, busy threads, queues (depth, latency, "
        "paused), per actor counts and p50/p95/p99, per tenant and queue, delayed messages, "
        "dead letters, outbox backlog, scheduler leader and jobs. 503 names Redis when it is "
        "down." + _AUTH,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, query: OverviewQuery):
        tenant_id = ops_scope(req)
        return console.snapshot(req.context.db, QUEUES, tenant_id=tenant_id, minutes=query.minutes)


class QueuePauseResource:
    def __init__(self, paused: bool):
        self.paused = paused

    @endpoint(
        "Pause or resume a queue",
        public=True,
        response=dict[str, Any],
        errors=(401, 403, 503),
        description="Workers stop (or start again) fetching from the queue within a second; "
        "messages already fetched finish. Platform operator only.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, queue):
        _operator_only(req)
        try:
            queues.set_paused(
                redis_access.client(), redis_access.namespace(), queue, QUEUES, self.paused
            )
        except redis_access.redis.RedisError as exc:
            raise redis_access.RedisDown(exc) from exc
        return {"queue": queue, "paused": self.paused}


class DelayedResource:
    @endpoint(
        "List delayed messages (retries and scheduled)",
        public=True,
        query=DelayedQuery,
        response=dict[str, Any],
        errors=(401, 403, 409, 503),
        description="Soonest eta first; `kind` is `retry` (waiting out a backoff) or "
        "`scheduled` (sent with a delay), or, to the operator only, `undecodable` (an entry "
        "that is not a message: `raw_size` and `reason` say what; it can be deleted, not run). "
        "409 on a RabbitMQ broker." + _AUTH,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, query: DelayedQuery):
        tenant_id = ops_scope(req)
        try:
            return delayed.list_delayed(
                QUEUES, tenant_id=tenant_id, kind=query.kind, queue=query.queue, limit=query.limit
            )
        except redis_access.redis.RedisError as exc:
            raise redis_access.RedisDown(exc) from exc


class DelayedRetryResource:
    @endpoint(
        "Run a delayed message now",
        public=True,
        response=dict[str, Any],
        errors=(401, 403, 409, 503),
        description="Sends a copy (a new message id) to its queue now and cancels the "
        "delayed one. 409 for an undecodable one." + _AUTH,
        tags=TAGS,
    )
    def on_post(self, req, resp, *, queue, id):
        tenant_id = ops_scope(req)
        try:
            return delayed.retry_now(queue, id, tenant_id=tenant_id, send=resend.send)
        except redis_access.redis.RedisError as exc:
            raise redis_access.RedisDown(exc) from exc


class DelayedItemResource:
    @endpoint(
        "Delete a delayed message",
        public=True,
        status=204,
        errors=(401, 403, 409, 503),
        description="It will not run." + _AUTH,
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, queue, id):
        tenant_id = ops_scope(req)
        try:
            delayed.delete_delayed(queue, id, tenant_id=tenant_id)
        except redis_access.redis.RedisError as exc:
            raise redis_access.RedisDown(exc) from exc


class DeadLettersResource:
    @endpoint(
        "List dead letters",
        public=True,
        query=DeadLetterQuery,
        response=dict[str, Any],
        errors=(401, 403),
        description="Newest first, with the last line of each error; `next_cursor` (null on"
        " the last page) is the `cursor` of the next page." + _AUTH,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, query: DeadLetterQuery):
        tenant_id = ops_scope(req)
        session = req.context.db
        page = dead_letters.page_dead_letters(
            session,
            tenant_id=tenant_id,
            limit=query.limit,
            cursor=query.cursor,
            include_requeued=query.include_requeued,
        )
        return {
            "count": dead_letters.count_dead_letters(
                session, tenant_id=tenant_id, include_requeued=query.include_requeued
            ),
            "items": [dead_letters.dead_letter_view(row) for row in page.items],
            "next_cursor": page.next_cursor,
        }


class DeadLetterResource:
    @endpoint(
        "Inspect a dead letter",
        public=True,
        response=dict[str, Any],
        errors=(401, 403),
        description="Its arguments, options and whole traceback." + _AUTH,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, id):
        tenant_id = ops_scope(req)
        row = dead_letters.get_dead_letter(req.context.db, id, tenant_id=tenant_id)
        return dead_letters.dead_letter_view(row, full=True)

    @endpoint(
        "Delete a dead letter",
        public=True,
        status=204,
        errors=(401, 403),
        description="Forget it (it is not run)." + _AUTH,
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, id):
        tenant_id = ops_scope(req)
        dead_letters.delete_dead_letter(req.context.db, id, tenant_id=tenant_id)


class DeadLetterRequeueResource:
    @endpoint(
        "Re-enqueue a dead letter",
        public=True,
        body=DeadLetterRequeue,
        response=dict[str, Any],
        errors=(401, 403, 409, 503),
        description="Sends the message again with a fresh retry budget and the same message "
        "id; if it dies again it shows here again. 409 when already requeued. A channel "
        "send's dead letter (`send_outbound`) first puts its failed message back to `queued` "
        "(a `message.status_updated`), to go out through the normal claim; 409 "
        "`send_not_requeueable` says why not when the message is no longer failed, or its "
        "conversation, account or WhatsApp window no longer lets it be sent, and when the "
        "customer may already have it (reason `delivery_unknown`: the send is in doubt; "
        "`bad_response`: Meta took it, its answer unreadable; `accepted_after_failure`: the "
        'provider accepted it after it failed) unless the body says `{"accept_duplicate": '
        "true}`. Other actors whose retries-exhausted handler failed their row (an inbound"
        " payload, a bulk job...) first have it put back to what they process; 409"
        " `not_requeueable` says why not (finished meanwhile, or it cannot run again, such as"
        " an import whose upload was discarded). The body is optional." + _AUTH,
        tags=TAGS,
    )
    def on_post(self, req, resp, *, id, body: DeadLetterRequeue):
        tenant_id = ops_scope(req)
        row = dead_letters.requeue_dead_letter(
            req.context.db,
            id,
            tenant_id=tenant_id,
            send=resend.send,
            accept_duplicate=body.accept_duplicate,
        )
        return dead_letters.dead_letter_view(row)


ROUTES = [
    ("/api/ops/overview", OverviewResource()),
    ("/api/ops/queues/{queue}/pause", QueuePauseResource(paused=True)),
    ("/api/ops/queues/{queue}/resume", QueuePauseResource(paused=False)),
    ("/api/ops/delayed", DelayedResource()),
    ("/api/ops/delayed/{queue}/{id}", DelayedItemResource()),
    ("/api/ops/delayed/{queue}/{id}/retry", DelayedRetryResource()),
    ("/api/ops/dead-letters", DeadLettersResource()),
    ("/api/ops/dead-letters/{id:uuid}", DeadLetterResource()),
    ("/api/ops/dead-letters/{id:uuid}/requeue", DeadLetterRequeueResource()),
]

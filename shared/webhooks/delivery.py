"""One attempt of one delivery: claim the row, send the signed POST, record the outcome.

:func:`deliver` is what the ``deliver_webhook`` job runs. Three short
transactions, none held open during network I/O:

1. claim: ``UPDATE ... SET status='in_flight', locked_until=now()+timeout+margin
   WHERE status='pending' AND next_attempt_at <= now()``. A duplicate message, or one
   for a delivery not yet due, claims nothing and is a no-op.
2. send, outside any transaction, under a per-endpoint lease (:mod:`.limiter`).
3. record: the attempt row, the delivery's next state (succeeded, pending again at
   ``next_attempt_at``, failed, disabled) and the endpoint's health, together.

A worker killed between 1 and 3 leaves ``in_flight`` with an expired
``locked_until``; the sweeper makes it pending again. The receiver may then see
the same ``webhook-id`` twice: at-least-once, as the Standard Webhooks spec expects.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Connection, bindparam, func, insert, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import activity, crypto
from shared.context import Ctx
from shared.db import get_engine, session_scope
from shared.events import emit
from shared.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from shared.webhooks import health, queue, schedule, signing
from shared.webhooks.limiter import Limiter
from shared.webhooks.ssrf import UnsafeUrl

#: Bytes of request and response bodies kept in the attempt log.
MAX_LOGGED_BODY = 4096
#: Bytes of a response read at most (the rest is not waited for).
MAX_READ_BODY = 64 * 1024
#: A claim outlives the attempt's timeout by this much before the sweeper takes it back.
LOCK_MARGIN_SECONDS = 30.0
#: Retries due within this many seconds are also enqueued with a broker delay (fast path);
#: later ones are left to the sweeper.
FAST_RETRY_MAX_SECONDS = 600.0
#: A pending delivery with a message on its way is swept only this long after it is due.
SWEEP_GRACE_SECONDS = 15.0
#: Headers of a response kept in the log.
_MAX_HEADERS = 50
_ONE_SECOND = literal_column("interval '1 second'")


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed for one attempt, with what sending needs from its endpoint."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    payload: dict[str, Any]
    attempt: int
    url: str
    enabled: bool
    secrets: tuple[str, ...]
    timeout: float
    max_concurrency: int

    @property
    def is_test(self) -> bool:
        return self.event_type == "webhook.test"


@dataclass(slots=True)
class Result:
    """What one HTTP attempt did; ``error_kind`` None means a 2xx."""

    started_at: dt.datetime
    duration_ms: int
    request_headers: dict[str, str]
    request_body: str
    status_code: int | None = None
    response_headers: dict[str, str] | None = None
    response_body: str | None = None
    error_kind: str | None = None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error_kind is None


@dataclass(slots=True)
class Outcome:
    """What :func:`deliver` did: ``kind`` and, for ``retry``/``parked``, when to run again."""

    kind: str
    delay: float | None = None
    attempt: Result | None = None
    pulled: list[uuid.UUID] = field(default_factory=list)


# --- claim -------------------------------------------------------------------------------


def secrets_of(endpoint_row: Any) -> tuple[str, ...]:
    current = crypto.decrypt(endpoint_row.secret_encrypted)
    expires = endpoint_row.previous_secret_expires_at
    if endpoint_row.previous_secret_encrypted and expires and expires > dt.datetime.now(dt.UTC):
        return (current, crypto.decrypt(endpoint_row.previous_secret_encrypted))
    return (current,)


#: PERF: the hot path's statements are written once as SQL: building the equivalent
#: SQLAlchemy constructs on every job cost more CPU than the job's own HTTP call.
#: Both start with ``cfg``: PERF: asynchronous commit for the statement's own
#: transaction. A server crash may lose the last few hundred milliseconds of claims and
#: outcomes: a lost claim never happened, a lost outcome re-sends (at-least-once, and
#: receivers dedupe by webhook-id). Joining ``cfg`` makes Postgres evaluate it.
_CLAIM = text(
    """
    WITH cfg AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS v)
    UPDATE webhook_deliveries d
       SET status = 'in_flight',
           attempt_count = d.attempt_count + 1,
           locked_until = now() + make_interval(
               secs => least(e.timeout_seconds, :default_timeout) + :margin),
           last_attempt_at = now()
      FROM webhook_endpoints e, cfg
     WHERE d.id = :id AND d.status = 'pending' AND d.next_attempt_at <= now()
       AND e.id = d.endpoint_id
    RETURNING d.id, d.tenant_id, d.endpoint_id, d.event_id, d.event_type, d.payload,
              d.attempt_count, e.url, e.enabled, e.secret_encrypted,
              e.previous_secret_encrypted, e.previous_secret_expires_at,
              least(e.timeout_seconds, :default_timeout) AS timeout, e.max_concurrency
    """
)

_RECORD_SUCCESS = text(
    """
    WITH cfg AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS v),
    attempt AS (
        INSERT INTO webhook_attempts (id, tenant_id, delivery_id, attempt, started_at,
            duration_ms, request_url, request_headers, request_body, response_status,
            response_headers, response_body)
        VALUES (gen_random_uuid(), :tenant_id, :id, :attempt, :started_at, :duration_ms,
            :url, :request_headers, :request_body, :status_code, :response_headers,
            :response_body)
    ), delivery AS (
        UPDATE webhook_deliveries
           SET status = 'succeeded', finished_at = now(), locked_until = NULL,
               last_status_code = :status_code, last_error_kind = NULL
         WHERE id = :id AND status = 'in_flight' AND attempt_count = :attempt
        RETURNING endpoint_id
    ), health AS (
        -- PERF: every thread delivering to this endpoint would queue on its row lock;
        -- write only when a failure streak ends or the stamp is a minute old.
        UPDATE webhook_endpoints
           SET last_success_at = now(), first_failure_at = NULL
         WHERE id = (SELECT endpoint_id FROM delivery) AND NOT :is_test
           AND (first_failure_at IS NOT NULL OR last_success_at IS NULL
                OR last_success_at < now() - interval '60 seconds')
    )
    SELECT count(*) FROM delivery, cfg
    """
).bindparams(bindparam("request_headers", type_=JSONB), bindparam("response_headers", type_=JSONB))


def claim(connection: Connection, delivery_id: uuid.UUID, default_timeout: float) -> Claimed | None:
    """Take a due pending delivery for one attempt; None when it is not ours to send.

    ``connection`` is in autocommit mode: the claim is one statement, one transaction.
    """
    row = connection.execute(
        _CLAIM,
        {"id": delivery_id, "default_timeout": default_timeout, "margin": LOCK_MARGIN_SECONDS},
    ).one_or_none()
    if row is None:
        return None
    return Claimed(
        id=row.id,
        tenant_id=row.tenant_id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        payload=row.payload,
        attempt=row.attempt_count,
        url=row.url,
        enabled=row.enabled,
        secrets=secrets_of(row),
        timeout=float(row.timeout),
        max_concurrency=row.max_concurrency,
    )


def unclaim(session: Session, claimed: Claimed, *, park_seconds: float) -> None:
    """Give a claim back without an attempt (endpoint at its concurrency limit)."""
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == claimed.id,
            WebhookDelivery.status == "in_flight",
            WebhookDelivery.attempt_count == claimed.attempt,
        )
        .values(
            status="pending",
            attempt_count=WebhookDelivery.attempt_count - 1,
            locked_until=None,
            sweep_at=func.now() + park_seconds * _ONE_SECOND,
        )
    )


# --- send --------------------------------------------------------------------------------


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): compact JSON, the same on every attempt."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _text(raw: bytes) -> str:
    return raw[:MAX_LOGGED_BODY].decode("utf-8", errors="replace")


def send(client: httpx.Client, claimed: Claimed) -> Result:
    """POST the signed payload once; never raises for what the receiver or network does."""
    body = body_of(claimed.payload)
    timestamp = int(time.time())
    headers = signing.signed_headers(claimed.secrets, str(claimed.event_id), timestamp, body)
    result = Result(
        started_at=dt.datetime.now(dt.UTC),
        duration_ms=0,
        request_headers={**headers, "content-type": "application/json"},
        request_body=_text(body),
    )
    started = time.monotonic()
    deadline = started + claimed.timeout
    try:
        with client.stream(
            "POST",
            claimed.url,
            content=body,
            headers=headers,
            timeout=httpx.Timeout(claimed.timeout),
        ) as response:
            result.status_code = response.status_code
            result.response_headers = dict(list(response.headers.items())[:_MAX_HEADERS])
            received = bytearray()
            for chunk in response.iter_raw():
                received += chunk
                # NOTE: httpx's read timeout is per chunk; a receiver dripping bytes is
                # bounded by the attempt's own deadline.
                if len(received) >= MAX_READ_BODY or time.monotonic() > deadline:
                    break
            result.response_body = _text(bytes(received))
            result.retry_after = schedule.parse_retry_after(response.headers.get("retry-after"))
    except UnsafeUrl as exc:
        result.error_kind, result.error = "blocked", str(exc)
    except httpx.TimeoutException as exc:
        result.error_kind, result.error = "timeout", f"no answer within {claimed.timeout:g} s"
        result.error += f" ({type(exc).__name__})"
    except httpx.ConnectError as exc:
        result.error_kind, result.error = "connection", f"connect failed: {exc}"[:500]
    except (httpx.HTTPError, OSError) as exc:
        result.error_kind = "connection"
        result.error = f"{type(exc).__name__}: {exc}"[:500]
    result.duration_ms = int((time.monotonic() - started) * 1000)
    if result.error_kind is None and result.status_code is not None:
        if 300 <= result.status_code < 400:
            result.error_kind, result.error = "redirect", "redirects are not followed"
        elif not 200 <= result.status_code < 300:
            result.error_kind, result.error = "status", f"HTTP {result.status_code}"
    return result


# --- record ------------------------------------------------------------------------------


def _log_attempt(session: Session, claimed: Claimed, result: Result) -> None:
    session.execute(
        insert(WebhookAttempt).values(
            tenant_id=claimed.tenant_id,
            delivery_id=claimed.id,
            attempt=claimed.attempt,
            started_at=result.started_at,
            duration_ms=result.duration_ms,
            request_url=claimed.url,
            request_headers=result.request_headers,
            request_body=result.request_body,
            response_status=result.status_code,
            response_headers=result.response_headers,
            response_body=result.response_body,
            error_kind=result.error_kind,
            error=result.error,
        )
    )


def _finish(session: Session, claimed: Claimed, result: Result | None, **values: Any) -> bool:
    """Move our claimed row on; False when the claim was lost (the sweeper took it back)."""
    changed = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == claimed.id,
            WebhookDelivery.status == "in_flight",
            WebhookDelivery.attempt_count == claimed.attempt,
        )
        .values(
            locked_until=None,
            last_status_code=result.status_code if result else None,
            last_error_kind=result.error_kind if result else None,
            **values,
        )
    ).rowcount
    return bool(changed)


def record_success(connection: Connection, claimed: Claimed, result: Result) -> Outcome:
    """Log a 2xx attempt and mark the delivery succeeded: one statement, one round trip."""
    recorded = connection.execute(
        _RECORD_SUCCESS,
        {
            "tenant_id": claimed.tenant_id,
            "id": claimed.id,
            "attempt": claimed.attempt,
            "started_at": result.started_at,
            "duration_ms": result.duration_ms,
            "url": claimed.url,
            "request_headers": result.request_headers,
            "request_body": result.request_body,
            "status_code": result.status_code,
            "response_headers": result.response_headers,
            "response_body": result.response_body,
            "is_test": claimed.is_test,
        },
    )
    return Outcome("succeeded" if recorded.scalar() else "lost", attempt=result)


def record(
    session: Session, claimed: Claimed, result: Result, *, rng: random.Random | None = None
) -> Outcome:
    """Log the attempt and move the delivery and its endpoint on, in one transaction."""
    if result.ok:
        return record_success(session.connection(), claimed, result)
    _log_attempt(session, claimed, result)
    endpoint = WebhookEndpoint
    if claimed.is_test:
        _finish(session, claimed, result, status="failed", finished_at=func.now())
        return Outcome("failed", attempt=result)
    if result.status_code == 410:
        _finish(session, claimed, result, status="disabled", finished_at=func.now())
        health.disable_by_id(session, claimed.endpoint_id, "the receiver answered 410 Gone")
        return Outcome("disabled", attempt=result)
    session.execute(
        update(endpoint)
        .where(endpoint.id == claimed.endpoint_id, endpoint.first_failure_at.is_(None))
        .values(first_failure_at=func.now())
    )
    delay = schedule.next_delay(
        claimed.attempt,
        status=result.status_code,
        error_kind=result.error_kind,
        retry_after=result.retry_after,
        rng=rng,
    )
    if delay is None:
        if _finish(session, claimed, result, status="failed", finished_at=func.now()):
            _exhausted(session, claimed, result)
        return Outcome("failed", attempt=result)
    due = func.now() + delay * _ONE_SECOND
    fast = delay <= FAST_RETRY_MAX_SECONDS
    sweep_at = due + SWEEP_GRACE_SECONDS * _ONE_SECOND if fast else due
    if not _finish(
        session, claimed, result, status="pending", next_attempt_at=due, sweep_at=sweep_at
    ):
        return Outcome("lost", attempt=result)
    if fast:
        queue.enqueue_after_commit(session, [claimed.id], delay)
    return Outcome("retry", delay=delay, attempt=result)


def _exhausted(session: Session, claimed: Claimed, result: Result) -> None:
    exhaust(
        session,
        tenant_id=claimed.tenant_id,
        delivery_id=claimed.id,
        endpoint_id=claimed.endpoint_id,
        event_id=claimed.event_id,
        event_type=claimed.event_type,
        attempts=claimed.attempt,
        last_status_code=result.status_code,
        last_error_kind=result.error_kind,
    )


def exhaust(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    delivery_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    event_id: uuid.UUID,
    event_type: str,
    attempts: int,
    last_status_code: int | None,
    last_error_kind: str | None,
) -> None:
    """Record (and announce) that a delivery ran out of its schedule."""
    ctx = Ctx.system(tenant_id)
    data = {
        "delivery_id": str(delivery_id),
        "endpoint_id": str(endpoint_id),
        "event_id": str(event_id),
        "event_type": event_type,
        "attempts": attempts,
        "last_status_code": last_status_code,
        "last_error_kind": last_error_kind,
        "reason": f"no 2xx after {attempts} attempts",
    }
    activity.record(
        session, ctx, "webhook.delivery_exhausted", "webhook_delivery", delivery_id, after=data
    )
    # NOTE: an exhausted delivery *of* a webhook.* event emits nothing, or two broken
    # endpoints subscribed to each other's failures would feed each other forever.
    if not event_type.startswith("webhook."):
        emit(session, "webhook.delivery_exhausted", data, tenant_id=tenant_id, actor=ctx.actor)


def _disabled(session: Session, claimed: Claimed) -> Outcome:
    _finish(session, claimed, None, status="disabled", finished_at=func.now())
    return Outcome("disabled")


# --- the job -----------------------------------------------------------------------------


def pull_parked(session: Session, endpoint_id: uuid.UUID) -> list[uuid.UUID]:
    """The oldest due pending delivery of an endpoint, re-armed so a lost message is swept."""
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= func.now(),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return list(
        session.scalars(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == due)
            .values(sweep_at=func.now() + SWEEP_GRACE_SECONDS * _ONE_SECOND)
            .returning(WebhookDelivery.id)
        )
    )


def deliver(
    delivery_id: uuid.UUID,
    *,
    client: httpx.Client,
    limiter: Limiter | None,
    default_timeout: float,
    park_seconds: float = 5.0,
) -> Outcome:
    """Run one attempt of ``delivery_id`` if it is due; see the module docstring.

    PERF: the common path is two single-statement autocommit transactions on one
    pooled connection (claim, then record a 2xx), which sits idle and outside any
    transaction while the POST is in flight; the rare paths use ordinary sessions.
    """
    with get_engine().connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        claimed = claim(connection, delivery_id, default_timeout)
        if claimed is None:
            return Outcome("noop")
        if not claimed.enabled:
            with session_scope() as session:
                return _disabled(session, claimed)
        lease = None
        if limiter is not None:
            lease = limiter.acquire(
                claimed.endpoint_id, claimed.max_concurrency, claimed.timeout + LOCK_MARGIN_SECONDS
            )
            if lease is None:
                with session_scope() as session:
                    unclaim(session, claimed, park_seconds=park_seconds)
                return Outcome("parked", delay=park_seconds)
        try:
            result = send(client, claimed)
        finally:
            parked_waiting = limiter.release(claimed.endpoint_id, lease) if lease else False
        try:
            if result.ok and not parked_waiting:
                return record_success(connection, claimed, result)
            with session_scope() as session:
                outcome = record(session, claimed, result)
                if parked_waiting:
                    outcome.pulled = pull_parked(session, claimed.endpoint_id)
                    queue.enqueue_after_commit(session, outcome.pulled)
        except IntegrityError:
            # NOTE: the endpoint (and its deliveries) was deleted while we were sending.
            return Outcome("gone", attempt=result)
    return outcome

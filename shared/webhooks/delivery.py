"""One attempt of one delivery: claim the row, send the signed POST, record the outcome.

The engine (:mod:`shared.webhooks.engine`) runs these steps for a batch at a
time; this module holds what one attempt is. Three short transactions, none held
open during network I/O:

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
import functools
import itertools
import json
import logging
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Connection, func, insert, literal_column, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from shared import activity, committed_writes, crypto
from shared.context import Ctx
from shared.events import emit
from shared.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from shared.sql import storable_text
from shared.webhooks import health, queue, schedule, signing, transport
from shared.webhooks.ssrf import UnsafeUrl

log = logging.getLogger(__name__)

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


#: PERF: decrypting an endpoint's secret on every attempt cost as much as signing;
#: keyed by the ciphertext, so a rotated secret is a new entry.
_decrypt = functools.lru_cache(maxsize=1024)(crypto.decrypt)


def secrets_of(endpoint_row: Any) -> tuple[str, ...]:
    """The secrets that sign: the current one, and the previous one within its grace day."""
    current = _decrypt(endpoint_row.secret_encrypted)
    expires = endpoint_row.previous_secret_expires_at
    if endpoint_row.previous_secret_encrypted and expires and expires > dt.datetime.now(dt.UTC):
        return (current, _decrypt(endpoint_row.previous_secret_encrypted))
    return (current,)


#: The endpoint columns the engine stamps (health): no cache of endpoints forgets for them.
_HEALTH_ONLY = {
    committed_writes.COLUMNS: {"webhook_endpoints": ("last_success_at", "first_failure_at")}
}

#: PERF: written once as SQL: building the equivalent SQLAlchemy constructs for every
#: attempt cost more CPU than the attempt's own HTTP call. ``cfg`` makes the
#: statement's own transaction commit asynchronously: a server crash may lose the last
#: few hundred milliseconds of outcomes, and a lost outcome re-sends (at-least-once;
#: receivers dedupe by webhook-id). Joining ``cfg`` makes Postgres evaluate it.
#: NOTE: the endpoints it stamps are locked first (``stamped``, FOR NO KEY UPDATE, in id
#: order), then the deliveries: the order ``delete_endpoint`` takes (the endpoint, then the
#: cascade to its deliveries). Stamped after its deliveries were locked, an endpoint being
#: deleted was a deadlock. ``(SELECT count(*) FROM stamped) >= 0`` makes the delivery
#: UPDATE (and the attempt rows) wait for that lock before they touch a delivery.
_RECORD_SUCCESSES = text(
    """
    WITH cfg AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS v),
    done AS MATERIALIZED (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
            id uuid, tenant_id uuid, endpoint_id uuid, attempt int, started_at timestamptz,
            duration_ms int, url text, request_headers jsonb, request_body text,
            status_code int, response_headers jsonb, response_body text, is_test boolean)
    ), stamped AS MATERIALIZED (
        -- PERF: every batch delivering to this endpoint would queue on its row lock;
        -- write only when a failure streak ends or the stamp is a minute old.
        SELECT e.id FROM webhook_endpoints e
         WHERE e.id IN (SELECT endpoint_id FROM done WHERE NOT is_test)
           AND (e.first_failure_at IS NOT NULL OR e.last_success_at IS NULL
                OR e.last_success_at < now() - interval '60 seconds')
         ORDER BY e.id
           FOR NO KEY UPDATE
    ), attempt AS (
        INSERT INTO webhook_attempts (id, tenant_id, delivery_id, attempt, started_at,
            duration_ms, request_url, request_headers, request_body, response_status,
            response_headers, response_body)
        SELECT gen_random_uuid(), tenant_id, id, attempt, started_at, duration_ms, url,
               request_headers, request_body, status_code, response_headers, response_body
          FROM done
         WHERE (SELECT count(*) FROM stamped) >= 0
    ), delivery AS (
        UPDATE webhook_deliveries d
           SET status = 'succeeded', finished_at = now(), locked_until = NULL,
               last_status_code = done.status_code, last_error_kind = NULL
          FROM done
         WHERE d.id = done.id AND d.status = 'in_flight' AND d.attempt_count = done.attempt
           AND (SELECT count(*) FROM stamped) >= 0
        RETURNING d.id, d.endpoint_id, done.is_test
    ), health AS (
        UPDATE webhook_endpoints
           SET last_success_at = now(), first_failure_at = NULL
         WHERE id IN (SELECT id FROM stamped)
           AND id IN (SELECT endpoint_id FROM delivery WHERE NOT is_test)
    )
    SELECT delivery.id FROM delivery, cfg
    """
).execution_options(**_HEALTH_ONLY)


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


def logged_text(raw: bytes) -> str:
    """What the attempt log keeps of a body: its first bytes, as text.

    NOTE: storable: a NUL in a receiver's answer must not fail recording a 2xx, or the
    delivery is sent again each time its claim is swept.
    """
    return storable_text(raw[:MAX_LOGGED_BODY].decode("utf-8", errors="replace"))


def response_headers_of(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The response headers the attempt log keeps (the first few, lower-cased, storable)."""
    return {
        _header_text(k.lower()): _header_text(v) for k, v in itertools.islice(items, _MAX_HEADERS)
    }


def _header_text(value: str) -> str:
    """A header as text PostgreSQL stores: bytes that are not UTF-8 become U+FFFD.

    NOTE: aiohttp hands such bytes over as lone surrogates, which jsonb refuses: the
    record of a 2xx failed and the delivery was sent again each time it was swept.
    """
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "replace")
    return storable_text(raw.decode("utf-8", "replace"))


def classify(result: Result) -> Result:
    """Turn a completed exchange into a failure unless it answered 2xx (redirects included)."""
    if result.error_kind is None and result.status_code is not None:
        if 300 <= result.status_code < 400:
            result.error_kind, result.error = "redirect", "redirects are not followed"
        elif not 200 <= result.status_code < 300:
            result.error_kind, result.error = "status", f"HTTP {result.status_code}"
    if result.response_headers and result.error_kind in ("status", "redirect"):
        result.retry_after = schedule.parse_retry_after(result.response_headers.get("retry-after"))
    return result


def prepare(claimed: Claimed) -> tuple[bytes, dict[str, str], Result]:
    """The attempt's body, its signature headers (signed now) and its log entry, to fill in."""
    body = body_of(claimed.payload)
    timestamp = int(time.time())
    headers = signing.signed_headers(claimed.secrets, str(claimed.event_id), timestamp, body)
    result = Result(
        started_at=dt.datetime.now(dt.UTC),
        duration_ms=0,
        request_headers={**headers, "content-type": "application/json"},
        request_body=logged_text(body),
    )
    return body, headers, result


def send(client: httpx.Client, claimed: Claimed) -> Result:
    """POST the signed payload once; never raises for what the receiver or network does."""
    body, headers, result = prepare(claimed)
    started = time.monotonic()
    deadline = started + claimed.timeout
    try:
        # NOTE: httpx's timeouts are per operation; the transport's deadline bounds them all.
        with (
            transport.deadline(claimed.timeout),
            client.stream(
                "POST",
                claimed.url,
                content=body,
                headers=headers,
                timeout=httpx.Timeout(claimed.timeout),
            ) as response,
        ):
            result.status_code = response.status_code
            result.response_headers = response_headers_of(response.headers.items())
            received = bytearray()
            try:
                for chunk in response.iter_raw():
                    received += chunk
                    if len(received) >= MAX_READ_BODY or time.monotonic() > deadline:
                        break
            except httpx.TimeoutException:
                # NOTE: the status is in: a body still dripping at the deadline is cut short.
                if time.monotonic() < deadline:
                    raise
            result.response_body = logged_text(bytes(received))
    except UnsafeUrl as exc:
        result.error_kind, result.error = "blocked", str(exc)
    except (httpx.InvalidURL, UnicodeError) as exc:
        # NOTE: not an httpx.HTTPError; a URL saved before its host was checked ends here.
        result.error_kind, result.error = "invalid_url", f"the URL cannot be sent to: {exc}"[:500]
    except httpx.TimeoutException as exc:
        result.error_kind, result.error = "timeout", f"no answer within {claimed.timeout:g} s"
        result.error += f" ({type(exc).__name__})"
    except httpx.ConnectError as exc:
        result.error_kind, result.error = "connection", f"connect failed: {exc}"[:500]
    except (httpx.HTTPError, OSError) as exc:
        result.error_kind = "connection"
        result.error = f"{type(exc).__name__}: {exc}"[:500]
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return classify(result)


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


def _success_row(claimed: Claimed, result: Result) -> dict:
    return {
        "id": str(claimed.id),
        "tenant_id": str(claimed.tenant_id),
        "endpoint_id": str(claimed.endpoint_id),
        "attempt": claimed.attempt,
        "started_at": result.started_at.isoformat(),
        "duration_ms": result.duration_ms,
        "url": claimed.url,
        "request_headers": result.request_headers,
        "request_body": result.request_body,
        "status_code": result.status_code,
        "response_headers": result.response_headers,
        "response_body": result.response_body,
        "is_test": claimed.is_test,
    }


def record_successes(
    connection: Connection, done: Sequence[tuple[Claimed, Result]]
) -> dict[uuid.UUID, Outcome]:
    """Log the 2xx attempts and mark their deliveries succeeded, in one statement.

    If the statement fails (an endpoint deleted while we were sending, a
    deadlock), each is recorded on its own so one row cannot lose the others; a
    delivery whose endpoint was deleted meanwhile is ``gone``.
    """
    if not done:
        return {}
    rows = json.dumps([_success_row(c, r) for c, r in done])
    try:
        recorded = set(connection.execute(_RECORD_SUCCESSES, {"rows": rows}).scalars())
    except IntegrityError:
        if len(done) > 1:
            return _one_by_one(connection, done)
        # NOTE: the endpoint (and its deliveries) was deleted while we were sending.
        return {c.id: Outcome("gone", attempt=r) for c, r in done}
    except DBAPIError:
        if len(done) > 1:
            return _one_by_one(connection, done)
        raise
    return {c.id: Outcome("succeeded" if c.id in recorded else "lost", attempt=r) for c, r in done}


def _one_by_one(
    connection: Connection, done: Sequence[tuple[Claimed, Result]]
) -> dict[uuid.UUID, Outcome]:
    log.info("batch record failed; recording %d attempts one by one", len(done))
    return {c.id: record_success(connection, c, r) for c, r in done}


def record_success(connection: Connection, claimed: Claimed, result: Result) -> Outcome:
    """Log one 2xx attempt and mark its delivery succeeded (one statement)."""
    return record_successes(connection, [(claimed, result)])[claimed.id]


def record(
    session: Session, claimed: Claimed, result: Result, *, rng: random.Random | None = None
) -> Outcome:
    """Log the attempt and move the delivery and its endpoint on, in one transaction.

    NOTE: the endpoint is written (locked) before the attempt is logged (its foreign key
    locks the delivery, FOR KEY SHARE): the order ``delete_endpoint`` takes (the endpoint,
    then the cascade to its deliveries). The other way round, an endpoint deleted
    meanwhile was a deadlock; now the delete goes first and the attempt's insert finds
    the delivery gone (an IntegrityError: the caller's ``gone``).
    """
    if result.ok:
        return record_success(session.connection(), claimed, result)
    endpoint = WebhookEndpoint
    if claimed.is_test:
        _log_attempt(session, claimed, result)
        _finish(session, claimed, result, status="failed", finished_at=func.now())
        return Outcome("failed", attempt=result)
    if result.status_code == 410:
        health.disable_by_id(session, claimed.endpoint_id, "the receiver answered 410 Gone")
        _log_attempt(session, claimed, result)
        _finish(session, claimed, result, status="disabled", finished_at=func.now())
        return Outcome("disabled", attempt=result)
    session.execute(
        update(endpoint)
        .where(endpoint.id == claimed.endpoint_id, endpoint.first_failure_at.is_(None))
        .values(first_failure_at=func.now())
        .execution_options(**_HEALTH_ONLY)
    )
    _log_attempt(session, claimed, result)
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


def end_disabled(session: Session, claimed: Claimed) -> Outcome:
    """End a delivery claimed for an endpoint that was disabled since it was queued."""
    _finish(session, claimed, None, status="disabled", finished_at=func.now())
    return Outcome("disabled")


# --- the job -----------------------------------------------------------------------------


def pull_parked(session: Session, endpoint_id: uuid.UUID, count: int = 1) -> list[uuid.UUID]:
    """The oldest ``count`` due pending deliveries of an endpoint, re-armed so a lost message
    is swept."""
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= func.now(),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(count)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return list(
        session.scalars(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due))
            .values(sweep_at=func.now() + SWEEP_GRACE_SECONDS * _ONE_SECOND)
            .returning(WebhookDelivery.id)
        )
    )

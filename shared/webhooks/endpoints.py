"""The outgoing-webhooks services behind the API: endpoints, deliveries, resend, recover, test."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from typing import Any

import httpx
from sqlalchemy import exists, func, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from shared import activity, crypto, web_threads
from shared.automation import rules as automation_rules
from shared.automation.actions import WEBHOOK_ENDPOINTS
from shared.config import get_settings
from shared.context import Ctx
from shared.db import session_scope
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from shared.pagination import Page, paginate
from shared.sql import lock_key, tenant_row
from shared.webhooks import catalogue, delivery, health, queue, signing, transport
from shared.webhooks.ssrf import Policy, UnsafeUrl, check_url
from shared.webhooks.views import AttemptView, DeliveryView, WebhookView

PERMISSION = "webhooks.manage"
#: Endpoints a workspace may have (see _check_room).
MAX_ENDPOINTS = 20
#: How long a rotated-out secret keeps signing next to the new one.
ROTATION_OVERLAP = dt.timedelta(hours=24)
#: Most deliveries one recover call re-sends.
MAX_RECOVER = 1000
#: Longest window one recover call covers.
MAX_RECOVER_WINDOW = dt.timedelta(days=31)


def _check_url(url: str, policy: Policy | None) -> str:
    try:
        return check_url(url, policy or Policy.from_settings())
    except UnsafeUrl as exc:
        raise ValidationFailed.field("url", str(exc)) from exc


def _check_types(event_types: list[str]) -> list[str]:
    unknown = [t for t in event_types if not catalogue.is_subscribable(t)]
    if unknown:
        raise ValidationFailed(
            f"Unknown or unsubscribable event types: {', '.join(unknown)}",
            details=[
                {"field": f"event_types[{event_types.index(t)}]", "message": f"unknown '{t}'"}
                for t in unknown
            ],
        )
    return sorted(set(event_types))


def list_endpoints(
    session: Session, ctx: Ctx, *, limit: int, cursor: str | None = None
) -> Page[WebhookEndpoint]:
    ctx.require(PERMISSION)
    query = select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == ctx.tenant_id)
    return paginate(
        session,
        query,
        created_at=WebhookEndpoint.created_at,
        id_column=WebhookEndpoint.id,
        limit=limit,
        cursor=cursor,
    )


def get_endpoint(
    session: Session, ctx: Ctx, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> WebhookEndpoint:
    ctx.require(PERMISSION)
    return tenant_row(
        session,
        WebhookEndpoint,
        ctx.tenant_id,
        endpoint_id,
        missing="Webhook not found",
        lock=for_update,
    )


def create_endpoint(
    session: Session,
    ctx: Ctx,
    *,
    url: str,
    event_types: list[str],
    description: str = "",
    is_active: bool = True,
    max_concurrency: int | None = None,
    timeout_seconds: float | None = None,
    policy: Policy | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint; return it and its signing secret (shown to the caller once)."""
    ctx.require(PERMISSION)
    _check_room(session, ctx)
    settings = get_settings()
    secret = signing.generate_secret()
    endpoint = WebhookEndpoint(
        tenant_id=ctx.tenant_id,
        url=_check_url(url, policy),
        description=description,
        event_types=_check_types(event_types),
        enabled=is_active,
        secret_encrypted=crypto.encrypt(secret),
        max_concurrency=max_concurrency or settings.webhook_max_concurrency,
        timeout_seconds=timeout_seconds or settings.webhook_timeout_seconds,
        created_by=ctx.user_id,
    )
    session.add(endpoint)
    session.flush()
    session.refresh(endpoint)
    activity.record(
        session, ctx, "webhook.created", "webhook", endpoint.id, after=WebhookView.data(endpoint)
    )
    return endpoint, secret


class TooManyEndpoints(Conflict):
    code = "endpoint_limit"


def _check_room(session: Session, ctx: Ctx) -> None:
    """409 once the tenant has :data:`MAX_ENDPOINTS` endpoints.

    WHY: every event is delivered to each subscribed endpoint, so without a bound one
    tenant's endpoints multiply every event's deliveries (and the workers' share) at will.
    Stripe allows 16. Serialized per tenant, so two creations cannot both take the last.
    """
    lock_key(session, f"webhook_endpoints:{ctx.tenant_id}")
    count = session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == ctx.tenant_id)
    )
    if count >= MAX_ENDPOINTS:
        raise TooManyEndpoints(
            f"A workspace has at most {MAX_ENDPOINTS} webhook endpoints; delete one first"
        )


def update_endpoint(
    session: Session,
    ctx: Ctx,
    endpoint_id: uuid.UUID,
    changes: dict[str, Any],
    *,
    policy: Policy | None = None,
) -> tuple[WebhookEndpoint, str | None]:
    """Apply the fields sent; ``rotate_secret`` returns the new secret (else None).

    Re-enabling clears the disable reason and the failure streak, so the five-day
    clock starts again.
    """
    for field in ("url", "event_types", "description", "is_active"):
        if field in changes and changes[field] is None:
            raise ValidationFailed.field(field, "may not be null")
    endpoint = get_endpoint(session, ctx, endpoint_id, for_update=True)
    before = WebhookView.data(endpoint)
    if "url" in changes:
        endpoint.url = _check_url(changes["url"], policy)
    if "event_types" in changes:
        endpoint.event_types = _check_types(changes["event_types"])
    for field in ("description", "max_concurrency", "timeout_seconds"):
        if changes.get(field) is not None:
            setattr(endpoint, field, changes[field])
    new_secret = None
    if changes.get("rotate_secret"):
        new_secret = signing.generate_secret()
        endpoint.previous_secret_encrypted = endpoint.secret_encrypted
        endpoint.previous_secret_expires_at = dt.datetime.now(dt.UTC) + ROTATION_OVERLAP
        endpoint.secret_encrypted = crypto.encrypt(new_secret)
    if changes.get("is_active") is False and endpoint.enabled:
        health.disable(session, ctx, endpoint, "disabled by its owner")
    elif changes.get("is_active") and not endpoint.enabled:
        endpoint.enabled = True
        endpoint.disabled_reason = None
        endpoint.disabled_at = None
        endpoint.first_failure_at = None
    session.flush()
    session.refresh(endpoint)
    after = WebhookView.data(endpoint)
    action = "webhook.secret_rotated" if new_secret else "webhook.updated"
    activity.record(session, ctx, action, "webhook", endpoint.id, before=before, after=after)
    return endpoint, new_secret


def delete_endpoint(session: Session, ctx: Ctx, endpoint_id: uuid.UUID) -> None:
    """Delete an endpoint; its deliveries and their pending retries go with it (cascade),
    and the automation rules sending to it forget it."""
    endpoint = get_endpoint(session, ctx, endpoint_id, for_update=True)
    before = WebhookView.data(endpoint)
    automation_rules.forget_referent(session, ctx, WEBHOOK_ENDPOINTS, endpoint.id)
    session.delete(endpoint)
    activity.record(session, ctx, "webhook.deleted", "webhook", endpoint.id, before=before)


# --- deliveries ----------------------------------------------------------------------------


def _with_attempts(session: Session, deliveries: list[WebhookDelivery]) -> list[dict[str, Any]]:
    attempts: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    if deliveries:
        rows = session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_([d.id for d in deliveries]))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt, WebhookAttempt.started_at)
        )
        for row in rows:
            attempts[row.delivery_id].append(AttemptView.data(row))
    items = []
    for d in deliveries:
        data = {name: getattr(d, name, None) for name in DeliveryView.model_fields}
        data["attempts"] = attempts[d.id]
        if d.status != "pending":
            data["next_attempt_at"] = None
        items.append(DeliveryView.model_validate(data).model_dump(mode="json"))
    return items


def list_deliveries(
    session: Session,
    ctx: Ctx,
    endpoint_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    event_type: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Page[dict[str, Any]]:
    """Deliveries of one endpoint, newest first, each with its attempts."""
    get_endpoint(session, ctx, endpoint_id)
    d = WebhookDelivery
    query = select(d).where(d.tenant_id == ctx.tenant_id, d.endpoint_id == endpoint_id)
    if status:
        query = query.where(d.status == status)
    if event_type:
        query = query.where(d.event_type == event_type)
    if since:
        query = query.where(d.created_at >= since)
    if until:
        query = query.where(d.created_at < until)
    page = paginate(
        session, query, created_at=d.created_at, id_column=d.id, limit=limit, cursor=cursor
    )
    return Page(_with_attempts(session, list(page.items)), page.next_cursor)


def _resend(session: Session, ctx: Ctx, originals: list[WebhookDelivery]) -> list[uuid.UUID]:
    """Insert a resend of each original, which the caller locked (``FOR NO KEY UPDATE``:
    SQLAlchemy's ``key_share=True``; two resends of one original queue on it).

    WHY the lock: the retention purge deletes old final deliveries (``FOR UPDATE SKIP
    LOCKED``). An original read unlocked could be purged before the insert, whose
    ``resend_of`` then failed its foreign key: a 409 instead of the 404 of a gone
    delivery. Locked, the purge skips it; or the read waits for the purge and sees it gone.
    """
    if not originals:
        return []
    ids = list(
        session.scalars(
            insert(WebhookDelivery)
            .values(
                [
                    {
                        "id": uuid.uuid4(),
                        "tenant_id": o.tenant_id,
                        "endpoint_id": o.endpoint_id,
                        "event_id": o.event_id,
                        "event_type": o.event_type,
                        "payload": o.payload,
                        "resend_of": o.id,
                        "sweep_at": func.now() + dt.timedelta(seconds=delivery.SWEEP_GRACE_SECONDS),
                    }
                    for o in originals
                ]
            )
            .returning(WebhookDelivery.id)
        )
    )
    queue.enqueue_after_commit(session, ids)
    return ids


def _kept_endpoint(session: Session, ctx: Ctx, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """The endpoint, locked FOR KEY SHARE: it is not deleted before this transaction ends.

    NOTE: locked before any of its deliveries, the order ``delete_endpoint`` takes (the
    endpoint, then the cascade to its deliveries). A resend locked its original first and
    then inserted the new delivery, whose foreign key waited for the endpoint: with the
    endpoint being deleted, a deadlock. KEY SHARE, the least that keeps it: two resends,
    or a resend and a delivery stamping the endpoint's health, do not wait for each other.
    """
    ctx.require(PERMISSION)
    endpoint = session.scalar(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == ctx.tenant_id, WebhookEndpoint.id == endpoint_id)
        .with_for_update(read=True, key_share=True)
    )
    if endpoint is None:
        raise NotFound("Webhook not found")
    return endpoint


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise ValidationFailed.field("is_active", "re-enable the webhook before resending")


class ResendPending(Conflict):
    code = "resend_pending"


def _refuse_unfinished_resend(session: Session, original: WebhookDelivery) -> None:
    """409 naming the resend of this event to this endpoint that is not finished yet.

    WHY: a client whose resend call timed out retries it; each call queued another copy,
    and the receiver got the event once per retry. The state, not a client-sent key,
    decides, so a retry without ``Idempotency-Key`` and a double click are safe too, the
    rule ``recover`` already follows. Once that resend is over (succeeded or failed), the
    event may be resent again. Serialized per event (resending the original and resending
    its copy lock different rows), so two calls at once cannot both see none.
    """
    lock_key(session, f"webhook_resend:{original.endpoint_id}:{original.event_id}")
    d = WebhookDelivery
    pending = session.execute(
        select(d.id, d.status)
        .where(
            d.endpoint_id == original.endpoint_id,
            d.event_id == original.event_id,
            d.resend_of.is_not(None),
            d.status.in_(("pending", "in_flight")),
        )
        .order_by(d.created_at)
        .limit(1)
    ).one_or_none()
    if pending is not None:
        raise ResendPending(
            f"A resend of this event is still {pending.status.replace('_', ' ')}:"
            f" delivery {pending.id}; wait for it to finish",
            details=[{"delivery_id": str(pending.id), "status": pending.status}],
        )


def resend_delivery(
    session: Session, ctx: Ctx, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> uuid.UUID:
    """Send one delivery's event again, as a new delivery with the same ``webhook-id``.

    At most one resend of an event to an endpoint is unfinished at a time (409 naming it).
    """
    endpoint = _kept_endpoint(session, ctx, endpoint_id)
    original = session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.tenant_id == ctx.tenant_id,
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.id == delivery_id,
        )
        .with_for_update(key_share=True)
    ).one_or_none()
    if original is None:
        raise NotFound("Delivery not found")
    if original.event_type == catalogue.TEST_EVENT:
        # WHY: a ping is no event of the workspace: queued as a resend it reached the
        # receiver through the event queue as if it were one, an old ping replayed with
        # no one waiting for its result. A new test answers inline; recover skips them too.
        raise ValidationFailed.field(
            "delivery_id",
            f"a {catalogue.TEST_EVENT} delivery is a test ping and is not resent;"
            " send a new one with POST /api/outgoing-webhooks/{id}/test",
        )
    _require_enabled(endpoint)
    _refuse_unfinished_resend(session, original)
    [new_id] = _resend(session, ctx, [original])
    activity.record(
        session,
        ctx,
        "webhook.delivery_resent",
        "webhook_delivery",
        new_id,
        after={"resend_of": str(original.id), "endpoint_id": str(endpoint_id)},
    )
    return new_id


def recover(
    session: Session, ctx: Ctx, endpoint_id: uuid.UUID, *, since: dt.datetime, until: dt.datetime
) -> list[uuid.UUID]:
    """Resend once each event whose deliveries in [since, until) failed (or were disabled).

    An event is sent again at most once, from its newest failed delivery in the
    window, and not at all while a delivery of it to this endpoint is pending,
    in flight or has succeeded (a resend that failed too does not count).
    """
    if until <= since:
        raise ValidationFailed.field("until", "must be after since")
    if until - since > MAX_RECOVER_WINDOW:
        raise ValidationFailed.field(
            "until", f"the window is at most {MAX_RECOVER_WINDOW.days} days"
        )
    # NOTE: locked, so a second recover of the endpoint (a double click) waits for this
    # one to commit and then sees its resends: else both resent every event.
    endpoint = get_endpoint(session, ctx, endpoint_id, for_update=True)
    _require_enabled(endpoint)
    d, sibling = WebhookDelivery, aliased(WebhookDelivery)
    # Siblings are the other deliveries of the same event to this endpoint: the
    # original and every resend share its event_id.
    same_event = (sibling.endpoint_id == d.endpoint_id, sibling.event_id == d.event_id)
    already = exists().where(*same_event, sibling.status.in_(("pending", "in_flight", "succeeded")))
    newer_failure = exists().where(
        *same_event,
        sibling.status.in_(("failed", "disabled")),
        sibling.created_at >= since,
        sibling.created_at < until,
        tuple_(sibling.created_at, sibling.id) > tuple_(d.created_at, d.id),
    )
    originals = list(
        session.scalars(
            select(d)
            .where(
                d.tenant_id == ctx.tenant_id,
                d.endpoint_id == endpoint_id,
                d.status.in_(("failed", "disabled")),
                d.event_type != catalogue.TEST_EVENT,
                d.created_at >= since,
                d.created_at < until,
                ~already,
                ~newer_failure,
            )
            .order_by(d.created_at)
            .limit(MAX_RECOVER)
            .with_for_update(of=d, key_share=True)
        )
    )
    ids = _resend(session, ctx, originals)
    activity.record(
        session,
        ctx,
        "webhook.recovered",
        "webhook",
        endpoint_id,
        after={"since": since.isoformat(), "until": until.isoformat(), "resent": len(ids)},
    )
    return ids


def send_test(
    session: Session, ctx: Ctx, endpoint_id: uuid.UUID, *, client: httpx.Client | None = None
) -> dict[str, Any]:
    """Send a signed ``webhook.test`` event now and return the attempt's result.

    NOTE: the delivery row is committed before the POST and the result recorded
    after, in a second transaction, so no transaction stays open for up to the
    timeout. A test is one attempt: it is not retried and does not count towards
    the endpoint's health. The request waits for the receiver in a web thread, so it
    takes one of the process's waiting slots first (429 when none is free; see
    :func:`shared.web_threads.waiting_on_third_party`), before anything is written.
    """
    endpoint = _kept_endpoint(session, ctx, endpoint_id)
    with web_threads.waiting_on_third_party():
        return _send_test(session, ctx, endpoint, client)


def _kept_endpoint(session: Session, ctx: Ctx, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """The endpoint, share-locked (``FOR KEY SHARE``) until the test's delivery is committed.

    WHY: read unlocked, an endpoint whose deletion had not committed yet was found; the
    delivery's foreign key then waited for the deletion and failed (a bare 409). Locked,
    a deletion under way is waited for and the endpoint is gone (404, nothing sent); one
    starting later waits for the delivery (before the POST) and deletes it with the rest.
    """
    ctx.require(PERMISSION)
    endpoint = session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == ctx.tenant_id, WebhookEndpoint.id == endpoint_id)
        .with_for_update(read=True, key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if endpoint is None:
        raise NotFound("Webhook not found")
    return endpoint


def _send_test(
    session: Session, ctx: Ctx, endpoint: WebhookEndpoint, client: httpx.Client | None
) -> dict[str, Any]:
    event_id = uuid.uuid4()
    payload = catalogue.envelope(
        event_id,
        catalogue.TEST_EVENT,
        dt.datetime.now(dt.UTC),
        {"endpoint_id": str(endpoint.id), "message": "This is a test event from OmniStream."},
        tenant_id=ctx.tenant_id,
        actor=ctx.actor.as_dict(),
    )
    row = WebhookDelivery(
        tenant_id=ctx.tenant_id,
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type=catalogue.TEST_EVENT,
        payload=payload,
        status="in_flight",
        attempt_count=1,
        last_attempt_at=func.now(),
        locked_until=func.now() + dt.timedelta(seconds=endpoint.timeout_seconds + 30),
    )
    session.add(row)
    session.flush()
    activity.record(
        session,
        ctx,
        "webhook.test_sent",
        "webhook_delivery",
        row.id,
        after={"endpoint_id": str(endpoint.id), "event_id": str(event_id)},
    )
    claimed = delivery.Claimed(
        id=row.id,
        tenant_id=ctx.tenant_id,
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type=catalogue.TEST_EVENT,
        payload=payload,
        attempt=1,
        url=endpoint.url,
        enabled=True,
        secrets=delivery.secrets_of(endpoint),
        timeout=min(endpoint.timeout_seconds, get_settings().webhook_timeout_seconds),
        max_concurrency=endpoint.max_concurrency,
    )
    session.commit()
    result = delivery.send(client or transport.shared_client(), claimed)
    try:
        with session_scope() as record_session:
            delivery.record(record_session, claimed, result)
    except IntegrityError:
        # NOTE: the webhook was deleted during the send (its deliveries with it): the
        # receiver was still called, so the caller still gets what it answered.
        pass
    return {
        "delivery_id": row.id,
        "event_id": event_id,
        "status": "succeeded" if result.ok else "failed",
        "attempt": AttemptView.of_result(result, endpoint.url).model_dump(mode="json"),
    }

"""Disabling an endpoint (410 Gone, no success for days, or its owner) and what that ends."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared import activity
from shared.context import Ctx
from shared.events import emit
from shared.models import WebhookDelivery, WebhookEndpoint
from shared.webhooks.views import WebhookView


def disable(session: Session, ctx: Ctx, endpoint: WebhookEndpoint, reason: str) -> bool:
    """Disable ``endpoint`` (locked by the caller) and end its waiting deliveries.

    Returns False when it was already disabled. Pending deliveries become
    ``disabled`` (final): nothing waits on an endpoint nobody will send to; its
    owner re-enables it and recovers the window it missed.
    """
    if not endpoint.enabled:
        return False
    before = WebhookView.data(endpoint)
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    endpoint.disabled_at = func.now()
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending")
        .values(status="disabled", finished_at=func.now())
    )
    session.flush()
    session.refresh(endpoint)
    after = WebhookView.data(endpoint)
    activity.record(
        session, ctx, "webhook.disabled", "webhook", endpoint.id, before=before, after=after
    )
    emit(
        session,
        "webhook.endpoint_disabled",
        after | {"endpoint_id": str(endpoint.id), "reason": reason},
        tenant_id=endpoint.tenant_id,
        actor=ctx.actor,
    )
    return True


def disable_by_id(session: Session, endpoint_id: uuid.UUID, reason: str) -> bool:
    """Lock and disable an endpoint as the system (the delivery engine and the sweeper)."""
    endpoint = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).with_for_update()
    ).one_or_none()
    if endpoint is None:
        return False
    return disable(session, Ctx.system(endpoint.tenant_id), endpoint, reason)

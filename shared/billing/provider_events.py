"""Provider webhooks: verified, stored by event id, and their outcomes applied once.

The event row and the outcome are written in one transaction, so a replay (the provider
retries until it gets a 2xx, or an attacker resends a captured body within the signature
tolerance) finds the row and changes nothing. Outcomes go through
:func:`shared.billing.payments.apply_outcome`, the same path as the worker's, so whichever
arrives first wins and the other is a no-op; order does not matter.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.billing import payments
from shared.billing.providers import InvalidSignature, WebhookEvent
from shared.billing.providers.stripe_provider import parse_event
from shared.config import get_settings
from shared.errors import DomainError
from shared.models.billing import BillingPayment, BillingProviderEvent

log = logging.getLogger(__name__)


class BadSignature(DomainError):
    status, code = 400, "bad_request"


@dataclass(frozen=True)
class Receipt:
    """How a webhook was taken: ``duplicate`` for a replay; ``applied`` outcomes that changed."""

    event_id: str
    duplicate: bool
    applied: int

    def as_dict(self) -> dict:
        return {"event_id": self.event_id, "duplicate": self.duplicate, "applied": self.applied}


def _payment_for(session: Session, kind: str, payment_id: str | None, reference: str | None):
    if payment_id:
        try:
            found = session.get(BillingPayment, uuid.UUID(payment_id))
        except ValueError:
            found = None
        if found is not None and found.kind == kind:
            return found
    if reference:
        return session.scalars(
            select(BillingPayment).where(
                BillingPayment.provider == "stripe",
                BillingPayment.provider_reference == reference,
                BillingPayment.kind == kind,
            )
        ).first()
    return None


def apply_event(session: Session, provider: str, event: WebhookEvent, now: dt.datetime) -> Receipt:
    """Store ``event`` once and apply its outcomes; a known event id is a duplicate."""
    stored = session.execute(
        insert(BillingProviderEvent)
        .values(
            provider=provider,
            event_id=event.id,
            event_type=event.type,
            payload=event.payload,
        )
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(BillingProviderEvent.event_id)
    ).first()
    if stored is None:
        return Receipt(event.id, True, 0)
    applied = 0
    for payment_id, outcome in event.outcomes:
        payment = _payment_for(session, event.kind or "", payment_id, outcome.reference)
        if payment is not None:
            result = payments.apply_outcome(session, payment.id, outcome, now)
        elif event.kind == "refund" and payment_id is None:
            result = payments.record_external_refund(session, provider, outcome, now)
        else:
            result = "missing"
        if result == "missing":
            log.info("%s event %s names no payment of ours; kept only", provider, event.id)
        applied += result not in ("unchanged", "pending", "missing")
    session.execute(
        BillingProviderEvent.__table__.update()
        .where(BillingProviderEvent.provider == provider, BillingProviderEvent.event_id == event.id)
        .values(processed_at=now)
    )
    return Receipt(event.id, False, applied)


def receive_stripe(session: Session, raw: bytes, signature: str | None) -> Receipt:
    """Verify a Stripe webhook (400 when it does not) and apply it once."""
    try:
        event = parse_event(raw, signature, get_settings().stripe_webhook_secret)
    except InvalidSignature as exc:
        raise BadSignature(
            "The Stripe-Signature header does not verify",
            details=[{"field": "Stripe-Signature", "message": str(exc)[:200]}],
        ) from exc
    return apply_event(session, "stripe", event, payments.utcnow())

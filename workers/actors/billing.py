"""charge_invoice and refund_invoice: money moved at the payment provider, once.

Importing this module installs the after-commit enqueuers of
:mod:`shared.billing.charge_queue` and :mod:`shared.billing.refund_queue` (the API and
the scheduler import it for that). Both actors take row ids and are idempotent: the
work and its guarantees live in :mod:`shared.billing.payments`. A provider that is down
raises :class:`~shared.billing.providers.ProviderUnavailable`, so Dramatiq retries with
backoff (the outbound retry settings); the invoice stays open, the pending payment row
keeps its idempotency key for the retry, and a message that ran out of retries is a
visible dead letter (``billing_cycle`` re-drives the invoice later anyway).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.billing import charge_queue, payments, refund_queue
from shared.config import get_settings
from shared.models import BillingInvoice
from workers import queues, tenant_gate
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)

_settings = get_settings()
_RETRY = {
    "max_retries": _settings.outbound_max_retries,
    "min_backoff": _settings.outbound_min_backoff_ms,
    "max_backoff": _settings.outbound_max_backoff_ms,
    # NOTE: above the provider timeout, so a slow provider call is never cut mid-way.
    "time_limit": int(_settings.billing_provider_timeout_seconds * 4 * 1000) + 60_000,
}


@dramatiq.actor(queue_name=queues.BILLING, **_RETRY)
def charge_invoice(invoice_id: str) -> None:
    """Charge invoice ``invoice_id`` if it is open and due; a duplicate message is a no-op."""
    outcome = payments.charge_invoice(uuid.UUID(invoice_id))
    log.info("charge_invoice %s: %s", invoice_id, outcome)


@dramatiq.actor(queue_name=queues.BILLING, **_RETRY)
def refund_invoice(payment_id: str) -> None:
    """Send the pending refund ``payment_id`` (a ``billing_payments`` row) to the provider."""
    outcome = payments.refund_payment(uuid.UUID(payment_id))
    log.info("refund_invoice %s: %s", payment_id, outcome)


def tenant_of_invoice(session: Session, args: tuple) -> uuid.UUID | None:
    """The tenant of a charge: a suspended workspace's card is not charged (its invoice
    waits for ``billing_cycle``'s re-drive once it is reactivated). Refunds are not gated:
    money a super admin sends back goes back, suspended or not."""
    return session.scalar(
        select(BillingInvoice.tenant_id).where(BillingInvoice.id == uuid.UUID(args[0]))
    )


tenant_gate.resolve_tenant_with(charge_invoice.actor_name, tenant_of_invoice)


def enqueue_charges(invoice_ids: Sequence[uuid.UUID]) -> None:
    for invoice_id in invoice_ids:
        charge_invoice.send(str(invoice_id))


def enqueue_refunds(payment_ids: Sequence[uuid.UUID]) -> None:
    for payment_id in payment_ids:
        refund_invoice.send(str(payment_id))


charge_queue.set_enqueuer(enqueue_charges)
refund_queue.set_enqueuer(enqueue_refunds)

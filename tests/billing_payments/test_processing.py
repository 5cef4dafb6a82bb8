"""A charge or refund Stripe accepted but has not settled (``processing`` / ``pending``).

Its result comes by webhook. Sending it again is not a harmless replay: Stripe keeps an
idempotency key for 24 hours only, and a bank debit or refund may stay processing for
days, so a re-send then makes a second PaymentIntent (or refund) that moves the money
again, under the same payment row of ours (its success would change nothing here: never
refunded). The hourly re-drives must leave such a row to its webhook.
"""

from __future__ import annotations

import uuid

from shared.billing import payments
from shared.db import session_scope
from tests.billing_payments.test_refunds import _paid, _refund


def _intent_posts(billing) -> int:
    return sum(1 for _m, path, _k in billing.stripe.calls if path == "/v1/payment_intents")


def _refund_posts(billing) -> int:
    return sum(1 for _m, path, _k in billing.stripe.calls if path == "/v1/refunds")


def test_a_processing_charge_is_not_sent_again_and_its_webhook_settles_it(billing):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    billing.stripe.answer_next(
        200, {"id": "pi_processing_1", "object": "payment_intent", "status": "processing"}
    )
    assert payments.charge_invoice(invoice) == "pending"
    [charge] = billing.payments(invoice, "charge")
    assert (charge.status, charge.provider_reference) == ("pending", "pi_processing_1")
    # billing_cycle re-drives the open invoice (hourly, for days): nothing is sent again.
    assert payments.charge_invoice(invoice) == "processing"
    assert payments.charge_invoice(invoice) == "processing"
    assert _intent_posts(billing) == 1
    assert billing.row(invoice).status == "open"
    event = {
        "id": "evt_processing_done",
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": "pi_processing_1",
                "object": "payment_intent",
                "status": "succeeded",
                "metadata": {"payment_id": str(charge.id), "invoice_id": str(invoice)},
            }
        },
    }
    assert billing.post_event(event).json["applied"] == 1
    assert billing.row(invoice).status == "paid"


def test_a_pending_refund_is_not_sent_again_by_the_sweep(billing, root, monkeypatch):
    from sqlalchemy import update

    from shared.billing import refund_queue
    from shared.models.billing import BillingPayment

    invoice = _paid(billing)
    monkeypatch.setattr(refund_queue.QUEUE, "enqueuer", None)  # we call the actor's body
    job = _refund(root, invoice, amount=700)
    payment_id = uuid.UUID(job["job_id"])
    billing.stripe.answer_next(
        200,
        {"id": "re_pending_1", "object": "refund", "status": "pending", "amount": 700},
    )
    assert payments.refund_payment(payment_id) == "pending"
    with session_scope() as session:  # the sweep, a day later
        session.execute(
            update(BillingPayment)
            .where(BillingPayment.id == payment_id)
            .values(created_at=BillingPayment.created_at - 2 * payments.STALE_REFUND_AFTER)
        )
    with session_scope() as session:
        assert payments.redrive_stale_refunds(session) == 0
    assert payments.refund_payment(payment_id) == "processing"  # a message sent before
    assert _refund_posts(billing) == 1
    [refund] = billing.payments(invoice, "refund")
    assert (refund.status, refund.provider_reference) == ("pending", "re_pending_1")


def test_a_dashboard_refund_before_the_charges_success_event_settles_both(billing):
    """Stripe refunds only money it collected: a dashboard refund of our processing charge,
    whose ``payment_intent.succeeded`` has not reached us (or was lost), is proof the charge
    succeeded. Dropping the refund as "not ours" left the invoice paid in full later, with
    the refunded money still counted and refundable."""
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    billing.stripe.answer_next(
        200, {"id": "pi_processing_2", "object": "payment_intent", "status": "processing"}
    )
    assert payments.charge_invoice(invoice) == "pending"
    event = {
        "id": "evt_dashboard_refund_early",
        "type": "refund.created",
        "data": {
            "object": {
                "id": "re_dashboard_early",
                "object": "refund",
                "amount": 900,
                "currency": "usd",
                "payment_intent": "pi_processing_2",
                "metadata": {},
                "status": "succeeded",
            }
        },
    }
    assert billing.post_event(event).json["applied"] >= 1
    [charge] = billing.payments(invoice, "charge")
    assert charge.status == "succeeded"
    [refund] = billing.payments(invoice, "refund")
    assert (refund.reason, refund.status, refund.amount) == ("external", "succeeded", 900)
    row = billing.row(invoice)
    assert (row.status, row.amount_paid, row.amount_refunded) == ("partially_refunded", 4900, 900)

"""A charge that succeeds after another attempt paid its invoice is refunded, once.

How it happens: attempt 1's decline reaches us (its webhook, or the worker's answer), the
dunning schedule makes attempt 2, which pays; then Stripe reports that attempt 1 went
through after all. The customer paid twice: the later success must be returned to them
without touching the invoice's own figures, and a refund an admin asks for afterwards
must return the charge that paid the invoice, not the duplicate.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid

from sqlalchemy import update

from shared.billing import payments
from shared.billing.analytics import revenue_monthly
from shared.db import session_scope
from shared.models.billing import BillingInvoice
from tests.billing_payments.test_webhooks import _attempt


def _declined_first(billing, invoice) -> dict:
    """Attempt 1 charged at Stripe, its decline delivered first; its success event returned."""
    _attempt(billing, invoice)
    [succeeded] = billing.stripe.events_of("payment_intent.succeeded")
    failed = copy.deepcopy(succeeded)
    failed["id"] = f"evt_declined_{uuid.uuid4().hex}"
    failed["type"] = "payment_intent.payment_failed"
    failed["data"]["object"]["status"] = "requires_payment_method"
    assert billing.post_event(failed).json["applied"] == 1
    return succeeded


def _paid_by_attempt_2(billing, invoice) -> None:
    with session_scope() as session:  # the dunning schedule's next attempt is due
        session.execute(
            update(BillingInvoice)
            .where(BillingInvoice.id == invoice)
            .values(next_charge_at=payments.utcnow() - dt.timedelta(seconds=1))
        )
    assert payments.charge_invoice(invoice) == "paid"


def test_a_late_success_after_another_attempt_paid_is_refunded(billing, root, worker):
    billing.add_method("pm_card_visa")
    sub = billing.subscription(status="active")
    invoice = billing.invoice(4900, subscription_id=sub)
    late_success = _declined_first(billing, invoice)
    _paid_by_attempt_2(billing, invoice)
    first, second = billing.payments(invoice, "charge")

    resp = billing.post_event(late_success)
    assert resp.status_code == 200, resp.text
    assert resp.json["applied"] == 1
    [refund] = billing.wait_until_refunds(invoice, 1)
    assert (refund.reason, refund.charge_id, refund.amount) == (
        "duplicate_charge",
        first.id,
        4900,
    )
    billing.wait_refund_status(refund.id, "succeeded")
    [sent] = billing.stripe.refunds
    assert sent["payment_intent"] == first.provider_reference
    assert sent["amount"] == 4900
    assert sent["idempotency_key"] == f"payment:{first.id}:duplicate_refund"
    # The refund's own events change nothing on the invoice: it never counted that money.
    for kind in ("refund.created", "charge.refunded"):
        [event] = billing.stripe.events_of(kind)
        assert billing.post_event(event).status_code == 200
    row = billing.row(invoice)
    assert (row.status, row.amount_paid, row.amount_refunded) == ("paid", 4900, 0)
    assert billing.sub(sub).status == "active"
    # Replayed, the late success refunds nothing more.
    assert billing.post_event(late_success).json["duplicate"] is True
    replay = copy.deepcopy(late_success)
    replay["id"] = f"evt_succeeded_again_{uuid.uuid4().hex}"
    assert billing.post_event(replay).json["applied"] == 0
    assert len(billing.payments(invoice, "refund")) == 1

    # An admin's refund returns the charge that paid (attempt 2's), and all of it is left.
    resp = root.call("POST", f"/api/admin/billing/invoices/{invoice}/refund", json={})
    assert resp.status_code == 202, resp.text
    billing.wait_status(invoice, "refunded")
    requested = billing.payments(invoice, "refund")[1]
    assert (requested.reason, requested.charge_id) == ("requested", second.id)
    assert [r["payment_intent"] for r in billing.stripe.refunds] == [
        first.provider_reference,
        second.provider_reference,
    ]
    row = billing.row(invoice)
    assert (row.amount_paid, row.amount_refunded) == (4900, 4900)


def test_the_duplicate_refund_is_not_revenue_refunded(billing, worker):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    late_success = _declined_first(billing, invoice)
    _paid_by_attempt_2(billing, invoice)
    before = _this_month_usd()
    billing.post_event(late_success)
    [refund] = billing.wait_until_refunds(invoice, 1)
    billing.wait_refund_status(refund.id, "succeeded")
    assert _this_month_usd() == before


def _this_month_usd() -> dict:
    with session_scope() as session:
        report = revenue_monthly(session, payments.utcnow())
    [usd] = [row for row in report["currencies"] if row["currency"] == "USD"]
    return usd["months"][-1]


def test_a_late_success_on_a_voided_invoice_is_refunded(billing, worker):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    late_success = _declined_first(billing, invoice)
    with session_scope() as session:  # an admin voided it meanwhile: nothing is owed
        session.execute(
            update(BillingInvoice)
            .where(BillingInvoice.id == invoice)
            .values(status="void", next_charge_at=None)
        )
    assert billing.post_event(late_success).json["applied"] == 1
    [refund] = billing.wait_until_refunds(invoice, 1)
    billing.wait_refund_status(refund.id, "succeeded")
    row = billing.row(invoice)
    assert (row.status, row.amount_paid, row.amount_refunded) == ("void", 0, 0)
    assert uuid.UUID(str(refund.charge_id)) == billing.payments(invoice, "charge")[0].id

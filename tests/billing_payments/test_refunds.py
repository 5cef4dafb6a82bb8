"""Super-admin refunds: 202 with the job, refund_invoice through the worker, 422 above the
refundable amount, replays of the provider's refund events applied once, and a refund the
provider fails after it succeeded taken back off the invoice."""

from __future__ import annotations

import copy
import uuid

from shared.billing import payments


def _paid(billing, total: int = 5000, currency: str = "USD"):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(total, currency=currency)
    assert payments.charge_invoice(invoice) == "paid"
    return invoice


def _refund(root, invoice, status: int = 202, **body):
    resp = root.call("POST", f"/api/admin/billing/invoices/{invoice}/refund", json=body)
    assert resp.status_code == status, resp.text
    return resp.json


def test_a_partial_then_the_rest(billing, root, worker):
    invoice = _paid(billing)
    job = _refund(root, invoice, amount=1500)
    billing.wait_status(invoice, "partially_refunded")
    [payment] = billing.payments(invoice, "refund")
    assert str(payment.id) == job["job_id"] and payment.status == "succeeded"
    _refund(root, invoice)  # the rest
    billing.wait_status(invoice, "refunded")
    row = billing.row(invoice)
    assert (row.amount_paid, row.amount_refunded) == (5000, 5000)
    assert [r["amount"] for r in billing.stripe.refunds] == [1500, 3500]
    assert [r["idempotency_key"] for r in billing.stripe.refunds] == [
        f"invoice:{invoice}:refund:1",
        f"invoice:{invoice}:refund:2",
    ]
    _refund(root, invoice, status=409)  # nothing left


def test_above_the_refundable_amount_is_422_counting_refunds_in_flight(billing, root, monkeypatch):
    invoice = _paid(billing)
    err = _refund(root, invoice, status=422, amount=5001)
    assert err["error"]["details"][0]["field"] == "amount"
    # Not sent yet (no worker here): the in-flight 4000 counts against the next request.
    from shared.billing import refund_queue

    monkeypatch.setattr(refund_queue.QUEUE, "enqueuer", None)
    _refund(root, invoice, amount=4000)
    _refund(root, invoice, status=422, amount=1001)
    assert billing.row(invoice).status == "paid"
    for bad in ({"amount": 0}, {"amount": -5}, {"amount": "x"}, {"amount": 1.5}, {"x": 1}):
        _refund(root, invoice, status=422, **bad)


def test_unpaid_unknown_and_tenant_callers(billing, root):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    _refund(root, invoice, status=409, amount=100)
    _refund(root, uuid.uuid4(), status=404)
    resp = billing.ws.call("POST", f"/api/admin/billing/invoices/{invoice}/refund", json={})
    assert resp.status_code == 403  # a tenant token is not a super admin


def test_an_idempotency_key_repeat_is_the_same_refund(billing, root):
    invoice = _paid(billing)
    path = f"/api/admin/billing/invoices/{invoice}/refund"
    headers = {"Idempotency-Key": "refund-once-123"}
    first = root.call("POST", path, json={"amount": 1000}, headers=headers)
    again = root.call("POST", path, json={"amount": 1000}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json == again.json
    assert len(billing.payments(invoice, "refund")) == 1


def test_an_idempotency_key_with_another_amount_is_refused(billing, root):
    invoice = _paid(billing)
    path = f"/api/admin/billing/invoices/{invoice}/refund"
    headers = {"Idempotency-Key": "refund-abc"}
    first = root.call("POST", path, json={"amount": 1000}, headers=headers)
    assert first.status_code == 202, first.text
    # 4000 was asked for: the 1000 refund's job is not its answer.
    for other in ({"amount": 4000}, {}):
        resp = root.call("POST", path, json=other, headers=headers)
        assert resp.status_code == 422, (other, resp.text)
        assert resp.json["error"]["details"][0]["field"] == "Idempotency-Key"
    assert [p.amount for p in billing.payments(invoice, "refund")] == [1000]


def test_refund_events_replayed_and_before_the_worker(billing, root, monkeypatch):
    from shared.billing import refund_queue

    invoice = _paid(billing)
    monkeypatch.setattr(refund_queue.QUEUE, "enqueuer", None)  # the worker is late
    job = _refund(root, invoice, amount=2000)
    # The provider refunds (another worker's call) and its webhook lands first.
    from shared.billing.providers import get_provider

    [payment] = billing.payments(invoice, "refund")
    [charge] = billing.payments(invoice, "charge")
    outcome = get_provider().refund(
        charge_reference=charge.provider_reference,
        amount=2000,
        currency="USD",
        idempotency_key=payment.idempotency_key,
        metadata={
            "payment_id": job["job_id"],
            "invoice_id": str(invoice),
            "invoice_number": billing.row(invoice).number,
            "tenant_id": str(billing.tenant_id),
        },
    )
    assert outcome.status == "succeeded"
    for kind in ("refund.created", "charge.refunded"):
        [event] = billing.stripe.events_of(kind)
        assert billing.post_event(event).status_code == 200
        assert billing.post_event(event).json["duplicate"] is True
    row = billing.row(invoice)
    assert (row.status, row.amount_refunded) == ("partially_refunded", 2000)
    # The worker's own call: same key, the provider answers the same refund; nothing moves.
    assert payments.refund_payment(uuid.UUID(job["job_id"])) == "settled"
    assert billing.row(invoice).amount_refunded == 2000
    assert len(billing.stripe.refunds) == 1


def _failed_later(created: dict, reason: str = "expired_or_canceled_card") -> dict:
    """Stripe's ``refund.failed`` for the refund of ``created`` (its ``refund.created``)."""
    failed = copy.deepcopy(created)
    failed["id"] = "evt_refund_failed_" + uuid.uuid4().hex[:8]
    failed["type"] = "refund.failed"
    failed["data"]["object"].update(status="failed", failure_reason=reason)
    return failed


def test_a_refund_that_fails_after_succeeding_is_no_longer_counted(
    billing, root, worker, monkeypatch
):
    from shared.billing import refund_queue

    invoice = _paid(billing)
    _refund(root, invoice, amount=2000)
    billing.wait_status(invoice, "partially_refunded")
    # Days later the customer's bank bounces it: Stripe fails the refund, the money is ours.
    [created] = billing.stripe.events_of("refund.created")
    ack = billing.post_event(_failed_later(created))
    assert (ack.status_code, ack.json["applied"]) == (200, 1)
    row = billing.row(invoice)
    [refund] = billing.payments(invoice, "refund")
    assert (refund.status, refund.failure_code) == ("failed", "expired_or_canceled_card")
    assert (row.status, row.amount_refunded) == ("paid", 0)
    # All of it may be refunded again (held as a refund in flight: no worker sends it).
    monkeypatch.setattr(refund_queue.QUEUE, "enqueuer", None)
    _refund(root, invoice, amount=5000)


def test_a_failed_refund_leaves_the_others_and_a_late_success_changes_nothing(
    billing, root, worker
):
    invoice = _paid(billing)
    _refund(root, invoice, amount=2000)
    billing.wait_status(invoice, "partially_refunded")
    _refund(root, invoice)  # the other 3000
    billing.wait_status(invoice, "refunded")
    first_created, _ = billing.stripe.events_of("refund.created")
    assert billing.post_event(_failed_later(first_created)).status_code == 200
    row = billing.row(invoice)
    assert (row.status, row.amount_refunded) == ("partially_refunded", 3000)
    # Stripe's earlier charge.refunded, still saying succeeded, is delivered after the failure.
    first_refunded, _ = billing.stripe.events_of("charge.refunded")
    late = billing.post_event(first_refunded)
    assert (late.status_code, late.json["applied"]) == (200, 0)
    row = billing.row(invoice)
    assert (row.status, row.amount_refunded) == ("partially_refunded", 3000)
    assert [p.status for p in billing.payments(invoice, "refund")] == ["failed", "succeeded"]


def test_a_refund_whose_message_was_lost_is_redriven(billing, root, monkeypatch, worker):
    from sqlalchemy import update

    from shared.billing import refund_queue
    from shared.db import session_scope
    from shared.models.billing import BillingPayment

    invoice = _paid(billing)
    with monkeypatch.context() as lost:
        lost.setattr(refund_queue.QUEUE, "enqueuer", None)  # the message never left
        job = _refund(root, invoice, amount=700)
    with session_scope() as session:
        assert payments.redrive_stale_refunds(session) == 0  # too young to be lost
    with session_scope() as session:  # move time: ten minutes later
        session.execute(
            update(BillingPayment)
            .where(BillingPayment.id == uuid.UUID(job["job_id"]))
            .values(created_at=BillingPayment.created_at - payments.STALE_REFUND_AFTER)
        )
    with session_scope() as session:
        assert payments.redrive_stale_refunds(session) == 1
    billing.wait_status(invoice, "partially_refunded")
    assert [r["amount"] for r in billing.stripe.refunds] == [700]


def test_a_refund_amount_that_is_not_an_integer_is_refused(billing, root, monkeypatch):
    """Money is integer minor units everywhere: ``"1999"``, ``true`` and ``19.0`` are 422s
    naming ``amount``, never refunded as 1999, 1 or 19."""
    from shared.billing import refund_queue

    invoice = _paid(billing)
    monkeypatch.setattr(refund_queue.QUEUE, "enqueuer", None)
    for bad in ({"amount": "1999"}, {"amount": True}, {"amount": 19.0}):
        err = _refund(root, invoice, status=422, **bad)
        assert err["error"]["details"][0]["field"] == "amount", bad
    assert billing.payments(invoice, "refund") == []


def test_a_refund_is_sent_to_stripe_in_its_unit_for_the_currency(billing, root, worker):
    """4,900 kronur paid (ISO: no decimals), 1,000 refunded: Stripe counts ISK in 1/100."""
    invoice = _paid(billing, 4_900, currency="ISK")
    _refund(root, invoice, amount=1_000)
    billing.wait_status(invoice, "partially_refunded")
    assert [r["amount"] for r in billing.stripe.refunds] == [100_000]
    assert billing.row(invoice).amount_refunded == 1_000

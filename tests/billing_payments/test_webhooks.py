"""Stripe's signed webhooks: verified, stored once, applied once, in any order."""

from __future__ import annotations

import copy
import json
import time

from sqlalchemy import select

from shared.billing import payments
from shared.billing.providers import get_provider
from shared.db import session_scope
from shared.models.billing import BillingProviderEvent


def _stored(event_id: str) -> BillingProviderEvent | None:
    with session_scope() as session:
        row = session.scalars(
            select(BillingProviderEvent).where(BillingProviderEvent.event_id == event_id)
        ).one_or_none()
        if row is not None:
            session.expunge(row)
        return row


def _attempt(billing, invoice):
    """The worker's first half: the pending row committed and the provider charged."""
    with session_scope() as session:
        attempt = payments.begin_charge(session, invoice, payments.utcnow())
    outcome = get_provider().charge(
        customer_id=attempt.customer_id,
        payment_method_id=attempt.payment_method,
        amount=attempt.amount,
        currency=attempt.currency,
        idempotency_key=attempt.idempotency_key,
        metadata=attempt.metadata,
    )
    return attempt, outcome


def test_the_webhook_first_then_the_worker_applies_nothing(billing):
    billing.add_method("pm_card_visa")
    sub = billing.subscription(status="past_due")
    invoice = billing.invoice(4900, subscription_id=sub)
    attempt, outcome = _attempt(billing, invoice)
    [event] = billing.stripe.events_of("payment_intent.succeeded")
    resp = billing.post_event(event)
    assert resp.status_code == 200, resp.text
    assert resp.json == {"event_id": event["id"], "duplicate": False, "applied": 1}
    row = billing.row(invoice)
    assert (row.status, row.amount_paid) == ("paid", 4900)
    assert billing.sub(sub).status == "active"
    with session_scope() as session:
        assert payments.apply_outcome(session, attempt.payment_id, outcome, payments.utcnow()) == (
            "unchanged"
        )
    assert _stored(event["id"]).processed_at is not None


def test_a_replayed_event_is_applied_once(billing):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    assert payments.charge_invoice(invoice) == "paid"  # the worker first
    [event] = billing.stripe.events_of("payment_intent.succeeded")
    first = billing.post_event(event)
    assert first.status_code == 200 and first.json["applied"] == 0  # already applied
    again = billing.post_event(event)
    assert again.status_code == 200 and again.json["duplicate"] is True
    row = billing.row(invoice)
    assert (row.status, row.amount_paid, row.amount_refunded) == ("paid", 4900, 0)
    assert len(billing.payments(invoice)) == 1


def test_a_failure_after_a_success_changes_nothing(billing):
    billing.add_method("pm_card_visa")
    sub = billing.subscription(status="active")
    invoice = billing.invoice(4900, subscription_id=sub)
    _attempt(billing, invoice)
    [succeeded] = billing.stripe.events_of("payment_intent.succeeded")
    failed = copy.deepcopy(succeeded)
    failed["id"] = "evt_out_of_order_failure"
    failed["type"] = "payment_intent.payment_failed"
    failed["data"]["object"].update(
        status="requires_payment_method",
        last_payment_error={"code": "card_declined", "decline_code": "expired_card"},
    )
    assert billing.post_event(succeeded).json["applied"] == 1
    resp = billing.post_event(failed)
    assert resp.status_code == 200 and resp.json == {
        "event_id": "evt_out_of_order_failure",
        "duplicate": False,
        "applied": 0,
    }
    row = billing.row(invoice)
    assert (row.status, row.charge_attempts, row.last_charge_error) == ("paid", 0, None)
    assert billing.sub(sub).status == "active"
    [payment] = billing.payments(invoice)
    assert payment.status == "succeeded" and payment.failure_code is None


def test_a_success_after_a_failure_pays_because_the_money_moved(billing):
    billing.add_method("pm_card_visa")
    sub = billing.subscription(status="active")
    invoice = billing.invoice(4900, subscription_id=sub)
    _attempt(billing, invoice)
    [succeeded] = billing.stripe.events_of("payment_intent.succeeded")
    failed = copy.deepcopy(succeeded)
    failed["id"] = "evt_failure_first"
    failed["type"] = "payment_intent.payment_failed"
    failed["data"]["object"]["status"] = "requires_payment_method"
    assert billing.post_event(failed).json["applied"] == 1
    assert billing.row(invoice).charge_attempts == 1
    assert billing.sub(sub).status == "past_due"
    assert billing.post_event(succeeded).json["applied"] == 1
    row = billing.row(invoice)
    assert (row.status, row.next_charge_at) == ("paid", None)
    assert billing.sub(sub).status == "active"


def test_bad_signatures_are_400_and_store_nothing(billing):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    _attempt(billing, invoice)
    [event] = billing.stripe.events_of("payment_intent.succeeded")
    body, headers = billing.stripe.signed(event)
    cases = [
        billing.stripe.signed(event, secret="whsec_wrong"),
        billing.stripe.signed(event, at=int(time.time()) - 3600),  # a stale capture
        (body, {"Content-Type": "application/json"}),  # no header
        (body.replace(b"succeeded", b"succeedeD"), headers),  # a body changed in flight
        (body, {**headers, "Stripe-Signature": "garbage"}),
        (b"\xff\xfe", headers),
    ]
    for raw, hdrs in cases:
        resp = billing.ws.client.simulate_post(
            "/api/billing/webhooks/stripe", body=raw, headers=hdrs
        )
        assert resp.status_code == 400, resp.text
        assert resp.json["error"]["code"] == "bad_request"
    assert _stored(event["id"]) is None
    assert billing.row(invoice).status == "open"


def test_events_naming_nothing_of_ours_are_kept_and_acknowledged(billing):
    for event in (
        {"id": "evt_unrelated", "type": "customer.created", "data": {"object": {"id": "cus_1"}}},
        {
            "id": "evt_foreign_intent",
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_elsewhere", "status": "succeeded", "metadata": {}}},
        },
        {"id": "evt_no_object", "type": "payment_intent.succeeded", "data": None},
    ):
        resp = billing.post_event(event)
        assert resp.status_code == 200, resp.text
        assert resp.json["applied"] == 0
        assert _stored(event["id"]).payload == json.loads(json.dumps(event))

"""Stripe answering in a shape it should not: a clear error or a sane row, never a crash.

The fake Stripe is told what to answer next (``answer_next``); everything goes through the
public surfaces: the payment-methods API, ``charge_invoice`` (the worker's call) and the
signed webhook endpoint.
"""

from __future__ import annotations

import pytest

from shared.billing import payments
from shared.billing.providers import ProviderUnavailable


def _methods(billing) -> list[dict]:
    return billing.ws.call("GET", "/api/billing/payment-methods").json["items"]


@pytest.mark.parametrize(
    "status, body",
    [
        (200, {"object": "payment_method"}),  # no id
        (200, {"id": 42, "object": "payment_method"}),
        (200, {"id": "pm_" + "x" * 300, "object": "payment_method"}),
        (200, [1, 2]),
        (200, b"<html>maintenance</html>"),
    ],
)
def test_an_attached_method_without_a_usable_id_is_a_503_and_no_row(billing, status, body):
    billing.add_method("pm_card_visa")  # the customer exists: the next call is the attach
    billing.stripe.answer_next(status, body)
    resp = billing.ws.call("POST", "/api/billing/payment-methods", json={"token": "pm_card_mc"})
    assert resp.status_code == 503, resp.text
    assert resp.json["error"]["code"] == "dependency_unavailable"
    assert len(_methods(billing)) == 1


def test_a_customer_answered_without_an_id_is_a_503_then_the_retry_works(billing):
    billing.stripe.answer_next(200, {"object": "customer", "id": None})
    resp = billing.ws.call("POST", "/api/billing/payment-methods", json={"token": "pm_card_visa"})
    assert resp.status_code == 503, resp.text
    assert _methods(billing) == []
    assert billing.add_method("pm_card_visa")["last4"] is not None


def test_card_display_facts_of_another_shape_are_left_empty(billing):
    billing.add_method("pm_card_visa")
    billing.stripe.answer_next(
        200,
        {
            "id": "pm_odd_card",
            "object": "payment_method",
            "card": {"brand": "x" * 40, "last4": "123456", "exp_month": "12", "exp_year": 99999},
        },
    )
    added = billing.add_method("pm_card_mc")
    assert (added["brand"], added["last4"], added["exp_month"], added["exp_year"]) == (
        None,
        None,
        None,
        None,
    )
    billing.stripe.answer_next(200, {"id": "pm_card_string", "card": "visa"})
    assert billing.add_method("pm_card_amex")["brand"] is None
    billing.stripe.answer_next(
        200,
        {
            "id": "pm_fine",
            "card": {"brand": "visa", "last4": "4242", "exp_month": 7, "exp_year": 2031},
        },
    )
    fine = billing.add_method("pm_card_discover")
    assert (fine["brand"], fine["last4"], fine["exp_month"], fine["exp_year"]) == (
        "visa",
        "4242",
        7,
        2031,
    )


@pytest.mark.parametrize(
    "status, body",
    [
        pytest.param(200, {"object": "payment_intent", "status": "succeeded"}, id="no-id"),
        # stripe 16 itself crashes mapping an error that is a string
        pytest.param(402, {"error": "card declined"}, id="string-error"),
    ],
)
def test_a_charge_answer_we_cannot_use_is_retried_with_the_same_key(billing, status, body):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    billing.stripe.answer_next(status, body)
    with pytest.raises(ProviderUnavailable):
        payments.charge_invoice(invoice)
    assert billing.row(invoice).status == "open"
    assert payments.charge_invoice(invoice) == "paid"
    keys = {key for method, path, key in billing.stripe.calls if path == "/v1/payment_intents"}
    assert keys == {f"invoice:{invoice}:charge:1"}
    assert len(billing.stripe.charged(invoice)) == 1


@pytest.mark.parametrize(
    "error",
    [
        {"type": "card_error", "message": "Declined", "payment_intent": "pi_123", "code": 7},
        {"type": "card_error", "message": ["no"], "decline_code": "d" * 200},
        {"type": "card_error", "code": None},
    ],
)
def test_a_decline_of_another_shape_is_a_declined_attempt(billing, error):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    billing.stripe.answer_next(402, {"error": error})
    assert payments.charge_invoice(invoice) == "declined"
    [payment] = billing.payments(invoice)
    assert payment.status == "failed"
    assert isinstance(payment.failure_code, str) and 0 < len(payment.failure_code) <= 64
    row = billing.row(invoice)
    assert (row.status, row.charge_attempts) == ("open", 1)


def test_an_intent_whose_payment_error_is_not_an_object_fails_with_its_status(billing):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    billing.stripe.answer_next(
        200,
        {"id": "pi_odd", "status": "requires_payment_method", "last_payment_error": "oops"},
    )
    assert payments.charge_invoice(invoice) == "declined"
    [payment] = billing.payments(invoice)
    assert (payment.status, payment.failure_code, payment.provider_reference) == (
        "failed",
        "requires_payment_method",
        "pi_odd",
    )


def test_a_signed_event_of_another_shape_is_stored_not_a_500(billing):
    billing.add_method("pm_card_visa")
    for obj in (
        {"id": "pi_a", "status": "requires_payment_method", "last_payment_error": "oops"},
        {"id": "pi_b", "status": 3, "metadata": {"payment_id": 5}},
        {"id": "re_c", "status": "failed", "failure_reason": {"x": 1}},
    ):
        kind = "refund.failed" if obj["id"].startswith("re_") else "payment_intent.payment_failed"
        event = {"id": f"evt_{obj['id']}", "type": kind, "data": {"object": obj}}
        resp = billing.post_event(event)
        assert resp.status_code == 200, resp.text
        assert resp.json["event_id"] == event["id"]


def test_a_refused_refund_of_another_shape_fails_without_the_intents_id(billing, root, monkeypatch):
    from shared.billing import refund_queue

    billing.add_method("pm_card_visa")
    invoice = billing.invoice(5000)
    assert payments.charge_invoice(invoice) == "paid"
    monkeypatch.setattr(refund_queue.QUEUE, "enqueuer", None)  # sent by hand below
    resp = root.call("POST", f"/api/admin/billing/invoices/{invoice}/refund", json={})
    assert resp.status_code == 202, resp.text
    billing.stripe.answer_next(
        400,
        {
            "error": {
                "type": "invalid_request_error",
                "code": ["charge_disputed"],
                "message": "This charge is disputed.",
                "payment_intent": {"id": "pi_not_a_refund"},
            }
        },
    )
    [pending] = billing.payments(invoice, "refund")
    assert payments.refund_payment(pending.id) == "refund_failed"
    [refund] = billing.payments(invoice, "refund")
    assert (refund.status, refund.failure_code, refund.provider_reference) == (
        "failed",
        "refund_refused",
        None,
    )
    assert billing.row(invoice).status == "paid"

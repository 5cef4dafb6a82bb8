"""A worker SIGKILLed between the provider's charge and our commit never charges twice.

A real ``dramatiq workers.main`` subprocess on a Redis namespace of its own, configured
(through the environment) to use the fake Stripe. The fake holds its answer to the charge
until the test has locked the invoice row, so the worker receives "succeeded" and then
waits for the lock to commit it: the moment it is killed, the provider has the money and
our database says ``pending``. The next worker sends the same idempotency key, the fake
answers the charge it already made, and the invoice is paid with one charge at the provider.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from shared.config import get_settings
from shared.db import session_scope
from shared.models.billing import BillingInvoice
from tests.automation.test_faults import waiting_on_a_lock
from tests.waiting import wait_until
from tests.webhooks.faults_support import (
    delete_namespace,
    namespace_of_test,
    private_broker,
    start_worker,
)


@pytest.fixture
def routed(broker):
    namespace = namespace_of_test()
    yield namespace, private_broker(namespace)
    delete_namespace(namespace, get_settings().redis_url)


def test_killed_after_the_provider_charged_then_retried_charges_once(billing, routed):
    from workers.actors.billing import charge_invoice

    namespace, private = routed
    billing.add_method("pm_card_visa")
    sub = billing.subscription(status="past_due")
    invoice = billing.invoice(4900, subscription_id=sub)
    billing.stripe.hold_charges = True
    procs = []
    try:
        first = start_worker(namespace=namespace)
        procs.append(first)
        private.enqueue(charge_invoice.message_with_options(args=(str(invoice),)))
        wait_until(lambda: billing.stripe.charges, "the provider charged", 60, details=first.log)
        with session_scope() as blocker:
            blocker.execute(
                select(BillingInvoice.id).where(BillingInvoice.id == invoice).with_for_update()
            )
            billing.stripe.release.set()  # the worker now has "succeeded" in hand
            wait_until(
                waiting_on_a_lock, "the worker waits to commit the outcome", 30, details=first.log
            )
            first.kill()  # SIGKILL: the outcome is never committed
            blocker.rollback()
        [pending] = billing.payments(invoice)
        assert pending.status == "pending" and pending.provider_reference is None
        assert billing.row(invoice).status == "open"
        assert len(billing.stripe.charged(invoice)) == 1  # the money moved once

        billing.stripe.hold_charges = False
        second = start_worker(namespace=namespace)
        procs.append(second)
        # What billing_cycle does for an open invoice whose next_charge_at has passed.
        private.enqueue(charge_invoice.message_with_options(args=(str(invoice),)))
        billing.wait_status(invoice, "paid", timeout=60)
    finally:
        for proc in procs:
            proc.close()
    charged = billing.stripe.charged(invoice)
    assert len(charged) == 1
    [payment] = billing.payments(invoice)
    assert payment.id == pending.id and payment.status == "succeeded"
    assert payment.provider_reference == charged[0]["id"]
    sent = [c[2] for c in billing.stripe.calls if c[1] == "/v1/payment_intents"]
    assert sent == [f"invoice:{invoice}:charge:1"] * 2  # the retry replayed the same key
    row = billing.row(invoice)
    assert (row.amount_paid, row.charge_attempts) == (4900, 0)
    assert billing.sub(sub).status == "active"

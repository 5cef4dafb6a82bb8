"""BILLING_PROVIDER=fake (development): methods, charges, declines and refunds, no network."""

from __future__ import annotations

import pytest

from shared.billing import payments, refund_queue
from shared.config import get_settings
from tests.billing_payments.invoices import Billing


@pytest.fixture
def dev(workspace, monkeypatch):
    monkeypatch.setenv("BILLING_PROVIDER", "fake")
    get_settings.cache_clear()
    yield Billing(workspace, None)
    monkeypatch.undo()
    get_settings.cache_clear()


def test_the_fake_provider_charges_declines_and_refunds(dev, monkeypatch):
    # This test sends the refund itself: a worker running in this process must not race it.
    monkeypatch.setattr(refund_queue.QUEUE, "enqueuer", None)
    card = dev.add_method("pm_dev_card")
    assert card["provider"] == "fake" and card["is_default"] is True
    invoice = dev.invoice(2500)
    assert payments.charge_invoice(invoice) == "paid"
    with payments.session_scope() as session:
        refund = payments.request_refund(session, invoice, 1000)
    assert payments.refund_payment(refund.id) == "partially_refunded"
    assert payments.refund_payment(refund.id) == "settled"
    row = dev.row(invoice)
    assert (row.amount_paid, row.amount_refunded) == (2500, 1000)


def test_a_decline_token_declines_on_the_fake(dev):
    dev.add_method("pm_decline_me")
    invoice = dev.invoice(2500)
    assert payments.charge_invoice(invoice) == "declined"
    assert dev.row(invoice).last_charge_error == "card_declined"

"""charge_invoice against the fake Stripe: paid once, declines and dunning with time moved,
a provider that is down retried by the worker with the same idempotency key."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from shared.billing import charge_queue, payments
from shared.billing.providers import Outcome, ProviderUnavailable
from shared.db import session_scope
from shared.models.billing import BillingInvoice
from tests.billing_payments.invoices import utcnow


def test_a_due_invoice_is_charged_once_and_the_subscription_is_active(billing):
    billing.add_method("pm_card_visa")
    sub = billing.subscription(status="past_due")
    invoice = billing.invoice(4900, subscription_id=sub)
    assert payments.charge_invoice(invoice) == "paid"
    assert payments.charge_invoice(invoice) == "settled"  # a duplicate message: a no-op
    row = billing.row(invoice)
    assert (row.status, row.amount_paid, row.next_charge_at) == ("paid", 4900, None)
    assert billing.sub(sub).status == "active" and billing.sub(sub).past_due_since is None
    [charge] = billing.stripe.charged(invoice)
    assert charge["amount"] == 4900 and charge["currency"] == "usd"
    assert charge["idempotency_key"] == f"invoice:{invoice}:charge:1"
    [payment] = billing.payments(invoice)
    assert (payment.status, payment.provider_reference) == ("succeeded", charge["id"])


def test_the_real_worker_charges_after_commit(billing, worker):
    import workers.actors.billing  # noqa: F401  (installs the enqueuer)

    billing.add_method("pm_card_visa")
    invoice = billing.invoice(1200)
    charge_queue.QUEUE.enqueue([invoice])
    billing.wait_status(invoice, "paid")
    assert len(billing.stripe.charged(invoice)) == 1


def test_an_invoice_not_yet_due_or_settled_is_not_charged(billing):
    billing.add_method("pm_card_visa")
    later = billing.invoice(500, next_charge_at=utcnow() + dt.timedelta(hours=1))
    assert payments.charge_invoice(later) == "not_due"
    assert billing.stripe.charges == [] and billing.payments(later) == []


def test_dunning_retries_on_schedule_then_gives_up(billing):
    """24, 72 and 168 hours after each decline; the fourth decline ends the subscription."""
    billing.add_method("pm_card_chargeDeclined")
    sub = billing.subscription(status="active")
    invoice = billing.invoice(4900, subscription_id=sub)
    t0 = utcnow()
    assert payments.charge_invoice(invoice, now=t0) == "declined"
    row = billing.row(invoice)
    assert row.status == "open" and row.charge_attempts == 1
    assert row.last_charge_error == "generic_decline"
    assert row.next_charge_at == t0 + dt.timedelta(hours=24)
    assert billing.sub(sub).status == "past_due"
    assert billing.sub(sub).past_due_since == t0

    assert payments.charge_invoice(invoice, now=t0 + dt.timedelta(hours=23)) == "not_due"
    t = t0
    for attempt, hours in ((2, 72), (3, 168)):
        t = billing.row(invoice).next_charge_at
        assert payments.charge_invoice(invoice, now=t) == "declined"
        row = billing.row(invoice)
        assert row.charge_attempts == attempt
        assert row.next_charge_at == t + dt.timedelta(hours=hours)
        assert billing.sub(sub).past_due_since == t0  # since the first decline
    t = billing.row(invoice).next_charge_at
    assert t == t0 + dt.timedelta(hours=24 + 72 + 168)
    assert payments.charge_invoice(invoice, now=t) == "uncollectible"
    row = billing.row(invoice)
    assert (row.status, row.next_charge_at, row.charge_attempts) == ("uncollectible", None, 4)
    assert billing.sub(sub).status == "cancelled" and billing.sub(sub).ended_at == t
    keys = [p.idempotency_key for p in billing.payments(invoice)]
    assert keys == [f"invoice:{invoice}:charge:{n}" for n in (1, 2, 3, 4)]
    assert billing.stripe.charged(invoice) == []
    assert payments.charge_invoice(invoice, now=t + dt.timedelta(days=30)) == "settled"


def test_a_decline_then_a_good_card_pays_and_clears_past_due(billing):
    billing.add_method("pm_card_chargeDeclined")
    sub = billing.subscription(status="active")
    invoice = billing.invoice(900, subscription_id=sub)
    t0 = utcnow()
    assert payments.charge_invoice(invoice, now=t0) == "declined"
    good = billing.add_method("pm_card_visa")
    declined = billing.ws.call("GET", "/api/billing/payment-methods").json["items"][1]
    assert (
        billing.ws.call("DELETE", f"/api/billing/payment-methods/{declined['id']}").status_code
        == 204
    )
    assert (
        billing.ws.call("GET", "/api/billing/payment-methods").json["items"][0]["id"] == good["id"]
    )
    assert payments.charge_invoice(invoice, now=t0 + dt.timedelta(hours=24)) == "paid"
    assert billing.sub(sub).status == "active" and billing.sub(sub).past_due_since is None
    assert len(billing.stripe.charged(invoice)) == 1


def test_paying_one_invoice_leaves_the_subscription_past_due_while_another_is_dunned(billing):
    """A subscription is past_due while any of its invoices is declined and still dunned.

    An add-on's (or an upgrade's) invoice paid by a new card used to make it ``active``
    and clear ``past_due_since`` while the renewal declined earlier was still owed and
    retried on schedule: the workspace, and the dashboards, read it as paid up.
    """
    billing.add_method("pm_card_chargeDeclined")
    sub = billing.subscription(status="active")
    renewal = billing.invoice(4900, subscription_id=sub)
    t0 = utcnow()
    assert payments.charge_invoice(renewal, now=t0) == "declined"
    good = billing.add_method("pm_card_visa")
    declined = billing.ws.call("GET", "/api/billing/payment-methods").json["items"][1]
    assert (
        billing.ws.call("DELETE", f"/api/billing/payment-methods/{declined['id']}").status_code
        == 204
    )
    [method] = billing.ws.call("GET", "/api/billing/payment-methods").json["items"]
    assert method["id"] == good["id"] and method["is_default"]
    add_on = billing.invoice(900, subscription_id=sub, next_charge_at=t0)
    assert payments.charge_invoice(add_on, now=t0 + dt.timedelta(hours=1)) == "paid"
    assert billing.row(renewal).status == "open"
    assert (billing.sub(sub).status, billing.sub(sub).past_due_since) == ("past_due", t0)
    assert payments.charge_invoice(renewal, now=t0 + dt.timedelta(hours=24)) == "paid"
    assert (billing.sub(sub).status, billing.sub(sub).past_due_since) == ("active", None)


def test_no_payment_method_counts_as_a_declined_attempt(billing):
    sub = billing.subscription(status="active")
    invoice = billing.invoice(900, subscription_id=sub)
    assert payments.charge_invoice(invoice) == "failed"
    row = billing.row(invoice)
    assert row.charge_attempts == 1 and row.last_charge_error == "no_payment_method"
    assert billing.stripe.calls == []


def test_provider_down_keeps_the_attempt_and_the_retry_reuses_its_key(billing):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    billing.stripe.down = True
    with pytest.raises(ProviderUnavailable):
        payments.charge_invoice(invoice)
    billing.stripe.down = False
    billing.stripe.fail_next(1)
    with pytest.raises(ProviderUnavailable):
        payments.charge_invoice(invoice)
    row = billing.row(invoice)
    assert (row.status, row.charge_attempts) == ("open", 0)  # down is not a decline
    [pending] = billing.payments(invoice)
    assert pending.status == "pending"
    assert payments.charge_invoice(invoice) == "paid"
    [payment] = billing.payments(invoice)
    assert payment.id == pending.id and payment.status == "succeeded"
    keys = {c[2] for c in billing.stripe.calls if c[1] == "/v1/payment_intents"}
    assert keys == {f"invoice:{invoice}:charge:1"}
    assert len(billing.stripe.charged(invoice)) == 1


def test_the_worker_retries_a_provider_error_with_backoff(billing, worker):
    import workers.actors.billing  # noqa: F401

    billing.add_method("pm_card_visa")
    invoice = billing.invoice(700)
    billing.stripe.fail_next(1)
    charge_queue.QUEUE.enqueue([invoice])
    billing.wait_status(invoice, "paid", timeout=30)
    attempts = [c for c in billing.stripe.calls if c[1] == "/v1/payment_intents"]
    assert len(attempts) == 2 and len({c[2] for c in attempts}) == 1
    assert len(billing.stripe.charged(invoice)) == 1


@pytest.mark.parametrize(
    "currency, ours, theirs",
    [
        ("MGA", 500_000, 5_000),  # 5,000 ariary: ISO has 2 decimals, Stripe none
        ("ISK", 4_900, 490_000),  # 4,900 kronur: ISO has none, Stripe 2
        ("JPY", 4_900, 4_900),
        ("KWD", 5_120, 5_120),
        ("EUR", 4_900, 4_900),
    ],
)
def test_stripe_is_sent_each_currency_in_its_own_unit(billing, currency, ours, theirs):
    """Our amounts are ISO 4217 minor units; Stripe's differ for a few currencies."""
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(ours, currency=currency)
    assert payments.charge_invoice(invoice) == "paid"
    [charge] = billing.stripe.charged(invoice)
    assert (charge["amount"], charge["currency"]) == (theirs, currency.lower())
    assert billing.row(invoice).amount_paid == ours


@pytest.mark.parametrize("currency, amount", [("MGA", 500_050), ("KWD", 5_124)])
def test_an_amount_stripe_cannot_express_is_declined_not_rounded(billing, currency, amount):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(amount, currency=currency)
    assert payments.charge_invoice(invoice) != "paid"
    assert billing.stripe.charged(invoice) == []
    [payment] = billing.payments(invoice)
    assert (payment.status, payment.failure_code) == ("failed", "amount_not_chargeable")


def test_a_queued_charge_of_a_suspended_workspace_is_dropped_with_a_reason(
    billing, root, broker, worker
):
    """A charge_invoice message queued before the workspace's suspension charged its card
    anyway (only the scheduler's re-drive skipped suspended tenants). It is dropped with
    the reason, and the invoice waits for the re-drive after reactivation."""
    from sqlalchemy import select

    from shared.db import session_scope
    from shared.models import DeadLetter
    from workers import queues
    from workers.actors.billing import charge_invoice
    from workers.tenant_gate import REASON

    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)
    tenant = billing.ws.tenant["id"]
    assert root.call("DELETE", f"/api/admin/tenants/{tenant}").status_code == 204

    charge_invoice.send(str(invoice))
    broker.join(queues.BILLING, timeout=20_000)

    assert billing.stripe.charged(invoice) == []
    assert billing.row(invoice).status == "open"
    with session_scope() as session:
        letters = session.scalars(
            select(DeadLetter.error).where(DeadLetter.actor_name == "charge_invoice")
        ).all()
    assert REASON in letters


def test_giving_up_on_an_invoice_stops_charging_the_subscriptions_others(billing):
    """As Stripe does when a subscription is cancelled: its other invoices are not charged.

    An add-on's invoice (due later) is given up with the subscription; one a worker holds
    at that moment (its charge in flight) is given up when its decline arrives, not dunned
    for another week.
    """
    billing.add_method("pm_card_chargeDeclined")
    sub = billing.subscription(status="past_due")
    t = utcnow()
    invoice = billing.invoice(4900, subscription_id=sub, charge_attempts=3, next_charge_at=t)
    add_on = billing.invoice(900, subscription_id=sub, next_charge_at=t + dt.timedelta(hours=5))
    in_flight = billing.invoice(700, subscription_id=sub, next_charge_at=t)
    elsewhere = billing.invoice(300, next_charge_at=t + dt.timedelta(hours=5))
    with session_scope() as session:
        attempt = payments.begin_charge(session, in_flight, t)
    with session_scope() as holder:  # the worker charging it holds the invoice's row
        holder.execute(
            select(BillingInvoice.id).where(BillingInvoice.id == in_flight).with_for_update()
        )
        assert payments.charge_invoice(invoice, now=t) == "uncollectible"
    assert billing.sub(sub).status == "cancelled"
    row = billing.row(add_on)
    assert (row.status, row.next_charge_at) == ("uncollectible", None)
    assert payments.charge_invoice(add_on, now=t + dt.timedelta(hours=6)) == "settled"
    assert billing.stripe.charged(add_on) == [] and billing.payments(add_on) == []
    assert billing.row(in_flight).status == "open"
    declined = Outcome("failed", None, "card_declined")
    with session_scope() as session:
        assert payments.apply_outcome(session, attempt.payment_id, declined, t) == "uncollectible"
    row = billing.row(in_flight)
    assert (row.status, row.next_charge_at) == ("uncollectible", None)
    assert billing.row(elsewhere).status == "open"  # not this subscription's

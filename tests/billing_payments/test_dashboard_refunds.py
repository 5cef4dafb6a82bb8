"""A refund made in Stripe's dashboard (no metadata of ours) is applied to its invoice once.

Support staff refund from the dashboard too. Its events name only Stripe's ids: the refund
and the payment intent it returns, which is one of our charges. The invoice must then say
refunded (and what is left to refund must shrink), or OmniStream shows paid money that the
customer got back, and an admin's refund of "the rest" would ask Stripe for too much.
"""

from __future__ import annotations

from shared.billing.providers import get_provider
from tests.billing_payments.test_refunds import _paid, _refund


def _dashboard_refund(billing, invoice, amount: int, key: str):
    [charge] = billing.payments(invoice, "charge")
    outcome = get_provider().refund(
        charge_reference=charge.provider_reference,
        amount=amount,
        currency="USD",
        idempotency_key=key,
        metadata={},  # the dashboard attaches none of ours
    )
    assert outcome.status == "succeeded"
    return charge


def test_a_dashboard_refund_is_applied_once_and_bounds_the_admins(billing, root, worker):
    invoice = _paid(billing, 5000)
    charge = _dashboard_refund(billing, invoice, 1200, "dashboard-1")
    events = [billing.stripe.events_of(kind)[0] for kind in ("refund.created", "charge.refunded")]
    first = billing.post_event(events[0])
    assert (first.status_code, first.json["applied"]) == (200, 1)
    assert billing.post_event(events[1]).json["applied"] == 0  # the same refund, again
    row = billing.row(invoice)
    assert (row.status, row.amount_paid, row.amount_refunded) == ("partially_refunded", 5000, 1200)
    [refund] = billing.payments(invoice, "refund")
    assert (refund.reason, refund.charge_id, refund.status, refund.amount) == (
        "external",
        charge.id,
        "succeeded",
        1200,
    )
    # An admin may refund what is left, not what the dashboard already returned.
    err = _refund(root, invoice, status=422, amount=3900)
    assert err["error"]["details"][0]["field"] == "amount"
    _refund(root, invoice)
    billing.wait_status(invoice, "refunded")
    assert [r["amount"] for r in billing.stripe.refunds] == [1200, 3800]


def test_a_dashboard_refund_of_a_charge_not_ours_is_kept_only(billing):
    invoice = _paid(billing, 5000)
    event = {
        "id": "evt_someone_elses_refund",
        "type": "refund.created",
        "data": {
            "object": {
                "id": "re_elsewhere",
                "object": "refund",
                "amount": 700,
                "currency": "usd",
                "payment_intent": "pi_not_ours",
                "metadata": {},
                "status": "succeeded",
            }
        },
    }
    resp = billing.post_event(event)
    assert (resp.status_code, resp.json["applied"]) == (200, 0)
    assert billing.row(invoice).amount_refunded == 0
    assert billing.payments(invoice, "refund") == []


def test_a_pending_dashboard_refund_is_never_sent_again_by_us(billing):
    """A dashboard refund still pending at Stripe is a pending row of ours; the sweep of lost
    refund messages must not send it: its key was never Stripe's, so a second refund of the
    same money would be made."""
    import copy
    import uuid

    from sqlalchemy import update

    from shared.billing import payments
    from shared.db import session_scope
    from shared.models.billing import BillingPayment

    invoice = _paid(billing, 5000)
    _dashboard_refund(billing, invoice, 1200, "dashboard-pending")
    [created] = billing.stripe.events_of("refund.created")
    pending = copy.deepcopy(created)
    pending["id"] = "evt_refund_pending"
    pending["data"]["object"]["status"] = "pending"
    assert billing.post_event(pending).status_code == 200
    [refund] = billing.payments(invoice, "refund")
    assert (refund.reason, refund.status) == ("external", "pending")
    with session_scope() as session:  # days later, Stripe still settling it
        session.execute(
            update(BillingPayment)
            .where(BillingPayment.id == refund.id)
            .values(created_at=BillingPayment.created_at - 2 * payments.STALE_REFUND_AFTER)
        )
    with session_scope() as session:
        assert payments.redrive_stale_refunds(session) == 0
    # A message for it (from an older sweep) sends nothing either.
    assert payments.refund_payment(uuid.UUID(str(refund.id))) == "external"
    assert [r["amount"] for r in billing.stripe.refunds] == [1200]
    # Stripe's own word settles it.
    assert billing.post_event(created).json["applied"] == 1
    row = billing.row(invoice)
    assert (row.status, row.amount_refunded) == ("partially_refunded", 1200)


def test_two_events_of_one_dashboard_refund_at_once_apply_the_later_status(billing):
    """Stripe sends ``refund.created`` (pending) and ``charge.refunded`` (succeeded) at once:
    the second waits on the first's row and must then apply its own status, not drop it."""
    import copy
    import threading

    from shared.billing import payments, provider_events
    from shared.billing.providers.stripe_provider import _read_event
    from shared.db import session_scope

    invoice = _paid(billing, 5000)
    _dashboard_refund(billing, invoice, 1200, "dashboard-race")
    [created] = billing.stripe.events_of("refund.created")
    [refunded] = billing.stripe.events_of("charge.refunded")
    pending = copy.deepcopy(created)
    pending["data"]["object"]["status"] = "pending"
    receipts = []

    def second():
        with session_scope() as session:
            receipts.append(
                provider_events.apply_event(
                    session, "stripe", _read_event(refunded), payments.utcnow()
                )
            )

    with session_scope() as session:
        provider_events.apply_event(session, "stripe", _read_event(pending), payments.utcnow())
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive()  # waiting on the first event's uncommitted refund row
    thread.join(timeout=10)
    assert receipts and receipts[0].applied == 1
    [refund] = billing.payments(invoice, "refund")
    assert refund.status == "succeeded"
    row = billing.row(invoice)
    assert (row.status, row.amount_refunded) == ("partially_refunded", 1200)

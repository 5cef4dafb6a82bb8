"""Proration, period arithmetic and invoice amounts, as tables of hand-computed figures."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from shared.billing import invoices, periods, subscriptions
from shared.billing.invoices import LineSpec
from shared.context import Ctx
from shared.db import session_scope
from shared.models.billing import BillingAccount, BillingCoupon, BillingInvoice
from tests.billing_subscriptions.conftest import (
    add_payment_method,
    lines_of,
    make_coupon,
    make_plan,
    subscription_of,
)

UTC = dt.UTC


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "months", "expected"),
    [
        (at(2030, 1, 15, 9), 1, at(2030, 2, 15, 9)),
        (at(2030, 1, 31), 1, at(2030, 2, 28)),  # clamped to the month's last day
        (at(2032, 1, 31), 1, at(2032, 2, 29)),  # a leap year
        (at(2030, 12, 10), 1, at(2031, 1, 10)),
        (at(2032, 2, 29), 12, at(2033, 2, 28)),
        (at(2030, 3, 31), 1, at(2030, 4, 30)),
    ],
)
def test_add_months(moment, months, expected):
    assert periods.add_months(moment, months) == expected


@pytest.mark.parametrize(
    ("price", "start", "end", "now", "expected"),
    [
        # April 10 -> May 10 is 30 days; 20 left: exactly two thirds.
        (3000, at(2030, 4, 10), at(2030, 5, 10), at(2030, 4, 20), 2000),
        (6000, at(2030, 4, 10), at(2030, 5, 10), at(2030, 4, 20), 4000),
        # 1000 * 10/30 = 333.33 -> 333 (half-up rounds down below .5)
        (1000, at(2030, 4, 10), at(2030, 5, 10), at(2030, 4, 30), 333),
        # 2000 * 20/30 = 1333.33 -> 1333; 1001 * 1/2 = 500.5 -> 501 (half-up)
        (2000, at(2030, 4, 10), at(2030, 5, 10), at(2030, 4, 20), 1333),
        (1001, at(2030, 4, 10), at(2030, 4, 12), at(2030, 4, 11), 501),
        # Exactly half a second's worth: 1 * 1/2 = 0.5 -> 1.
        (1, at(2030, 4, 10), at(2030, 4, 10, 0, 0, 2), at(2030, 4, 10, 0, 0, 1), 1),
        # Before the period: the whole price; at or after its end: nothing.
        (3000, at(2030, 4, 10), at(2030, 5, 10), at(2030, 4, 1), 3000),
        (3000, at(2030, 4, 10), at(2030, 5, 10), at(2030, 5, 10), 0),
        (3000, at(2030, 4, 10), at(2030, 5, 10), at(2030, 6, 1), 0),
        (0, at(2030, 4, 10), at(2030, 5, 10), at(2030, 4, 20), 0),
    ],
)
def test_prorate_in_whole_seconds_rounded_half_up(price, start, end, now, expected):
    assert periods.prorate(price, start=start, end=end, now=now) == expected


def test_a_credit_and_a_charge_for_the_same_time_and_price_cancel_exactly():
    start, end = at(2030, 1, 10), at(2030, 2, 10)
    for second in range(0, 31 * 86_400, 86_400 * 3 + 7):
        now = start + dt.timedelta(seconds=second)
        amount = periods.prorate(999, start=start, end=end, now=now)
        assert 0 <= amount <= 999
        assert amount - periods.prorate(999, start=start, end=end, now=now) == 0


def _tenant_with_subscription(workspace, price=1000, tax_bps=None):
    plan = make_plan(price)
    tenant = uuid.UUID(workspace.tenant["id"])
    add_payment_method(tenant)
    with session_scope() as session:
        if tax_bps is not None:
            session.add(BillingAccount(tenant_id=tenant, provider="fake", tax_rate_bps=tax_bps))
        subscriptions.subscribe(session, Ctx.system(tenant), plan_id=plan, now=at(2030, 4, 10))
    return tenant, plan


@pytest.mark.parametrize(
    ("lines", "coupon", "tax_bps", "expected"),
    [
        # subtotal, discount, tax, total, status
        ([1000, (250, 2)], None, 0, (1500, 0, 0, 1500, "open")),
        ([1000, (250, 2)], {"percent_off": 10}, 2000, (1500, 150, 270, 1620, "open")),
        # tax 1005 * 12.5 % = 125.625 -> 126 (half-up)
        ([1005], None, 1250, (1005, 0, 126, 1131, "open")),
        # 15 % of 1005 = 150.75 -> 151
        ([1005], {"percent_off": 15}, 0, (1005, 151, 0, 854, "open")),
        # an amount off above the subtotal discounts the subtotal, no more: 0 is paid at once
        ([500], {"amount_off": 700, "currency": "USD"}, 2000, (500, 500, 0, 0, "paid")),
        # a credit larger than the charges is not paid back
        ([-800, 300], None, 2000, (-500, 0, 0, 0, "paid")),
        ([], None, 0, (0, 0, 0, 0, "paid")),
    ],
)
def test_invoice_amounts(workspace, charges, lines, coupon, tax_bps, expected):
    tenant, _plan = _tenant_with_subscription(workspace, tax_bps=tax_bps)
    charges.sent.clear()
    specs = [
        LineSpec("plan", "x", *(line if isinstance(line, tuple) else (line,))) for line in lines
    ]
    now = at(2030, 4, 11)
    with session_scope() as session:
        found = None
        if coupon:
            code = make_coupon(**coupon)
            found = session.scalar(select(BillingCoupon).where(BillingCoupon.code == code))
        invoice = invoices.create_invoice(
            session,
            tenant_id=tenant,
            subscription=subscriptions.live_subscription(session, tenant),
            reason="plan_change",
            lines=specs,
            coupon=found,
            now=now,
        )
        invoice_id = invoice.id
        got = (
            invoice.subtotal,
            invoice.discount_amount,
            invoice.tax_amount,
            invoice.total,
            invoice.status,
        )
        assert charges.sent == []  # not before the commit
    assert got == expected
    assert invoice.tax_rate_bps == (tax_bps or 0)
    with session_scope() as session:
        stored = session.get(BillingInvoice, invoice_id)
        assert stored.next_charge_at == (now if expected[3] else None)
        assert stored.paid_at == (None if expected[3] else now)
    assert charges.sent == ([invoice_id] if expected[3] else [])
    written = lines_of(invoice_id)
    assert sum(amount for kind, amount in written if kind != "discount") == expected[0]
    assert sum(amount for kind, amount in written if kind == "discount") == -expected[1]


def test_an_invoice_rolled_back_is_never_charged(workspace, charges):
    tenant, _plan = _tenant_with_subscription(workspace)
    charges.sent.clear()
    with pytest.raises(RuntimeError), session_scope() as session:
        invoices.create_invoice(
            session,
            tenant_id=tenant,
            subscription=subscriptions.live_subscription(session, tenant),
            reason="add_on",
            lines=[LineSpec("add_on", "x", 700)],
            now=at(2030, 4, 11),
        )
        raise RuntimeError("the request failed after the invoice")
    assert charges.sent == []


def test_upgrade_proration_exact_figures_with_tax(workspace, charges):
    tenant, _plan = _tenant_with_subscription(workspace, price=3000, tax_bps=2000)
    bigger = make_plan(6000)
    with session_scope() as session:
        changed = subscriptions.change_plan(
            session, Ctx.system(tenant), plan_id=bigger, now=at(2030, 4, 20)
        )
        invoice_id = changed.invoice.id
        figures = (changed.invoice.subtotal, changed.invoice.tax_amount, changed.invoice.total)
    # 20 of 30 days left: credit 3000*2/3 = 2000, charge 6000*2/3 = 4000; 20 % tax on 2000.
    assert lines_of(invoice_id) == [("proration_credit", -2000), ("proration_charge", 4000)]
    assert figures == (2000, 400, 2400)
    sub = subscription_of(tenant)
    assert (sub.plan_id, sub.price_amount) == (bigger, 6000)
    assert sub.current_period_end == at(2030, 5, 10)  # same interval: the period stays


def test_upgrade_to_a_yearly_plan_starts_a_new_period(workspace, charges):
    tenant, _plan = _tenant_with_subscription(workspace, price=3000)
    yearly = make_plan(60000, interval="year")
    with session_scope() as session:
        changed = subscriptions.change_plan(
            session, Ctx.system(tenant), plan_id=yearly, now=at(2030, 4, 25)
        )
        invoice_id = changed.invoice.id
    # 15 of 30 days unused: credit 1500; the year from now at the full price.
    assert lines_of(invoice_id) == [("proration_credit", -1500), ("plan", 60000)]
    sub = subscription_of(tenant)
    assert (sub.current_period_start, sub.current_period_end) == (
        at(2030, 4, 25),
        at(2031, 4, 25),
    )


def test_upgrade_to_a_yearly_plan_bills_the_add_ons_for_the_new_period(workspace, charges):
    """The new period is a year: add-ons paid up to the old period end must be credited and
    charged for it too, or they ride free until the yearly renewal."""
    from shared.models.billing import BillingSubscriptionAddOn
    from tests.billing_subscriptions.conftest import make_add_on

    tenant, _plan = _tenant_with_subscription(workspace, price=3000)
    kept, leaving = make_add_on(900), make_add_on(400)
    ctx = Ctx.system(tenant)
    with session_scope() as session:
        subscriptions.attach_add_on(session, ctx, add_on_id=kept, quantity=2, now=at(2030, 4, 10))
        subscriptions.attach_add_on(session, ctx, add_on_id=leaving, now=at(2030, 4, 10, 0, 0, 1))
        subscriptions.detach_add_on(session, ctx, leaving)
    yearly = make_plan(60000, interval="year")
    with session_scope() as session:
        changed = subscriptions.change_plan(session, ctx, plan_id=yearly, now=at(2030, 4, 25))
        invoice_id = changed.invoice.id
    # 15 of 30 days unused: half of each credited; the kept add-on charged for the year.
    assert lines_of(invoice_id) == [
        ("proration_credit", -1500),
        ("proration_credit", -900),
        ("proration_credit", -200),
        ("plan", 60000),
        ("add_on", 1800),
    ]
    with session_scope() as session:
        rows = {
            row.add_on_id: row.detached_at
            for row in session.scalars(
                select(BillingSubscriptionAddOn).where(BillingSubscriptionAddOn.tenant_id == tenant)
            )
        }
    # The one detaching at the period end leaves at the old period's end: now.
    assert rows == {kept: None, leaving: at(2030, 4, 25)}


def test_add_on_attached_mid_period_is_prorated(workspace, charges):
    from tests.billing_subscriptions.conftest import make_add_on

    tenant, _plan = _tenant_with_subscription(workspace)
    add_on = make_add_on(900)
    with session_scope() as session:
        changed = subscriptions.attach_add_on(
            session, Ctx.system(tenant), add_on_id=add_on, quantity=2, now=at(2030, 4, 30)
        )
        invoice_id = changed.invoice.id
    # 10 of 30 days left: 1800 * 1/3 = 600.
    assert lines_of(invoice_id) == [("add_on", 600)]

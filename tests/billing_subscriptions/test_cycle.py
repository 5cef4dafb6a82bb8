"""``billing_cycle`` at period ends, time moved (never slept): each case subscribes at a
past instant and runs the cycle at the instants that follow, all before the real now, so
other tests' subscriptions (whose periods end in the future) are not due."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from shared.billing import analytics, cycle, periods, subscriptions
from shared.billing.invoices import LineSpec, create_invoice
from shared.context import Ctx
from shared.db import session_scope
from shared.models import Tenant
from shared.models.billing import (
    BillingAddOn,
    BillingInvoice,
    BillingPlan,
    BillingSubscription,
    BillingSubscriptionAddOn,
)
from tests.billing_subscriptions.conftest import (
    add_payment_method,
    invoices_of,
    lines_of,
    make_add_on,
    make_coupon,
    make_plan,
    subscription_of,
)
from tests.workspaces import register

SECOND = dt.timedelta(seconds=1)


#: Every case starts here; its periods end (START + n months) weeks before the real now
#: (the database's clock is this machine's).
START = (dt.datetime.now(dt.UTC) - dt.timedelta(days=150)).replace(
    day=10, hour=0, minute=0, second=0, microsecond=0
)


def month(n: int) -> dt.datetime:
    return periods.add_months(START, n)


def run_cycle(now: dt.datetime, **options) -> cycle.Outcome:
    with session_scope() as session:
        return cycle.run(session, now=now, **options)


def subscribe(tenant, plan, *, coupon: str | None = None, at: dt.datetime = START) -> None:
    add_payment_method(tenant)
    with session_scope() as session:
        subscriptions.subscribe(
            session, Ctx.system(uuid.UUID(str(tenant))), plan_id=plan, coupon_code=coupon, now=at
        )


def cycle_invoices(tenant) -> list[BillingInvoice]:
    return invoices_of(tenant, "subscription_cycle")


@pytest.fixture
def tenant(workspace) -> uuid.UUID:
    return uuid.UUID(workspace.tenant["id"])


def test_a_renewal_charges_the_plans_current_price_for_the_next_period(tenant, charges):
    plan = make_plan(1000)
    subscribe(tenant, plan)
    with session_scope() as session:  # the price changes mid-period
        session.execute(update(BillingPlan).where(BillingPlan.id == plan).values(price_amount=1200))
    assert subscription_of(tenant).price_amount == 1000  # kept until the renewal
    run_cycle(month(1) - SECOND)
    assert cycle_invoices(tenant) == []  # not due yet
    run_cycle(month(1) + SECOND)
    [invoice] = cycle_invoices(tenant)
    assert (invoice.total, invoice.period_start, invoice.period_end) == (1200, month(1), month(2))
    assert invoice.id in charges.sent
    sub = subscription_of(tenant)
    assert (sub.status, sub.price_amount) == ("active", 1200)
    assert (sub.current_period_start, sub.current_period_end) == (month(1), month(2))
    run_cycle(month(1) + 2 * SECOND)  # a second run in the same period renews nothing
    assert len(cycle_invoices(tenant)) == 1


@pytest.mark.parametrize(
    ("coupon", "discounts"),
    [
        # discount on the first invoice, then on each renewal in turn
        ({"percent_off": 50, "duration": "once"}, [500, 0, 0, 0]),
        ({"percent_off": 50, "duration": "repeating", "duration_periods": 3}, [500, 500, 500, 0]),
        ({"percent_off": 50, "duration": "forever"}, [500, 500, 500, 500]),
        (
            {"amount_off": 300, "currency": "USD", "duration": "repeating", "duration_periods": 2},
            [300, 300, 0, 0],
        ),
    ],
)
def test_coupons_count_down_over_periods(tenant, charges, coupon, discounts):
    plan = make_plan(1000)
    subscribe(tenant, plan, coupon=make_coupon(**coupon))
    for n in (1, 2, 3):
        run_cycle(month(n) + SECOND)
    found = [invoice.discount_amount for invoice in invoices_of(tenant)]
    assert found == discounts
    assert [invoice.total for invoice in invoices_of(tenant)] == [1000 - d for d in discounts]
    sub = subscription_of(tenant)
    assert (sub.coupon_id is None) == (discounts[-1] == 0)


@pytest.mark.parametrize(
    ("eligible", "renewals"),
    [
        ("small", [(3000, 0), (3000, 0)]),  # the coupon ends at the first renewal on big
        ("both", [(3000, 1500), (3000, 1500)]),
    ],
)
def test_a_coupon_stops_at_the_renewal_on_a_plan_it_excludes(
    workspace, charges, eligible, renewals
):
    tenant = uuid.UUID(workspace.tenant["id"])
    small, big = make_plan(1000), make_plan(3000)
    plans = [small] if eligible == "small" else [small, big]
    coupon = make_coupon(percent_off=50, duration="forever", eligible_plan_ids=plans)
    subscribe(tenant, small, coupon=coupon)
    check = workspace.call(
        "POST", "/api/billing/coupons/validate", json={"code": coupon, "plan_id": str(big)}
    )
    assert check.status_code == (422 if eligible == "small" else 200)
    # An upgrade keeps the coupon on the subscription (its invoice is a proration: no coupon).
    with session_scope() as session:
        subscriptions.change_plan(session, Ctx.system(tenant), plan_id=big, now=START + SECOND)
    for n in (1, 2):
        run_cycle(month(n) + SECOND)
    found = [(i.subtotal, i.discount_amount) for i in cycle_invoices(tenant)]
    assert found == renewals
    assert (subscription_of(tenant).coupon_id is None) == (eligible == "small")


def test_a_downgrade_to_a_plan_the_coupon_excludes_renews_without_it(tenant, charges):
    big, small = make_plan(3000), make_plan(1000)
    subscribe(
        tenant, big, coupon=make_coupon(percent_off=50, duration="forever", eligible_plan_ids=[big])
    )
    with session_scope() as session:
        subscriptions.change_plan(session, Ctx.system(tenant), plan_id=small, now=START + SECOND)
    run_cycle(month(1) + SECOND)
    [renewal] = cycle_invoices(tenant)
    assert (renewal.subtotal, renewal.discount_amount) == (1000, 0)
    assert subscription_of(tenant).coupon_id is None


def _alone_in(tenant, currency: str) -> None:
    """End the registration's trial and earlier runs' subscriptions in ``currency``, so the
    MRR figure in it is the one this test makes."""
    with session_scope() as session:
        session.execute(
            update(BillingSubscription)
            .where(
                (BillingSubscription.tenant_id == tenant)
                | (BillingSubscription.currency == currency)
            )
            .values(status="cancelled", ended_at=START)
        )


def test_mrr_is_what_the_renewal_charges_with_a_coupon_on_plan_and_add_ons(tenant, charges):
    currency = "NZD"  # no other test bills in it: the MRR figure is this subscription's alone
    plan = make_plan(10_000, currency=currency)
    add_on = make_add_on(5_000, currency=currency)
    _alone_in(tenant, currency)
    subscribe(tenant, plan, coupon=make_coupon(percent_off=20, duration="forever"))
    with session_scope() as session:
        subscriptions.attach_add_on(session, Ctx.system(tenant), add_on_id=add_on, now=START)
    run_cycle(month(1) + SECOND)
    [renewal] = cycle_invoices(tenant)
    # the invoice discounts the whole subtotal: 20 % of plan + add-on
    assert (renewal.subtotal, renewal.discount_amount) == (15_000, 3_000)
    with session_scope() as session:
        figures = {c["currency"]: c for c in analytics.mrr(session, month(1))["currencies"]}
    assert figures[currency]["subscriptions"] == 1
    assert figures[currency]["mrr"] == renewal.subtotal - renewal.discount_amount


def test_mrr_leaves_out_a_coupon_the_next_renewal_drops_for_the_plan(tenant, charges):
    """A coupon limited to a plan the subscription left is not applied at the next renewal,
    so MRR must not subtract it meanwhile."""
    currency = "SEK"  # no other test bills in it: the MRR figure is this subscription's alone
    small, big = make_plan(10_000, currency=currency), make_plan(20_000, currency=currency)
    _alone_in(tenant, currency)
    coupon = make_coupon(percent_off=20, duration="forever", eligible_plan_ids=[small])
    subscribe(tenant, small, coupon=coupon)
    with session_scope() as session:
        subscriptions.change_plan(session, Ctx.system(tenant), plan_id=big, now=START + SECOND)

    def mrr() -> int:
        with session_scope() as session:
            figures = analytics.mrr(session, month(1))["currencies"]
        return {c["currency"]: c for c in figures}[currency]["mrr"]

    before = mrr()
    run_cycle(month(1) + SECOND)
    [renewal] = cycle_invoices(tenant)
    assert (renewal.subtotal, renewal.discount_amount) == (20_000, 0)
    assert before == mrr() == 20_000


def test_a_downgrade_and_a_detached_add_on_take_effect_at_the_period_end(tenant, charges):
    big, small = make_plan(3000), make_plan(1000)
    kept, leaving = make_add_on(200), make_add_on(700)
    subscribe(tenant, big)
    ctx = Ctx.system(tenant)
    with session_scope() as session:
        for add_on in (kept, leaving):
            subscriptions.attach_add_on(session, ctx, add_on_id=add_on, now=START + SECOND)
        subscriptions.change_plan(session, ctx, plan_id=small, now=START + 2 * SECOND)
        subscriptions.detach_add_on(session, ctx, leaving)
        # the kept add-on's price changes: the renewal uses the new one
        session.execute(
            update(BillingAddOn).where(BillingAddOn.id == kept).values(price_amount=250)
        )
    sub = subscription_of(tenant)
    assert (sub.plan_id, sub.pending_plan_id) == (big, small)
    run_cycle(month(1) + SECOND)
    [invoice] = cycle_invoices(tenant)
    assert lines_of(invoice.id) == [("plan", 1000), ("add_on", 250)]
    sub = subscription_of(tenant)
    assert (sub.plan_id, sub.pending_plan_id, sub.price_amount) == (small, None, 1000)
    with session_scope() as session:
        rows = {
            row.add_on_id: row.detached_at
            for row in session.scalars(
                select(BillingSubscriptionAddOn).where(BillingSubscriptionAddOn.tenant_id == tenant)
            )
        }
    assert rows == {kept: None, leaving: month(1)}


def test_cancel_at_period_end_ends_the_subscription_and_its_add_ons(tenant, charges):
    plan = make_plan(1000)
    add_on = make_add_on(100)
    subscribe(tenant, plan)
    with session_scope() as session:
        subscriptions.attach_add_on(session, Ctx.system(tenant), add_on_id=add_on, now=START)
        subscriptions.cancel(session, Ctx.system(tenant))
    run_cycle(month(1) - SECOND)
    assert subscription_of(tenant).status == "active"  # usable until the period end
    run_cycle(month(1) + SECOND)
    sub = subscription_of(tenant)
    assert (sub.status, sub.ended_at) == ("cancelled", month(1))
    assert cycle_invoices(tenant) == []
    with session_scope() as session:
        assert session.scalar(
            select(BillingSubscriptionAddOn.detached_at).where(
                BillingSubscriptionAddOn.tenant_id == tenant
            )
        ) == month(1)
    run_cycle(month(2) + SECOND)
    assert cycle_invoices(tenant) == []  # a cancelled subscription never renews


def _trial(tenant, plan_price: int, *, method: bool) -> uuid.UUID:
    plan = make_plan(plan_price, trial_days=14)
    with session_scope() as session:  # the registration's trial, moved back to START
        session.execute(
            update(BillingSubscription)
            .where(BillingSubscription.tenant_id == tenant)
            .values(
                plan_id=plan,
                price_amount=plan_price,
                current_period_start=START,
                current_period_end=START + dt.timedelta(days=14),
                trial_ends_at=START + dt.timedelta(days=14),
            )
        )
    if method:
        add_payment_method(tenant)
    return plan


@pytest.mark.parametrize(
    ("price", "method", "status", "invoiced"),
    [
        (2500, True, "active", [2500]),
        (2500, False, "cancelled", []),
        (0, False, "active", [0]),  # a free plan needs no payment method
    ],
)
def test_a_trial_end_starts_the_paid_period_or_cancels(
    tenant, charges, price, method, status, invoiced
):
    _trial(tenant, price, method=method)
    trial_end = START + dt.timedelta(days=14)
    run_cycle(trial_end - SECOND)
    assert subscription_of(tenant).status == "trialing"
    run_cycle(trial_end + SECOND)
    sub = subscription_of(tenant)
    assert sub.status == status
    assert [invoice.total for invoice in cycle_invoices(tenant)] == invoiced
    if status == "active":
        assert (sub.current_period_start, sub.current_period_end) == (
            trial_end,
            periods.add_months(trial_end, 1),
        )
    else:
        assert sub.ended_at == trial_end


def test_a_past_due_subscription_renews_and_stays_past_due(tenant, charges):
    """Dunning of the earlier invoice is independent of the calendar."""
    plan = make_plan(1000)
    subscribe(tenant, plan)
    with session_scope() as session:
        session.execute(
            update(BillingSubscription)
            .where(BillingSubscription.tenant_id == tenant)
            .values(status="past_due", past_due_since=START + dt.timedelta(days=1))
        )
    run_cycle(month(1) + SECOND)
    sub = subscription_of(tenant)
    assert (sub.status, sub.current_period_start) == ("past_due", month(1))
    first, renewal = invoices_of(tenant)
    assert (first.status, renewal.status, renewal.reason) == ("open", "open", "subscription_cycle")


def test_overdue_open_invoices_are_redriven_and_new_ones_sent_once(tenant, charges):
    plan = make_plan(1000)
    subscribe(tenant, plan)
    [first] = invoices_of(tenant)
    charges.sent.clear()  # the first invoice's hand-off was "lost"
    run_cycle(month(1) + SECOND)
    [renewal] = cycle_invoices(tenant)
    assert charges.sent.count(first.id) == 1  # overdue: re-driven
    assert charges.sent.count(renewal.id) == 1  # new: handed off once, not re-driven too


def test_a_suspended_workspace_renews_after_reactivation(tenant, charges):
    plan = make_plan(1000)
    subscribe(tenant, plan)
    with session_scope() as session:
        session.execute(update(Tenant).where(Tenant.id == tenant).values(status="suspended"))
    run_cycle(month(1) + SECOND)
    assert cycle_invoices(tenant) == []
    with session_scope() as session:
        session.execute(update(Tenant).where(Tenant.id == tenant).values(status="active"))
    run_cycle(month(1) + 2 * SECOND)
    [invoice] = cycle_invoices(tenant)
    assert invoice.period_start == month(1)


def test_a_suspended_workspaces_overdue_charges_wait_for_reactivation(tenant, charges):
    """Scheduler jobs skip a suspended workspace (API.md): its card is not charged (nor
    dunned to cancellation) while it is suspended; the charge is re-driven once it is back."""
    plan = make_plan(1000)
    subscribe(tenant, plan)
    [first] = invoices_of(tenant)
    charges.sent.clear()  # the first invoice's hand-off was "lost"
    with session_scope() as session:
        session.execute(update(Tenant).where(Tenant.id == tenant).values(status="suspended"))
    run_cycle(START + dt.timedelta(hours=1))
    assert first.id not in charges.sent
    with session_scope() as session:
        session.execute(update(Tenant).where(Tenant.id == tenant).values(status="active"))
    run_cycle(START + dt.timedelta(hours=2))
    assert charges.sent.count(first.id) == 1


def test_two_concurrent_cycles_never_renew_a_subscription_twice(client, charges):
    plan = make_plan(1000)
    tenants = [uuid.UUID(register(client).tenant["id"]) for _ in range(24)]
    for tenant in tenants:
        subscribe(tenant, plan)
    barrier = threading.Barrier(2)
    outcomes: list[cycle.Outcome] = []
    errors: list[BaseException] = []

    def scheduler() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(run_cycle(month(1) + SECOND, batch=3))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    per_tenant = [len(cycle_invoices(tenant)) for tenant in tenants]
    assert per_tenant == [1] * len(tenants)
    assert sum(o.renewed for o in outcomes) >= len(tenants)  # others' rows may be due too
    for tenant in tenants:
        assert subscription_of(tenant).current_period_start == month(1)


def test_one_cycle_invoice_per_subscription_and_period_is_enforced_by_the_schema(tenant, charges):
    plan = make_plan(1000)
    subscribe(tenant, plan)
    spec = LineSpec("plan", "x", 1000, period_start=month(1), period_end=month(2))
    with session_scope() as session:
        sub = subscriptions.live_subscription(session, tenant)
        create_invoice(
            session,
            tenant_id=tenant,
            subscription=sub,
            reason="subscription_cycle",
            lines=[spec],
            now=month(1),
        )
    with pytest.raises(IntegrityError), session_scope() as session:
        sub = subscriptions.live_subscription(session, tenant)
        create_invoice(
            session,
            tenant_id=tenant,
            subscription=sub,
            reason="subscription_cycle",
            lines=[spec],
            now=month(1),
        )


def test_the_scheduler_runs_billing_cycle_and_rollup_usage_hourly():
    from scheduler import jobs

    table = {job.name: job for job in jobs.JOBS}
    for name in ("billing_cycle", "rollup_usage"):
        assert table[name].trigger.interval == dt.timedelta(hours=1), name
        assert jobs.run(table[name], lambda _session: True) is not None, name
    assert set(jobs.run(table["billing_cycle"], lambda _session: True)) >= {"renewed", "invoices"}


def test_a_period_invoiced_already_keeps_its_invoice_and_the_batch_goes_on(client, charges):
    plan = make_plan(1000)
    odd, fine = (uuid.UUID(register(client).tenant["id"]) for _ in range(2))
    for tenant in (odd, fine):
        subscribe(tenant, plan)
    spec = LineSpec("plan", "by hand", 777, period_start=month(1), period_end=month(2))
    with session_scope() as session:  # a cycle invoice written by hand (or a bug)
        create_invoice(
            session,
            tenant_id=odd,
            subscription=subscriptions.live_subscription(session, odd),
            reason="subscription_cycle",
            lines=[spec],
            now=month(1),
        )
    run_cycle(month(1) + SECOND)
    assert [invoice.total for invoice in cycle_invoices(odd)] == [777]
    assert [invoice.total for invoice in cycle_invoices(fine)] == [1000]
    for tenant in (odd, fine):
        assert subscription_of(tenant).current_period_start == month(1)

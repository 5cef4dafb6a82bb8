"""``billing_cycle``: what happens at each subscription's period end, and charges re-driven.

At a period end (``current_period_end <= now``):
- ``cancel_at_period_end`` -> ``cancelled`` (its add-ons end with it);
- a trial -> ``active`` on its plan with the first invoice, or ``cancelled`` when the plan
  has a price and the workspace has no payment method;
- otherwise a renewal: the next period, at the plan's *current* price (a pending downgrade
  applied first), add-ons detached at the period end ended and the others renewed at their
  current price, the coupon applied while it has periods left, one ``subscription_cycle``
  invoice (charged after commit).

A ``past_due`` subscription renews like an ``active`` one (it keeps its status): dunning of
the earlier invoice is ``charge_invoice``'s, independent of the calendar.

Batches of :data:`BATCH` rows are claimed ``FOR UPDATE SKIP LOCKED`` and committed one at a
time, so two schedulers share the due rows and never renew one twice: a renewal moves the
period end forward in the same transaction that writes its invoice, and the unique index
``uq_billing_invoices_cycle`` (one cycle invoice per subscription and period start) makes a
second renewal of the same period impossible. Suspended workspaces wait (API.md: scheduler
jobs skip them); they renew on the first run after reactivation.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.billing import charge_queue, invoices, periods, usage
from shared.billing.invoices import LineSpec
from shared.models import Tenant
from shared.models.billing import (
    BillingAddOn,
    BillingCoupon,
    BillingInvoice,
    BillingPlan,
    BillingSubscription,
    BillingSubscriptionAddOn,
)

#: Subscriptions renewed per transaction.
BATCH = 500
#: An open invoice is re-driven once its charge is this late (the fast path had its chance).
REDRIVE_AFTER = dt.timedelta(minutes=5)


@dataclass
class Outcome:
    renewed: int = 0
    trials_converted: int = 0
    cancelled: int = 0
    invoices: int = 0
    redriven: int = 0
    batches: int = 0
    invoice_ids: list[uuid.UUID] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, int]:
        return {
            "renewed": self.renewed,
            "trials_converted": self.trials_converted,
            "cancelled": self.cancelled,
            "invoices": self.invoices,
            "redriven": self.redriven,
            "batches": self.batches,
        }


def _claim(session: Session, now: dt.datetime, batch: int) -> list[BillingSubscription]:
    return list(
        session.scalars(
            select(BillingSubscription)
            .join(Tenant, Tenant.id == BillingSubscription.tenant_id)
            .where(
                BillingSubscription.status != "cancelled",
                BillingSubscription.current_period_end <= now,
                Tenant.status == "active",
            )
            .order_by(BillingSubscription.current_period_end)
            .limit(batch)
            .with_for_update(of=BillingSubscription, skip_locked=True)
        )
    )


def run(
    session: Session,
    *,
    now: dt.datetime | None = None,
    batch: int = BATCH,
    max_batches: int | None = None,
) -> Outcome:
    """Apply every due period end at ``now`` (default: the database's now), batch by batch."""
    now = now or session.scalar(select(func.now()))
    outcome = Outcome()
    cache = _Catalogue(session)
    while max_batches is None or outcome.batches < max_batches:
        due = _claim(session, now, batch)
        if not due:
            break
        _apply_batch(session, due, now, cache, outcome)
        session.commit()
        outcome.batches += 1
    outcome.redriven = redrive_charges(session, now=now)
    session.commit()
    return outcome


def redrive_charges(session: Session, *, now: dt.datetime, limit: int = 5000) -> int:
    """Hand open invoices whose charge is overdue to ``charge_invoice`` again."""
    late = list(
        session.scalars(
            select(BillingInvoice.id)
            .where(
                BillingInvoice.status == "open",
                BillingInvoice.next_charge_at <= now - REDRIVE_AFTER,
            )
            .order_by(BillingInvoice.next_charge_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    charge_queue.QUEUE.enqueue_after_commit(session, late)
    return len(late)


class _Catalogue:
    """Plans, add-ons and coupons read once per run (they are few)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.plans: dict[uuid.UUID, BillingPlan] = {}
        self.coupons: dict[uuid.UUID, BillingCoupon | None] = {}

    def plan(self, plan_id: uuid.UUID) -> BillingPlan:
        if plan_id not in self.plans:
            self.plans[plan_id] = self.session.get(BillingPlan, plan_id)
        return self.plans[plan_id]

    def coupon(self, coupon_id: uuid.UUID) -> BillingCoupon | None:
        if coupon_id not in self.coupons:
            self.coupons[coupon_id] = self.session.get(BillingCoupon, coupon_id)
        return self.coupons[coupon_id]


def _add_ons_of(
    session: Session, subscription_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[BillingSubscriptionAddOn, BillingAddOn]]]:
    found: dict[uuid.UUID, list] = defaultdict(list)
    rows = session.execute(
        select(BillingSubscriptionAddOn, BillingAddOn)
        .join(BillingAddOn, BillingAddOn.id == BillingSubscriptionAddOn.add_on_id)
        .where(
            BillingSubscriptionAddOn.subscription_id.in_(subscription_ids),
            BillingSubscriptionAddOn.detached_at.is_(None),
        )
        .order_by(BillingSubscriptionAddOn.attached_at, BillingSubscriptionAddOn.id)
        .with_for_update(of=BillingSubscriptionAddOn)
    )
    for attached, add_on in rows:
        found[attached.subscription_id].append((attached, add_on))
    return found


def _apply_batch(
    session: Session,
    due: list[BillingSubscription],
    now: dt.datetime,
    cache: _Catalogue,
    outcome: Outcome,
) -> None:
    add_ons = _add_ons_of(session, [s.id for s in due])
    methods = _tenants_with_payment_method(session, [s.tenant_id for s in due])
    for subscription in due:
        _apply_one(
            session,
            subscription,
            add_ons.get(subscription.id, []),
            subscription.tenant_id in methods,
            now,
            cache,
            outcome,
        )
        usage.forget_limits(subscription.tenant_id)
    session.flush()


def _tenants_with_payment_method(session: Session, tenant_ids: list[uuid.UUID]) -> set:
    from shared.models.billing import BillingPaymentMethod

    return set(
        session.scalars(
            select(BillingPaymentMethod.tenant_id).where(
                BillingPaymentMethod.tenant_id.in_(tenant_ids),
                BillingPaymentMethod.is_default.is_(True),
            )
        )
    )


def _end(subscription: BillingSubscription, attached, now: dt.datetime, outcome: Outcome) -> None:
    end = subscription.current_period_end
    subscription.status = "cancelled"
    subscription.ended_at = end
    subscription.cancelled_at = subscription.cancelled_at or now
    for row, _add_on in attached:
        row.detached_at = end
    outcome.cancelled += 1


def _apply_one(
    session: Session,
    subscription: BillingSubscription,
    attached: list[tuple[BillingSubscriptionAddOn, BillingAddOn]],
    has_method: bool,
    now: dt.datetime,
    cache: _Catalogue,
    outcome: Outcome,
) -> None:
    end = subscription.current_period_end
    if subscription.cancel_at_period_end:
        _end(subscription, attached, now, outcome)
        return
    plan = cache.plan(subscription.pending_plan_id or subscription.plan_id)
    trial = subscription.status == "trialing"
    if trial and plan.price_amount > 0 and not has_method:
        _end(subscription, attached, now, outcome)
        return
    kept = []
    for row, add_on in attached:
        if row.detach_at_period_end:
            row.detached_at = end
        else:
            row.price_amount = add_on.price_amount  # the add-on's current price
            kept.append((row, add_on))
    new_end = periods.period_end(end, plan.billing_interval)
    subscription.plan_id = plan.id
    subscription.pending_plan_id = None
    subscription.price_amount = plan.price_amount
    subscription.currency = plan.currency
    subscription.current_period_start = end
    subscription.current_period_end = new_end
    if trial:
        subscription.status = "active"
        outcome.trials_converted += 1
    else:
        outcome.renewed += 1
    coupon = _coupon_for_period(subscription, cache)
    lines = [
        LineSpec(
            "plan",
            f"{plan.name} ({plan.billing_interval}ly)",
            plan.price_amount,
            period_start=end,
            period_end=new_end,
            plan_id=plan.id,
        )
    ]
    lines += [
        LineSpec(
            "add_on",
            add_on.name,
            row.price_amount,
            quantity=row.quantity,
            period_start=end,
            period_end=new_end,
            add_on_id=add_on.id,
        )
        for row, add_on in kept
    ]
    invoice = invoices.create_invoice(
        session,
        tenant_id=subscription.tenant_id,
        subscription=subscription,
        reason="subscription_cycle",
        lines=lines,
        coupon=coupon,
        now=now,
    )
    outcome.invoices += 1
    outcome.invoice_ids.append(invoice.id)


def _coupon_for_period(
    subscription: BillingSubscription, cache: _Catalogue
) -> BillingCoupon | None:
    """The coupon discounting the period starting now, counting its periods down."""
    if subscription.coupon_id is None:
        return None
    coupon = cache.coupon(subscription.coupon_id)
    left = subscription.coupon_periods_left
    if coupon is None or (left is not None and left <= 0):
        subscription.coupon_id = None
        subscription.coupon_periods_left = None
        return None
    if left is not None:
        subscription.coupon_periods_left = left - 1
    return coupon

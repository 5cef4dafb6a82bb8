"""A tenant's subscription over time: trial, subscribe, change plan, cancel, add-ons.

Trial: a new workspace (self-registered or provisioned by a super admin) starts a trial on
the plan flagged ``is_default_trial`` for ``plan.trial_days`` (or BILLING_TRIAL_DAYS when
the plan sets none). A platform without such a plan is a self-hosted install without
billing: no subscription is created and no limit applies.

Changes take effect as follows (``billing_cycle`` applies what waits for the period end):
- subscribe: a trial (or nothing, or a cancelled subscription) becomes ``active`` on the
  plan now, with a first invoice for a full period; a live paid one answers 409 naming
  it (subscribes of one tenant are serialized, so of two first ones at once the later
  is told of the earlier's subscription);
- upgrade (a higher monthly-normalised price): now, with one invoice crediting the unused
  time at the old price and charging the rest of the period at the new (:mod:`periods`);
  a change of interval starts a new period now instead;
- downgrade (not higher): stored as ``pending_plan_id``, applied at the period end;
- cancel: ``cancel_at_period_end``; add-on attach: now with a prorated invoice; detach:
  ``detach_at_period_end``.

A plan with a price (or an add-on) needs the tenant's default payment method (422 naming
``payment_method``). Coupons discount the period invoices (the first one and renewals),
not proration invoices. ``coupon_periods_left`` counts the periods *after* the current
one that the coupon still discounts (``None`` with a coupon: forever). A plan change keeps
the coupon; the renewal drops it when the new plan is one it does not apply to.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from shared import activity
from shared.billing import catalogue, invoices, periods, usage
from shared.billing.invoices import LineSpec
from shared.config import get_settings
from shared.context import Ctx
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.models.billing import (
    BillingAddOn,
    BillingCoupon,
    BillingInvoice,
    BillingPaymentMethod,
    BillingPlan,
    BillingSubscription,
    BillingSubscriptionAddOn,
)
from shared.sql import lock_key

LIVE = ("trialing", "active", "past_due")
PAID = ("active", "past_due")


@dataclass(frozen=True, slots=True)
class Changed:
    """A subscription after a change, and the invoice the change made (if any)."""

    subscription: BillingSubscription
    invoice: BillingInvoice | None = None


def monthly_price(plan: BillingPlan) -> tuple[int, int]:
    """A plan's price per month as a fraction ``(numerator, denominator)`` (exact)."""
    return (plan.price_amount, 12) if plan.billing_interval == "year" else (plan.price_amount, 1)


def _is_upgrade(old: BillingPlan, new: BillingPlan) -> bool:
    (a, ad), (b, bd) = monthly_price(old), monthly_price(new)
    return b * ad > a * bd


def live_subscription(
    session: Session, tenant_id: uuid.UUID, *, lock: bool = False
) -> BillingSubscription | None:
    query = select(BillingSubscription).where(
        BillingSubscription.tenant_id == tenant_id, BillingSubscription.status != "cancelled"
    )
    return session.scalar(query.with_for_update() if lock else query)


def current_subscription(session: Session, ctx: Ctx) -> BillingSubscription:
    """The live subscription, else the latest cancelled one; 404 when there never was one."""
    found = session.scalar(
        select(BillingSubscription)
        .where(BillingSubscription.tenant_id == ctx.tenant_id)
        .order_by(
            (BillingSubscription.status != "cancelled").desc(),
            BillingSubscription.created_at.desc(),
        )
        .limit(1)
    )
    if found is None:
        raise NotFound("This workspace has no subscription")
    return found


def _require_live(session: Session, ctx: Ctx) -> BillingSubscription:
    found = live_subscription(session, ctx.tenant_id, lock=True)
    if found is None:
        raise Conflict("This workspace has no live subscription; subscribe to a plan first")
    return found


def plan_of(session: Session, plan_id: uuid.UUID) -> BillingPlan:
    plan = session.get(BillingPlan, plan_id)
    if plan is None:
        raise NotFound("Plan not found")
    return plan


def _shared(session: Session, model, row_id: uuid.UUID):
    """A catalogue row read as it is after any admin change in flight (FOR KEY SHARE):
    a PATCH holds it FOR UPDATE while it checks no live subscription uses it, so a plan's
    or add-on's currency never changes under a subscription made meanwhile from a stale
    read (that subscription renewed in the other currency)."""
    return session.scalars(
        select(model)
        .where(model.id == row_id)
        # NOTE: read=True: FOR KEY SHARE. key_share alone is FOR NO KEY UPDATE, which
        # made every subscribe to a plan wait for any other workspace's in flight.
        .with_for_update(read=True, key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()


def _active_plan(session: Session, plan_id: uuid.UUID) -> BillingPlan:
    plan = _shared(session, BillingPlan, plan_id)
    if plan is None or not plan.is_active:
        raise ValidationFailed.field("plan_id", "no such active plan")
    return plan


def has_payment_method(session: Session, tenant_id: uuid.UUID) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    BillingPaymentMethod.tenant_id == tenant_id,
                    BillingPaymentMethod.is_default.is_(True),
                )
            )
        )
    )


def _require_payment_method(session: Session, tenant_id: uuid.UUID) -> None:
    if not has_payment_method(session, tenant_id):
        raise ValidationFailed.field(
            "payment_method", "add a payment method before choosing a paid plan"
        )


def trial_plan(session: Session) -> BillingPlan | None:
    return session.scalar(
        select(BillingPlan)
        .where(BillingPlan.is_default_trial.is_(True), BillingPlan.is_active.is_(True))
        .order_by(BillingPlan.created_at)
        .limit(1)
    )


def start_trial(
    session: Session, tenant_id: uuid.UUID, *, now: dt.datetime | None = None
) -> BillingSubscription | None:
    """Start a new workspace's trial in the caller's transaction; None without a trial plan."""
    plan = trial_plan(session)
    if plan is None:
        return None
    now = now or _now(session)
    days = plan.trial_days or get_settings().billing_trial_days
    ends = now + dt.timedelta(days=days)
    subscription = BillingSubscription(
        tenant_id=tenant_id,
        plan_id=plan.id,
        status="trialing",
        currency=plan.currency,
        price_amount=plan.price_amount,
        current_period_start=now,
        current_period_end=ends,
        trial_ends_at=ends,
        cancel_at_period_end=False,
    )
    session.add(subscription)
    session.flush()
    return subscription


def _now(session: Session) -> dt.datetime:
    from sqlalchemy import func

    return session.scalar(select(func.now()))


def _plan_line(plan: BillingPlan, start: dt.datetime, end: dt.datetime) -> LineSpec:
    return LineSpec(
        "plan",
        f"{plan.name} ({plan.billing_interval}ly)",
        plan.price_amount,
        period_start=start,
        period_end=end,
        plan_id=plan.id,
    )


def subscribe(
    session: Session,
    ctx: Ctx,
    *,
    plan_id: uuid.UUID,
    coupon_code: str | None = None,
    now: dt.datetime | None = None,
) -> Changed:
    """Subscribe to ``plan_id`` now, with the first invoice (409 if a paid one is live)."""
    now = now or _now(session)
    plan = _active_plan(session, plan_id)
    # A workspace without a live subscription has no row to lock: two first subscribes
    # would both insert, and the unique index would refuse the later one anonymously.
    # Serialized here, the later one reads the earlier's subscription and is told so.
    lock_key(session, f"billing_subscribe:{ctx.tenant_id}")
    subscription = live_subscription(session, ctx.tenant_id, lock=True)
    if subscription is not None and subscription.status in PAID:
        raise Conflict(
            f"This workspace already has a paid subscription ({subscription.id},"
            f" {subscription.status}); use change-plan instead",
            details=[
                {
                    "subscription_id": str(subscription.id),
                    "status": subscription.status,
                    "plan_id": str(subscription.plan_id),
                }
            ],
        )
    if subscription is not None and subscription.currency != plan.currency:
        raise ValidationFailed.field("plan_id", "the plan is in another currency")
    if plan.price_amount > 0:
        _require_payment_method(session, ctx.tenant_id)
    coupon = None
    if coupon_code:
        coupon = catalogue.redeemable_coupon(
            session, coupon_code, plan, now, tenant_id=ctx.tenant_id
        )
        catalogue.redeem(session, coupon, plan)
    end = periods.period_end(now, plan.billing_interval)
    before = None
    if subscription is None:
        subscription = BillingSubscription(tenant_id=ctx.tenant_id)
        session.add(subscription)
    else:
        before = _brief(subscription)
    subscription.plan_id = plan.id
    subscription.status = "active"
    if subscription.trial_ends_at is not None:
        # Paying ends the trial now: churn counts a subscription as paid from trial_ends_at.
        subscription.trial_ends_at = min(subscription.trial_ends_at, now)
    subscription.currency = plan.currency
    subscription.price_amount = plan.price_amount
    subscription.current_period_start = now
    subscription.current_period_end = end
    subscription.cancel_at_period_end = False
    subscription.cancelled_at = None
    subscription.pending_plan_id = None
    subscription.coupon_id = coupon.id if coupon else None
    subscription.coupon_periods_left = _periods_after_first(coupon)
    session.flush()
    invoice = invoices.create_invoice(
        session,
        tenant_id=ctx.tenant_id,
        subscription=subscription,
        reason="subscription_create",
        lines=[_plan_line(plan, now, end)],
        coupon=coupon,
        now=now,
    )
    usage.forget_limits(ctx.tenant_id)
    _record(session, ctx, "billing.subscribed", subscription, before)
    return Changed(subscription, invoice)


def _periods_after_first(coupon: BillingCoupon | None) -> int | None:
    if coupon is None or coupon.duration == "forever":
        return None
    if coupon.duration == "repeating":
        return max(0, (coupon.duration_periods or 1) - 1)
    return 0


def change_plan(
    session: Session, ctx: Ctx, *, plan_id: uuid.UUID, now: dt.datetime | None = None
) -> Changed:
    """Upgrade now (prorated invoice) or store a downgrade for the period end."""
    now = now or _now(session)
    subscription = _require_live(session, ctx)
    plan = _active_plan(session, plan_id)
    if plan.currency != subscription.currency:
        raise ValidationFailed.field("plan_id", "the plan is in another currency")
    before = _brief(subscription)
    current = plan_of(session, subscription.plan_id)
    if plan.id == current.id:
        if subscription.pending_plan_id is None:
            raise ValidationFailed.field("plan_id", "the subscription is on this plan already")
        subscription.pending_plan_id = None  # going back on a pending downgrade
        session.flush()
        _record(session, ctx, "billing.plan_change_cancelled", subscription, before)
        return Changed(subscription)
    if subscription.status == "trialing":
        # NOTE: a trial tries plans freely; the first invoice comes at its end or a subscribe.
        subscription.plan_id, subscription.price_amount = plan.id, plan.price_amount
        subscription.pending_plan_id = None
        session.flush()
        usage.forget_limits(ctx.tenant_id)
        _record(session, ctx, "billing.plan_changed", subscription, before)
        return Changed(subscription)
    if not _is_upgrade(current, plan):
        subscription.pending_plan_id = plan.id
        session.flush()
        _record(session, ctx, "billing.downgrade_scheduled", subscription, before)
        return Changed(subscription)
    if plan.price_amount > 0:
        _require_payment_method(session, ctx.tenant_id)
    start, end = subscription.current_period_start, subscription.current_period_end
    credit = periods.prorate(subscription.price_amount, start=start, end=end, now=now)
    lines = [
        LineSpec(
            "proration_credit",
            f"Unused time on {current.name}",
            -credit,
            period_start=now,
            period_end=end,
            plan_id=current.id,
        )
    ]
    if plan.billing_interval == current.billing_interval:
        charge = periods.prorate(plan.price_amount, start=start, end=end, now=now)
        lines.append(
            LineSpec(
                "proration_charge",
                f"Remaining time on {plan.name}",
                charge,
                period_start=now,
                period_end=end,
                plan_id=plan.id,
            )
        )
    else:
        end = periods.period_end(now, plan.billing_interval)
        credits, charges = _restart_add_ons(session, subscription, now=now, new_end=end)
        subscription.current_period_start, subscription.current_period_end = now, end
        lines += [*credits, _plan_line(plan, now, end), *charges]
    subscription.plan_id, subscription.price_amount = plan.id, plan.price_amount
    subscription.pending_plan_id = None
    session.flush()
    invoice = invoices.create_invoice(
        session,
        tenant_id=ctx.tenant_id,
        subscription=subscription,
        reason="plan_change",
        lines=lines,
        now=now,
    )
    usage.forget_limits(ctx.tenant_id)
    _record(session, ctx, "billing.plan_changed", subscription, before)
    return Changed(subscription, invoice)


def _restart_add_ons(
    session: Session, subscription: BillingSubscription, *, now: dt.datetime, new_end: dt.datetime
) -> tuple[list[LineSpec], list[LineSpec]]:
    """Add-on lines for a period restarted now (a change of interval): the unused time of
    each attached add-on credited, and the kept ones charged for the new period at their
    current price (as a renewal does); one detaching at the period end leaves now, the old
    period's end. Without this they rode free until the next renewal."""
    start, end = subscription.current_period_start, subscription.current_period_end
    rows = session.execute(
        select(BillingSubscriptionAddOn, BillingAddOn)
        .join(BillingAddOn, BillingAddOn.id == BillingSubscriptionAddOn.add_on_id)
        .where(
            BillingSubscriptionAddOn.subscription_id == subscription.id,
            BillingSubscriptionAddOn.detached_at.is_(None),
        )
        .order_by(BillingSubscriptionAddOn.attached_at, BillingSubscriptionAddOn.id)
        .with_for_update(of=BillingSubscriptionAddOn)
    ).all()
    credits, charges = [], []
    for attached, add_on in rows:
        unused = periods.prorate(
            attached.price_amount * attached.quantity, start=start, end=end, now=now
        )
        credits.append(
            LineSpec(
                "proration_credit",
                f"Unused time on {add_on.name}",
                -unused,
                period_start=now,
                period_end=end,
                add_on_id=add_on.id,
            )
        )
        if attached.detach_at_period_end:
            attached.detached_at = now
            continue
        attached.price_amount = add_on.price_amount
        charges.append(
            LineSpec(
                "add_on",
                add_on.name,
                add_on.price_amount,
                quantity=attached.quantity,
                period_start=now,
                period_end=new_end,
                add_on_id=add_on.id,
            )
        )
    return credits, charges


def cancel(session: Session, ctx: Ctx) -> BillingSubscription:
    """Cancel at the period end (the trial's end for a trial); asking twice changes nothing."""
    subscription = _require_live(session, ctx)
    if not subscription.cancel_at_period_end:
        before = _brief(subscription)
        subscription.cancel_at_period_end = True
        subscription.cancelled_at = _now(session)
        session.flush()
        _record(session, ctx, "billing.cancel_scheduled", subscription, before)
    return subscription


def attached_add_ons(
    session: Session, ctx: Ctx
) -> list[tuple[BillingSubscriptionAddOn, BillingAddOn]]:
    """The live subscription's attached add-ons (those leaving at the period end included)."""
    subscription = live_subscription(session, ctx.tenant_id)
    if subscription is None:
        return []
    rows = session.execute(
        select(BillingSubscriptionAddOn, BillingAddOn)
        .join(BillingAddOn, BillingAddOn.id == BillingSubscriptionAddOn.add_on_id)
        .where(
            BillingSubscriptionAddOn.tenant_id == ctx.tenant_id,
            BillingSubscriptionAddOn.subscription_id == subscription.id,
            BillingSubscriptionAddOn.detached_at.is_(None),
        )
        .order_by(BillingSubscriptionAddOn.attached_at, BillingSubscriptionAddOn.id)
    )
    return [(row[0], row[1]) for row in rows]


def attach_add_on(
    session: Session,
    ctx: Ctx,
    *,
    add_on_id: uuid.UUID,
    quantity: int = 1,
    now: dt.datetime | None = None,
) -> Changed:
    """Attach an add-on now, charging the rest of the period (prorated)."""
    now = now or _now(session)
    subscription = _require_live(session, ctx)
    if subscription.status == "trialing":
        raise Conflict("Add-ons are bought with a paid plan; subscribe first")
    add_on = _shared(session, BillingAddOn, add_on_id)
    if add_on is None or not add_on.is_active:
        raise ValidationFailed.field("add_on_id", "no such active add-on")
    if add_on.currency != subscription.currency:
        raise ValidationFailed.field("add_on_id", "the add-on is in another currency")
    attached = session.scalar(
        select(BillingSubscriptionAddOn)
        .where(
            BillingSubscriptionAddOn.subscription_id == subscription.id,
            BillingSubscriptionAddOn.add_on_id == add_on.id,
            BillingSubscriptionAddOn.detached_at.is_(None),
        )
        .with_for_update()
    )
    if attached is not None:
        if not attached.detach_at_period_end:
            raise Conflict("This add-on is attached already")
        if attached.quantity != quantity:
            # NOTE: keeping it is not buying another quantity; a 201 would hide that.
            raise Conflict(
                f"This add-on is attached with quantity {attached.quantity} until the period"
                " end; attach it again in that quantity to keep it"
            )
        attached.detach_at_period_end = False  # kept: it was paid for this period
        session.flush()
        usage.forget_limits(ctx.tenant_id)
        return Changed(subscription)
    if add_on.price_amount > 0:
        _require_payment_method(session, ctx.tenant_id)
    row = BillingSubscriptionAddOn(
        tenant_id=ctx.tenant_id,
        subscription_id=subscription.id,
        add_on_id=add_on.id,
        quantity=quantity,
        price_amount=add_on.price_amount,
        attached_at=now,
        detach_at_period_end=False,
    )
    session.add(row)
    session.flush()
    start, end = subscription.current_period_start, subscription.current_period_end
    amount = periods.prorate(add_on.price_amount * quantity, start=start, end=end, now=now)
    invoice = invoices.create_invoice(
        session,
        tenant_id=ctx.tenant_id,
        subscription=subscription,
        reason="add_on",
        lines=[
            LineSpec(
                "add_on",
                f"{add_on.name} (rest of the period)",
                add_on.price_amount,
                quantity=quantity,
                amount=amount,
                period_start=now,
                period_end=end,
                add_on_id=add_on.id,
            )
        ],
        now=now,
    )
    usage.forget_limits(ctx.tenant_id)
    activity.record(
        session, ctx, "billing.add_on_attached", "add_on", add_on.id, after={"quantity": quantity}
    )
    return Changed(subscription, invoice)


def detach_add_on(session: Session, ctx: Ctx, add_on_id: uuid.UUID) -> None:
    """Detach at the period end (it stays usable until then); 404 when not attached."""
    subscription = live_subscription(session, ctx.tenant_id, lock=True)
    attached = None
    if subscription is not None:
        attached = session.scalar(
            select(BillingSubscriptionAddOn)
            .where(
                BillingSubscriptionAddOn.tenant_id == ctx.tenant_id,
                BillingSubscriptionAddOn.subscription_id == subscription.id,
                BillingSubscriptionAddOn.add_on_id == add_on_id,
                BillingSubscriptionAddOn.detached_at.is_(None),
            )
            .with_for_update()
        )
    if attached is None:
        raise NotFound("Add-on not attached")
    if not attached.detach_at_period_end:
        attached.detach_at_period_end = True
        session.flush()
        activity.record(session, ctx, "billing.add_on_detach_scheduled", "add_on", add_on_id)


def _brief(subscription: BillingSubscription) -> dict:
    return {
        "plan_id": str(subscription.plan_id),
        "status": subscription.status,
        "pending_plan_id": (
            str(subscription.pending_plan_id) if subscription.pending_plan_id else None
        ),
        "cancel_at_period_end": subscription.cancel_at_period_end,
    }


def _record(
    session: Session, ctx: Ctx, action: str, subscription: BillingSubscription, before
) -> None:
    activity.record(
        session,
        ctx,
        action,
        "subscription",
        subscription.id,
        before=before,
        after=_brief(subscription),
    )

"""Plans, coupons and add-ons (billcat's module).

NOTE (billsub branch): only the three contract functions subscriptions and renewals call,
in their smallest correct form; billcat's module (CRUD, routes) replaces this file at merge.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.errors import ValidationFailed
from shared.models.billing import BillingCoupon, BillingPlan


def _refused(message: str) -> ValidationFailed:
    return ValidationFailed.field("coupon_code", message)


def redeemable_coupon(
    session: Session, code: str, plan: BillingPlan, now: dt.datetime
) -> BillingCoupon:
    """The coupon ``code`` if it may be redeemed on ``plan`` at ``now``; else 422."""
    coupon = session.scalar(
        select(BillingCoupon).where(func.lower(BillingCoupon.code) == code.lower())
    )
    if coupon is None or not coupon.is_active:
        raise _refused("unknown coupon")
    if coupon.expires_at is not None and coupon.expires_at <= now:
        raise _refused("the coupon has expired")
    if coupon.max_redemptions is not None and coupon.times_redeemed >= coupon.max_redemptions:
        raise _refused("the coupon has no redemptions left")
    if coupon.eligible_plan_ids and plan.id not in coupon.eligible_plan_ids:
        raise _refused("the coupon does not apply to this plan")
    if coupon.amount_off is not None and coupon.currency != plan.currency:
        raise _refused("the coupon is in another currency")
    return coupon


def discount_for(coupon: BillingCoupon, amount: int, currency: str) -> int:
    """The discount on ``amount`` in minor units, never above it; percent rounds half-up."""
    if amount <= 0:
        return 0
    if coupon.percent_off is not None:
        off = (amount * coupon.percent_off * 2 + 100) // 200
    else:
        off = coupon.amount_off if coupon.currency == currency else 0
    return max(0, min(amount, off))


def redeem(session: Session, coupon: BillingCoupon) -> None:
    """Count one redemption, atomically guarded by ``max_redemptions``; 422 when none left."""
    done = session.execute(
        update(BillingCoupon)
        .where(
            BillingCoupon.id == coupon.id,
            (BillingCoupon.max_redemptions.is_(None))
            | (BillingCoupon.times_redeemed < BillingCoupon.max_redemptions),
        )
        .values(times_redeemed=BillingCoupon.times_redeemed + 1)
    )
    if done.rowcount != 1:
        raise _refused("the coupon has no redemptions left")

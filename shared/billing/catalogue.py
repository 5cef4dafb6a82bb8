"""The platform's catalogue: plans, coupons and add-ons, and the coupon rules.

Super admins manage it (``/api/admin/billing/...``); workspaces read the active part and
validate coupon codes. Subscriptions (``shared.billing.subscriptions``) call the coupon
contract here: :func:`redeemable_coupon` to check a code against a plan,
:func:`discount_for` to price it and :func:`redeem` to take one redemption atomically;
``billing_cycle`` checks a held coupon against each renewal's plan with :func:`misfit`.

A plan or add-on in use is archived (``is_active: false``), not deleted: subscriptions and
invoice lines keep pointing at it. Price changes need nothing here: a subscription keeps
the price it was renewed at and takes the plan's current price at its next renewal.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from psycopg.errors import UniqueViolation
from sqlalchemy import any_, exists, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.billing import coupon_guesses
from shared.billing.currency import format_amount
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.models import (
    BillingAddOn,
    BillingCoupon,
    BillingInvoiceLine,
    BillingPlan,
    BillingSubscription,
    BillingSubscriptionAddOn,
)
from shared.pagination import Page, paginate

#: Bounds the schemas enforce, kept below what the columns hold so no input reaches a
#: DataError: amounts up to 10^12 minor units (ten billion dollars), BIGINT limits below 2^53.
MAX_AMOUNT = 10**12
MAX_SEATS = 1_000_000
MAX_BIG_LIMIT = 2**53
MAX_TRIAL_DAYS = 365
MAX_PERIODS = 120
MAX_REDEMPTIONS = 1_000_000_000

#: The subscription statuses that still use a plan or an add-on.
_LIVE = ("trialing", "active", "past_due")
#: Coupon fields that make the discount itself; frozen once anyone redeemed it.
_TERMS = ("percent_off", "amount_off", "currency", "duration", "duration_periods")
#: Serialises "this plan is the default trial": at most one plan carries the flag.
_DEFAULT_TRIAL_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('billing_default_trial_plan'))")


# --- views ---------------------------------------------------------------------------------


def _columns(row: Any) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


def plan_view(plan: BillingPlan) -> dict[str, Any]:
    return _columns(plan) | {"price_display": format_amount(plan.price_amount, plan.currency)}


def add_on_view(add_on: BillingAddOn) -> dict[str, Any]:
    return _columns(add_on) | {"price_display": format_amount(add_on.price_amount, add_on.currency)}


def coupon_view(coupon: BillingCoupon) -> dict[str, Any]:
    return _columns(coupon) | {"eligible_plan_ids": list(coupon.eligible_plan_ids or [])}


# --- shared checks -------------------------------------------------------------------------


def _by_id(session: Session, model: type, row_id: uuid.UUID, missing: str, *, lock=False):
    query = select(model).where(model.id == row_id)
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise NotFound(missing)
    return row


def _code_taken(session: Session, model: type, code: str, own_id: uuid.UUID | None) -> None:
    query = select(model.id).where(func.lower(model.code) == code.lower())
    if own_id is not None:
        query = query.where(model.id != own_id)
    if session.scalar(query) is not None:
        raise Conflict(
            f"The code {code!r} is already used",
            details=[{"field": "code", "message": "already used"}],
        )


def _flush_unique(session: Session, code: str) -> None:
    """Flush; a code taken by a concurrent request between check and insert is a 409 too."""
    try:
        session.flush()
    except IntegrityError as exc:
        if not isinstance(exc.orig, UniqueViolation):
            raise
        raise Conflict(
            f"The code {code!r} is already used",
            details=[{"field": "code", "message": "already used"}],
        ) from exc


def _invalid(details: list[dict[str, str]]) -> None:
    if details:
        raise ValidationFailed(
            "; ".join(f"{d['field']}: {d['message']}" for d in details), details=details
        )


# --- plans ---------------------------------------------------------------------------------


def list_plans(session: Session, *, active_only: bool = False) -> list[BillingPlan]:
    """Every plan (or the active ones) in display order: ``sort_order``, then price."""
    query = select(BillingPlan).order_by(
        BillingPlan.sort_order, BillingPlan.price_amount, BillingPlan.created_at, BillingPlan.id
    )
    if active_only:
        query = query.where(BillingPlan.is_active)
    return list(session.scalars(query))


def get_plan(session: Session, plan_id: uuid.UUID, *, lock: bool = False) -> BillingPlan:
    return _by_id(session, BillingPlan, plan_id, "Billing plan not found", lock=lock)


def _plan_in_use(session: Session, plan_id: uuid.UUID, statuses=None) -> bool:
    uses = or_(
        BillingSubscription.plan_id == plan_id, BillingSubscription.pending_plan_id == plan_id
    )
    query = select(BillingSubscription.id).where(uses)
    if statuses:
        query = query.where(BillingSubscription.status.in_(statuses))
    return bool(session.scalar(select(exists(query))))


def _check_default_trial(session: Session, plan: BillingPlan) -> None:
    if plan.is_default_trial and not plan.is_active:
        raise ValidationFailed.field(
            "is_default_trial", "an archived plan cannot be the default trial plan"
        )
    if plan.is_default_trial:
        session.execute(_DEFAULT_TRIAL_LOCK)
        session.execute(
            update(BillingPlan)
            .where(BillingPlan.is_default_trial, BillingPlan.id != plan.id)
            .values(is_default_trial=False)
            .execution_options(synchronize_session=False)
        )


def create_plan(session: Session, data: dict[str, Any]) -> BillingPlan:
    _code_taken(session, BillingPlan, data["code"], None)
    plan = BillingPlan(id=uuid.uuid4(), **data)
    _check_default_trial(session, plan)
    session.add(plan)
    _flush_unique(session, plan.code)
    return plan


def update_plan(session: Session, plan_id: uuid.UUID, changes: dict[str, Any]) -> BillingPlan:
    """Change the fields sent. Currency and interval are fixed while live subscriptions use
    the plan (a renewal must not switch a customer's currency); price changes wait for each
    subscription's renewal, which reads the plan's price then."""
    plan = get_plan(session, plan_id, lock=True)
    if "code" in changes:
        _code_taken(session, BillingPlan, changes["code"], plan.id)
    frozen = [
        name
        for name in ("currency", "billing_interval")
        if name in changes and changes[name] != getattr(plan, name)
    ]
    if frozen and _plan_in_use(session, plan.id, _LIVE):
        raise Conflict(
            "Live subscriptions use this plan; create a new plan instead",
            details=[{"field": name, "message": "fixed while in use"} for name in frozen],
        )
    for name, value in changes.items():
        setattr(plan, name, value)
    _check_default_trial(session, plan)
    _flush_unique(session, plan.code)
    return plan


def _plan_invoiced(session: Session, plan_id: uuid.UUID) -> bool:
    """Whether an invoice line names the plan: a subscription used it, maybe before a
    plan change. Deleting it would null those lines' ``plan_id`` and move their revenue to
    another plan in revenue by plan."""
    query = select(BillingInvoiceLine.id).where(BillingInvoiceLine.plan_id == plan_id)
    return bool(session.scalar(select(exists(query))))


def delete_plan(session: Session, plan_id: uuid.UUID) -> None:
    """Delete a plan no subscription ever used; otherwise 409 (archive it instead).

    Coupons limited to it lose it from ``eligible_plan_ids``; one left with none is
    deactivated, since an empty list would widen it to every plan.
    """
    plan = get_plan(session, plan_id, lock=True)
    if _plan_in_use(session, plan.id):
        raise Conflict(
            "Subscriptions use this plan; archive it with PATCH is_active: false",
            details=[{"field": "id", "message": "in use by subscriptions"}],
        )
    if _plan_invoiced(session, plan.id):
        raise Conflict(
            "Past subscriptions used this plan; archive it with PATCH is_active: false",
            details=[{"field": "id", "message": "kept by invoice history"}],
        )
    listed = literal(plan.id, PgUUID(as_uuid=True)) == any_(BillingCoupon.eligible_plan_ids)
    session.execute(
        update(BillingCoupon)
        .where(listed)
        .values(
            eligible_plan_ids=func.array_remove(BillingCoupon.eligible_plan_ids, plan.id),
            is_active=BillingCoupon.is_active
            & (func.cardinality(BillingCoupon.eligible_plan_ids) > 1),
        )
        .execution_options(synchronize_session=False)
    )
    session.delete(plan)
    try:
        session.flush()
    except IntegrityError as exc:  # a subscription made concurrently
        raise Conflict("Subscriptions use this plan; archive it instead") from exc


# --- add-ons -------------------------------------------------------------------------------


def list_add_ons(session: Session, *, active_only: bool = False) -> list[BillingAddOn]:
    query = select(BillingAddOn).order_by(
        BillingAddOn.price_amount, BillingAddOn.created_at, BillingAddOn.id
    )
    if active_only:
        query = query.where(BillingAddOn.is_active)
    return list(session.scalars(query))


def get_add_on(session: Session, add_on_id: uuid.UUID, *, lock: bool = False) -> BillingAddOn:
    return _by_id(session, BillingAddOn, add_on_id, "Add-on not found", lock=lock)


def _add_on_attachments(session: Session, add_on_id: uuid.UUID, *, attached_only: bool) -> bool:
    query = select(BillingSubscriptionAddOn.id).where(
        BillingSubscriptionAddOn.add_on_id == add_on_id
    )
    if attached_only:
        query = query.where(BillingSubscriptionAddOn.detached_at.is_(None))
    return bool(session.scalar(select(exists(query))))


def create_add_on(session: Session, data: dict[str, Any]) -> BillingAddOn:
    _code_taken(session, BillingAddOn, data["code"], None)
    add_on = BillingAddOn(id=uuid.uuid4(), **data)
    session.add(add_on)
    _flush_unique(session, add_on.code)
    return add_on


def update_add_on(session: Session, add_on_id: uuid.UUID, changes: dict[str, Any]) -> BillingAddOn:
    """Change the fields sent; the currency is fixed while attached (as a plan's)."""
    add_on = get_add_on(session, add_on_id, lock=True)
    if "code" in changes:
        _code_taken(session, BillingAddOn, changes["code"], add_on.id)
    changed_currency = "currency" in changes and changes["currency"] != add_on.currency
    if changed_currency and _add_on_attachments(session, add_on.id, attached_only=True):
        raise Conflict(
            "Subscriptions have this add-on attached; create a new add-on instead",
            details=[{"field": "currency", "message": "fixed while attached"}],
        )
    for name, value in changes.items():
        setattr(add_on, name, value)
    _flush_unique(session, add_on.code)
    return add_on


def delete_add_on(session: Session, add_on_id: uuid.UUID) -> None:
    """Delete an add-on never attached; 409 while attached or kept in history (archive)."""
    add_on = get_add_on(session, add_on_id, lock=True)
    if _add_on_attachments(session, add_on.id, attached_only=True):
        raise Conflict(
            "Subscriptions have this add-on attached; archive it with PATCH is_active: false",
            details=[{"field": "id", "message": "attached to subscriptions"}],
        )
    if _add_on_attachments(session, add_on.id, attached_only=False):
        raise Conflict(
            "Past subscriptions used this add-on; archive it with PATCH is_active: false",
            details=[{"field": "id", "message": "kept by subscription history"}],
        )
    session.delete(add_on)
    try:
        session.flush()
    except IntegrityError as exc:  # attached concurrently
        raise Conflict("Subscriptions have this add-on attached; archive it instead") from exc


# --- coupons -------------------------------------------------------------------------------


def list_coupons(
    session: Session, *, limit: int, cursor: str | None, is_active: bool | None = None
) -> Page[BillingCoupon]:
    query = select(BillingCoupon)
    if is_active is not None:
        query = query.where(BillingCoupon.is_active == is_active)
    return paginate(
        session,
        query,
        created_at=BillingCoupon.created_at,
        id_column=BillingCoupon.id,
        limit=limit,
        cursor=cursor,
    )


def get_coupon(session: Session, coupon_id: uuid.UUID, *, lock: bool = False) -> BillingCoupon:
    return _by_id(session, BillingCoupon, coupon_id, "Coupon not found", lock=lock)


def _coupon_problems(
    session: Session, state: dict[str, Any], checked: set[str], now: dt.datetime
) -> list[dict[str, str]]:
    """Every rule a coupon's fields break together, one detail per field."""
    problems: list[dict[str, str]] = []
    percent, amount = state.get("percent_off"), state.get("amount_off")
    if percent is not None and amount is not None:
        problems.append(
            {"field": "amount_off", "message": "give percent_off or amount_off, not both"}
        )
    elif percent is None and amount is None:
        problems.append({"field": "percent_off", "message": "required: percent_off or amount_off"})
    if amount is not None and state.get("currency") is None:
        problems.append({"field": "currency", "message": "required with amount_off"})
    if percent is not None and amount is None and state.get("currency") is not None:
        problems.append({"field": "currency", "message": "only for amount_off coupons"})
    periods = state.get("duration_periods")
    if state.get("duration") == "repeating" and periods is None:
        problems.append({"field": "duration_periods", "message": "required for duration repeating"})
    if state.get("duration") != "repeating" and periods is not None:
        problems.append({"field": "duration_periods", "message": "only for duration repeating"})
    expires = state.get("expires_at")
    if "expires_at" in checked and expires is not None and expires <= now:
        problems.append({"field": "expires_at", "message": "must be in the future"})
    limit, used = state.get("max_redemptions"), state.get("times_redeemed") or 0
    if "max_redemptions" in checked and limit is not None and limit < used:
        problems.append(
            {"field": "max_redemptions", "message": f"below the {used} redemptions made"}
        )
    if "eligible_plan_ids" in checked or "currency" in checked:
        problems += _plan_problems(session, state)
    return problems


def _plan_problems(session: Session, state: dict[str, Any]) -> list[dict[str, str]]:
    ids = state.get("eligible_plan_ids") or []
    if not ids:
        return []
    found = dict(
        session.execute(
            select(BillingPlan.id, BillingPlan.currency).where(BillingPlan.id.in_(ids))
        ).all()
    )
    unknown = [str(plan_id) for plan_id in ids if plan_id not in found]
    if unknown:
        return [{"field": "eligible_plan_ids", "message": "unknown plans: " + ", ".join(unknown)}]
    coupon_currency = state.get("currency")
    if state.get("amount_off") is None or coupon_currency is None:
        return []
    other = [str(plan_id) for plan_id in ids if found[plan_id] != coupon_currency]
    if other:
        return [
            {
                "field": "eligible_plan_ids",
                "message": f"plans not priced in {coupon_currency}: " + ", ".join(other),
            }
        ]
    return []


def create_coupon(session: Session, data: dict[str, Any], now: dt.datetime) -> BillingCoupon:
    data = dict(data)
    data["eligible_plan_ids"] = list(dict.fromkeys(data.get("eligible_plan_ids") or []))
    data["name"] = data.get("name") or data["code"]
    _invalid(_coupon_problems(session, data, set(data), now))
    _code_taken(session, BillingCoupon, data["code"], None)
    coupon = BillingCoupon(id=uuid.uuid4(), times_redeemed=0, **data)
    session.add(coupon)
    _flush_unique(session, coupon.code)
    return coupon


def update_coupon(
    session: Session, coupon_id: uuid.UUID, changes: dict[str, Any], now: dt.datetime
) -> BillingCoupon:
    """Change the fields sent. The discount's terms are frozen once redeemed: customers
    hold it as it was sold (create a new coupon instead)."""
    coupon = get_coupon(session, coupon_id, lock=True)
    changes = dict(changes)
    if "eligible_plan_ids" in changes:
        changes["eligible_plan_ids"] = list(dict.fromkeys(changes["eligible_plan_ids"]))
    altered = [
        name for name in _TERMS if name in changes and changes[name] != getattr(coupon, name)
    ]
    if altered and coupon.times_redeemed:
        raise Conflict(
            f"The coupon was redeemed {coupon.times_redeemed} times; its discount cannot change",
            details=[{"field": name, "message": "fixed once redeemed"} for name in altered],
        )
    state = coupon_view(coupon) | changes
    _invalid(_coupon_problems(session, state, set(changes), now))
    for name, value in changes.items():
        setattr(coupon, name, value)
    session.flush()
    return coupon


def delete_coupon(session: Session, coupon_id: uuid.UUID) -> None:
    """Delete a coupon. Subscriptions holding it lose it (``coupon_id`` set null) and pay
    full price from their next renewal; ``is_active: false`` only stops new redemptions."""
    session.delete(get_coupon(session, coupon_id, lock=True))
    session.flush()


# --- the coupon contract -------------------------------------------------------------------


def _refused(field: str, reason: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"The coupon cannot be used: {message}",
        details=[{"field": field, "message": message, "reason": reason}],
    )


def find_coupon(session: Session, code: str, *, field: str = "coupon_code") -> BillingCoupon:
    """The coupon of ``code`` (case-insensitive, surrounding spaces ignored), whatever its
    state; a 422 naming ``field`` (reason ``unknown``) when there is none."""
    coupon = session.scalars(
        select(BillingCoupon).where(func.lower(BillingCoupon.code) == code.strip().lower())
    ).one_or_none()
    if coupon is None:
        raise _refused(field, "unknown", "no such coupon")
    return coupon


def _usable(coupon: BillingCoupon, now: dt.datetime, field: str) -> None:
    if not coupon.is_active:
        raise _refused(field, "inactive", "this coupon is no longer offered")
    if coupon.expires_at is not None and coupon.expires_at <= now:
        raise _refused(field, "expired", "this coupon has expired")
    if coupon.max_redemptions is not None and coupon.times_redeemed >= coupon.max_redemptions:
        raise _refused(field, "exhausted", "this coupon has been fully redeemed")


def misfit(coupon: BillingCoupon, plan: BillingPlan) -> str | None:
    """Why ``coupon`` cannot discount ``plan`` (``ineligible_plan``, ``currency_mismatch``),
    or None when it can. Checked when a code is used and again at each renewal."""
    if coupon.eligible_plan_ids and plan.id not in coupon.eligible_plan_ids:
        return "ineligible_plan"
    if coupon.amount_off is not None and coupon.currency != plan.currency:
        return "currency_mismatch"
    return None


def _fits(coupon: BillingCoupon, plan: BillingPlan, field: str) -> None:
    if plan.price_amount <= 0:
        # Redeemed there, a limited coupon's use was spent on a zero discount.
        raise _refused(
            field, "free_plan", f"plan {plan.code} is free: there is nothing to discount"
        )
    reason = misfit(coupon, plan)
    if reason == "ineligible_plan":
        raise _refused(field, "ineligible_plan", f"this coupon does not apply to plan {plan.code}")
    if reason == "currency_mismatch":
        raise _refused(
            field,
            "currency_mismatch",
            f"this coupon is in {coupon.currency}; the plan is priced in {plan.currency}",
        )


def redeemable_coupon(
    session: Session,
    code: str,
    plan: BillingPlan,
    now: dt.datetime,
    *,
    field: str = "coupon_code",
    tenant_id: uuid.UUID | None = None,
) -> BillingCoupon:
    """The coupon ``code`` names if it can be used on ``plan`` at ``now``.

    Raises a 422 naming ``field`` (with a ``reason``: ``unknown``, ``inactive``,
    ``expired``, ``exhausted``, ``free_plan``, ``ineligible_plan``, ``currency_mismatch``). Does not
    redeem: call :func:`redeem` in the transaction that applies it. With ``tenant_id`` (a
    workspace typed the code) unknown codes count toward its guess bound, as in
    :func:`check_code`: the answer tells a real code from a made-up one here too.
    """
    if tenant_id is None:
        coupon = find_coupon(session, code, field=field)
    else:
        coupon = _find_guarded(session, tenant_id, code, field)
    _usable(coupon, now, field)
    _fits(coupon, plan, field)
    return coupon


def discount_for(coupon: BillingCoupon, amount: int, currency: str) -> int:
    """The discount ``coupon`` gives on ``amount`` minor units of ``currency``.

    Never above ``amount`` and never negative (a credit gets no discount). A percentage
    rounds half up to the minor unit, in integers: 15 % of 333 is 49.95 -> 50.
    A fixed amount in another currency is refused (422 naming ``coupon_code``).
    """
    if amount <= 0:
        return 0
    if coupon.percent_off is not None:
        return min(amount, (amount * coupon.percent_off + 50) // 100)
    if coupon.currency != currency:
        raise _refused(
            "coupon_code",
            "currency_mismatch",
            f"this coupon is in {coupon.currency}; the amount is in {currency}",
        )
    return min(amount, coupon.amount_off or 0)


def redeem(
    session: Session,
    coupon: BillingCoupon,
    plan: BillingPlan | None = None,
    *,
    field: str = "coupon_code",
) -> int:
    """Take one redemption of ``coupon`` (for ``plan``): ``times_redeemed + 1`` only while
    below ``max_redemptions``, in one guarded UPDATE. Returns the new count.

    Two customers racing for the last redemption: the second UPDATE waits on the row
    lock, re-checks the guard against the committed count and matches nothing, so it is
    refused with the same 422 as an exhausted coupon.

    An admin's change in flight (a PATCH holds the row FOR UPDATE) is waited for the same
    way; ``coupon`` is then read again as it is now and checked against ``plan`` once more,
    so a coupon limited to other plans (or moved to another currency) meanwhile is refused
    (422, the redemption rolled back with the request), and the invoice is discounted by
    the terms the subscription will renew with, not by those read before the change.
    """
    count = session.execute(
        update(BillingCoupon)
        .where(
            BillingCoupon.id == coupon.id,
            BillingCoupon.is_active,
            or_(
                BillingCoupon.max_redemptions.is_(None),
                BillingCoupon.times_redeemed < BillingCoupon.max_redemptions,
            ),
        )
        .values(times_redeemed=BillingCoupon.times_redeemed + 1)
        .returning(BillingCoupon.times_redeemed)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if count is None:
        raise _refused(field, "exhausted", "this coupon was fully redeemed or withdrawn")
    session.refresh(coupon)  # locked by the UPDATE: this is the row as it stays
    if plan is not None:
        _fits(coupon, plan, field)
    return count


def _find_guarded(session: Session, tenant_id: uuid.UUID, code: str, field: str) -> BillingCoupon:
    """:func:`find_coupon` for a workspace: 429 past its bound on unknown codes, and an
    unknown code counted (:mod:`shared.billing.coupon_guesses`)."""
    coupon_guesses.check(tenant_id)
    try:
        return find_coupon(session, code, field=field)
    except ValidationFailed:
        coupon_guesses.count_miss(tenant_id)
        raise


def check_code(
    session: Session,
    tenant_id: uuid.UUID,
    code: str,
    plan_id: uuid.UUID | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """What ``POST /api/billing/coupons/validate`` answers: the coupon's terms and, for a
    plan, the discount on its price. Refusals are 422s naming ``code`` (or ``plan_id``);
    a workspace trying many unknown codes gets 429 (:mod:`shared.billing.coupon_guesses`)."""
    coupon = _find_guarded(session, tenant_id, code, "code")
    _usable(coupon, now, "code")
    answer: dict[str, Any] = {
        "coupon": coupon_view(coupon),
        "plan_id": plan_id,
        "currency": coupon.currency,
        "price_amount": None,
        "discount_amount": None,
        "amount_after_discount": None,
        "discount_display": None,
    }
    if plan_id is None:
        return answer
    plan = session.get(BillingPlan, plan_id)
    if plan is None or not plan.is_active:
        raise ValidationFailed.field("plan_id", "no such plan on offer")
    _fits(coupon, plan, "code")
    discount = discount_for(coupon, plan.price_amount, plan.currency)
    return answer | {
        "currency": plan.currency,
        "price_amount": plan.price_amount,
        "discount_amount": discount,
        "amount_after_discount": plan.price_amount - discount,
        "discount_display": format_amount(discount, plan.currency),
    }
